// Google's and Azure's events, turned into the one request the engine reads
// (request.ts). No I/O here: the handlers in functions/ pass the engine call
// and the manifests in, so each stays one line and all of this is unit-tested.
import { InputError } from "../lib/errors.ts";
import type { ManifestSet } from "../lib/manifests/index.ts";
import type { InvocationResponse } from "./invoke.ts";
import { planRotations, targetName } from "../lib/rotation/plan.ts";

/** What to do with one delivery: run the engine on `event`, or acknowledge it without a run. */
export type Delivery = { readonly event: unknown } | { readonly ignored: string };

/** The engine's answer, or why an event was acknowledged without a run (`ok`, no results). */
export type EventResponse<R> = InvocationResponse<R> & { readonly ignored?: string };

/** Where deliver() reports refusals and skipped events; a pino logger fits. */
export interface EventLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/**
 * request.ts knows one scheduled shape, EventBridge's envelope. Every cloud's
 * schedule is re-expressed in it, so a failed scheduled run throws
 * (ScheduledRunFailed) and the platform redelivers, on every cloud alike.
 */
export function scheduledEvent(payload: Readonly<Record<string, unknown>> = {}): Record<string, unknown> {
  return { "detail-type": "Scheduled Event", source: "aws.scheduler", detail: payload };
}

/** A timer's tick (Azure's timer trigger): every due target, as a scheduled run. A timer carries no payload. */
export function timerTick(): Delivery {
  return { event: scheduledEvent() };
}

/**
 * Unwraps, then runs the engine once. Bad input is answered (ok: false) rather
 * than thrown: a redelivery could never succeed. Anything else propagates, so
 * the platform retries.
 */
export async function deliver<R>(
  unwrap: () => Delivery,
  invoke: (event: unknown) => Promise<InvocationResponse<R>>,
  log: EventLog,
): Promise<EventResponse<R>> {
  let delivery: Delivery;
  try {
    delivery = unwrap();
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    return refused({ ok: false, results: [], error: { type: e.name, message: e.message } }, log);
  }
  if ("ignored" in delivery) {
    log.info({ ignored: delivery.ignored }, "event acknowledged without a run");
    return { ok: true, results: [], ignored: delivery.ignored };
  }
  return refused(await invoke(delivery.event), log);
}

// Nobody reads the answer to a Pub/Sub push or an Event Grid delivery: the log is where a refusal shows.
function refused<R>(response: EventResponse<R>, log: EventLog): EventResponse<R> {
  if (response.error) log.warn({ error: response.error }, "event refused");
  return response;
}

// --- Google Cloud: Pub/Sub ----------------------------------------------------

const PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished";
const EXAMPLE = '{"target":"namespace/name"}';

export interface PubSubMessage {
  /** `data`, base64-decoded as UTF-8 ("" when the message has none). */
  readonly data: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly messageId?: string;
}

/**
 * The Pub/Sub message of a `messagePublished` CloudEvent (`data.message`), or of
 * a raw push request body (`message`): the functions framework passes a push
 * without data through unconverted.
 */
export function pubSubMessage(event: unknown): PubSubMessage {
  if (!isObject(event)) throw new InputError(`Pub/Sub event: expected a ${PUBSUB_TYPE} CloudEvent, found ${describe(event)}`);
  if (event.type !== undefined && event.type !== PUBSUB_TYPE) {
    throw new InputError(`Pub/Sub event: expected CloudEvent type ${PUBSUB_TYPE}, found "${String(event.type)}"`);
  }
  let body: unknown = event.data;
  if (body instanceof Uint8Array) body = parseJson(utf8(body, "Pub/Sub event data"), "Pub/Sub event data");
  const message = isObject(body) && "message" in body ? body.message : event.message;
  if (!isObject(message)) {
    throw new InputError(`Pub/Sub event: expected data.message (a Pub/Sub message), found ${describe(message)}`);
  }
  const { data, attributes, messageId } = message;
  if (data !== undefined && data !== null && typeof data !== "string") {
    throw new InputError(`Pub/Sub message.data: expected a base64 string, found ${describe(data)}`);
  }
  if (attributes !== undefined && attributes !== null && !isObject(attributes)) {
    throw new InputError(`Pub/Sub message.attributes: expected an object of strings, found ${describe(attributes)}`);
  }
  const attrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(attributes ?? {})) {
    if (typeof v !== "string") throw new InputError(`Pub/Sub message.attributes.${k}: expected a string, found ${describe(v)}`);
    attrs[k] = v;
  }
  return {
    data: data ? utf8(base64(data, "Pub/Sub message.data"), "Pub/Sub message.data") : "",
    attributes: attrs,
    ...(typeof messageId === "string" ? { messageId } : {}),
  };
}

/**
 * The rotate function's Pub/Sub topic carries Cloud Scheduler's messages (data =
 * a payload such as {"target": "ns/name"}, or empty for every due target) and
 * Secret Manager's notifications (attribute eventType). A Scheduler message is a
 * scheduled trigger; so is SECRET_ROTATE, for the targets publishing to that
 * secret. Not forced: the ExternalSecret's refreshInterval still decides, so a
 * redelivered or duplicated message never makes a second password.
 */
export function rotateFromPubSub(event: unknown, manifests: () => ManifestSet): Delivery {
  const message = pubSubMessage(event);
  const eventType = message.attributes.eventType;
  if (eventType === undefined) return { event: scheduledEvent(payloadOf(message.data, "Pub/Sub message.data")) };
  if (eventType === "TOPIC_CONFIGURED") {
    return { ignored: "Secret Manager TOPIC_CONFIGURED: the test message sent when a topic is attached to a secret" };
  }
  if (eventType !== "SECRET_ROTATE") {
    return { ignored: `Secret Manager ${eventType} notification: only SECRET_ROTATE starts a rotation` };
  }
  const secret = parseSecretId(message.attributes.secretId);
  const targets = gcpSecretTargets(manifests(), secret);
  if (targets.length === 0) {
    return {
      ignored: `Secret Manager SECRET_ROTATE for ${message.attributes.secretId}: no ExternalSecret's PushSecret writes it through a gcpsm SecretStore`,
    };
  }
  return { event: scheduledEvent({ targets }) };
}

/** The push function's topic: Cloud Scheduler messages only (data = {"target": "ns/PushSecret"} or empty). */
export function pushFromPubSub(event: unknown): Delivery {
  const message = pubSubMessage(event);
  const eventType = message.attributes.eventType;
  if (eventType !== undefined) {
    return { ignored: `Secret Manager ${eventType} notification: these start rotations (the rotate function), not pushes` };
  }
  return { event: scheduledEvent(payloadOf(message.data, "Pub/Sub message.data")) };
}

export interface GcpSecretRef {
  readonly project: string;
  readonly location?: string;
  readonly name: string;
}

/** `projects/P/secrets/NAME` or, for a regional secret, `projects/P/locations/L/secrets/NAME`. */
export function parseSecretId(secretId: string | undefined): GcpSecretRef {
  const m = /^projects\/([^/]+)\/(?:locations\/([^/]+)\/)?secrets\/([^/]+)$/.exec(secretId ?? "");
  if (!m) {
    throw new InputError(
      `Secret Manager SECRET_ROTATE notification: attribute secretId: expected projects/PROJECT/secrets/NAME, found ${secretId === undefined ? "none" : `"${secretId}"`}`,
    );
  }
  return { project: m[1]!, ...(m[2] ? { location: m[2] } : {}), name: m[3]! };
}

/**
 * The target Secrets ("namespace/name") whose rotation writes the Secret Manager
 * secret `ref`, through a gcpsm SecretStore. Notifications name the project by
 * number, which manifests (projectID) do not know: a numeric project matches any.
 */
export function gcpSecretTargets(manifests: ManifestSet, ref: GcpSecretRef): string[] {
  return targetsPublishingTo(manifests, (store, remoteKey) => {
    if (store.provider.name !== "gcpsm") return false;
    const { projectID, location } = store.provider.config;
    // ESO's gcpsm remote key is the secret's name; a full resource name is read the same way.
    const full = /^projects\/([^/]+)\/(?:locations\/([^/]+)\/)?secrets\/([^/]+)$/.exec(remoteKey);
    const project = full ? full[1]! : projectID;
    const name = full ? full[3]! : remoteKey;
    const region = full ? full[2] : location;
    return name === ref.name && (region ?? "") === (ref.location ?? "") && (project === ref.project || /^\d+$/.test(ref.project));
  });
}

// --- Azure: Event Grid ---------------------------------------------------------

const NEAR_EXPIRY = "Microsoft.KeyVault.SecretNearExpiry";

/**
 * Key Vault's SecretNearExpiry (Event Grid or CloudEvents schema) → a scheduled
 * run of the targets publishing to that secret; other event types are skipped.
 */
export function rotateFromEventGrid(event: unknown, manifests: () => ManifestSet): Delivery {
  if (!isObject(event)) throw new InputError(`Event Grid event: expected an object, found ${describe(event)}`);
  const type = event.eventType ?? event.type;
  if (typeof type !== "string" || type === "") {
    throw new InputError(`Event Grid event: no eventType (expected ${NEAR_EXPIRY})`);
  }
  if (type !== NEAR_EXPIRY) return { ignored: `Event Grid ${type}: only ${NEAR_EXPIRY} starts a rotation` };
  const data = event.data;
  if (!isObject(data)) throw new InputError(`Event Grid ${NEAR_EXPIRY}: data: expected an object, found ${describe(data)}`);
  const { ObjectName: name, VaultName: vault } = data;
  if (typeof name !== "string" || name === "") {
    throw new InputError(`Event Grid ${NEAR_EXPIRY}: data.ObjectName: expected the secret's name, found ${describe(name)}`);
  }
  if (vault !== undefined && typeof vault !== "string") {
    throw new InputError(`Event Grid ${NEAR_EXPIRY}: data.VaultName: expected a string, found ${describe(vault)}`);
  }
  const targets = azureSecretTargets(manifests(), { name, ...(vault ? { vault } : {}) });
  if (targets.length === 0) {
    return {
      ignored: `Event Grid ${NEAR_EXPIRY} for ${vault ? `${vault}/` : ""}${name}: no ExternalSecret's PushSecret writes it through an azurekv SecretStore`,
    };
  }
  return { event: scheduledEvent({ targets }) };
}

/**
 * The target Secrets whose rotation writes Key Vault secret `name` (in vault
 * `vault`, the first label of the vault URL's host, when given) through an
 * azurekv SecretStore. Key Vault names are case-insensitive.
 */
export function azureSecretTargets(manifests: ManifestSet, ref: { readonly vault?: string; readonly name: string }): string[] {
  return targetsPublishingTo(manifests, (store, remoteKey) => {
    if (store.provider.name !== "azurekv") return false;
    const host = new URL(store.provider.config.vaultUrl).hostname;
    if (ref.vault && host.split(".")[0]!.toLowerCase() !== ref.vault.toLowerCase()) return false;
    // ESO's azurekv remote keys: "NAME" or "secret/NAME" (key/ and cert/ are other object types).
    const name = remoteKey.startsWith("secret/") ? remoteKey.slice("secret/".length) : remoteKey;
    return !name.includes("/") && name.toLowerCase() === ref.name.toLowerCase();
  });
}

// --- HTTP (Cloud Scheduler → HTTP, manual runs; GCP and Azure) ------------------

export interface HttpCall {
  readonly method: string;
  /** A request header, case-insensitive. */
  header(name: string): string | undefined;
  /** As the platform parsed it: an object (JSON), a string, bytes, or nothing. */
  readonly body: unknown;
}

export interface HttpAnswer<R> {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: EventResponse<R>;
}

/**
 * POST with a manual payload → 200 with the response (ok: false when a target
 * failed), 400 for bad input, 405 for another method. Cloud Scheduler's requests
 * (header X-CloudScheduler: true) are scheduled runs: a failed one answers 500,
 * so the job's retry policy runs it again.
 */
export async function answerHttp<R>(
  call: HttpCall,
  invoke: (event: unknown) => Promise<InvocationResponse<R>>,
  log: EventLog,
): Promise<HttpAnswer<R>> {
  const json = { "content-type": "application/json" };
  if (call.method.toUpperCase() !== "POST") {
    const message = `method ${call.method}: expected POST with a JSON body such as ${EXAMPLE}`;
    return { status: 405, headers: { ...json, allow: "POST" }, body: { ok: false, results: [], error: { type: "InputError", message } } };
  }
  const scheduled = call.header("x-cloudscheduler")?.toLowerCase() === "true";
  try {
    const response = await deliver(
      () => {
        const payload = bodyPayload(call.body);
        return { event: scheduled ? scheduledEvent(payload ?? {}) : payload };
      },
      invoke,
      log,
    );
    return { status: response.error ? 400 : 200, headers: json, body: response };
  } catch (e) {
    const error = e instanceof Error ? e : new Error(String(e));
    log.error({ error: { type: error.name, message: error.message } }, "run failed");
    return {
      status: 500,
      headers: json,
      body: { ok: false, trigger: scheduled ? "schedule" : "manual", results: [], error: { type: error.name, message: error.message } },
    };
  }
}

function bodyPayload(body: unknown): Record<string, unknown> | undefined {
  if (body === undefined || body === null) return undefined;
  if (body instanceof Uint8Array) body = utf8(body, "request body");
  if (typeof body === "string") return body.trim() === "" ? undefined : payloadOf(body, "request body");
  if (isObject(body)) return Object.keys(body).length === 0 ? undefined : body;
  throw new InputError(`request body: expected a JSON object such as ${EXAMPLE}, found ${describe(body)}`);
}

// --- shared ---------------------------------------------------------------------

type StoreMatch = (store: ManifestSet["secretStores"][number], remoteKey: string) => boolean;

function targetsPublishingTo(manifests: ManifestSet, matches: StoreMatch): string[] {
  const found = new Set<string>();
  for (const target of planRotations(manifests)) {
    if (target.publications.some((p) => matches(p.store, p.remoteKey))) found.add(targetName(target));
  }
  return [...found];
}

/** A JSON object from message text; "" is {} (every due target). Never echoes the text: it may be anything. */
function payloadOf(text: string, where: string): Record<string, unknown> {
  if (text.trim() === "") return {};
  const value = parseJson(text, where);
  if (!isObject(value)) throw new InputError(`${where}: expected a JSON object such as ${EXAMPLE}, found ${describe(value)}`);
  return value;
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new InputError(`${where}: expected a JSON object such as ${EXAMPLE}, found ${text.length} characters that are not JSON`);
  }
}

function base64(text: string, where: string): Uint8Array {
  const compact = text.replace(/\s+/g, "");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1) {
    throw new InputError(`${where}: expected base64 (Pub/Sub encodes the message body), found characters outside the base64 alphabet`);
  }
  return Buffer.from(compact, "base64");
}

function utf8(bytes: Uint8Array, where: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new InputError(`${where}: expected UTF-8 text, found ${bytes.length} bytes that are not`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  return typeof value === "object" ? "an object" : `a ${typeof value}`;
}
