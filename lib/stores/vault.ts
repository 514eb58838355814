// HashiCorp Vault / OpenBao KV v2 primitives, over its HTTP API with node:http(s) (the bundles leave
// undici out): a keep-alive agent trusting only the caBundle when one is given, a deadline on every
// request. The protocol stages in a sibling `<key>-pending` (docs/STORE-DESIGN.md). Every data write
// carries `options.cas`; custom_metadata has none, so it is written after the data it describes (a
// write that stops between the two is adopted by the next promote). Our bookkeeping lives in
// custom_metadata, never in the data consumers read. Versions are KV version numbers.
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { text } from "node:stream/consumers";
import * as z from "zod";
import { InputError, StoreConflictError, StoreError } from "../errors.ts";
import type { VaultProvider } from "../manifests/schema.ts";
import { parseCaPem } from "../pem.ts";
import { isNetworkError, isTransientStatus } from "../retry.ts";
import { parseJson, recordedRef, recordRotation, requestTimeoutMs, siblingNames, storeCalls } from "./primitives.ts";
import type { Marks, SecretHead, SiblingPrimitives, StoreDeps } from "./types.ts";

/** The one field a value that is not a canonical JSON object of strings is stored under. */
export const VALUE_FIELD = "value";
/** ESO's default mount when `path` is absent. */
export const DEFAULT_MOUNT = "secret";

/** Vault asks for "create" on a path with no secret yet and "update" on an existing one. */
const CREATE_UPDATE = '"create" and "update"';

const customSchema = z
  .record(z.string(), z.string())
  .nullish()
  .transform((c) => c ?? {});
const versionInfoSchema = z.looseObject({ deletion_time: z.string(), destroyed: z.boolean() });
/** Every reply the store reads is `{ data: {...} }`. */
const reply = <S extends z.ZodRawShape>(shape: S) => z.looseObject({ data: z.looseObject(shape) }).transform((r) => r.data);
// `data.data` stays z.unknown: zod would copy it key by key, mishandling a field named "__proto__".
const dataReply = reply({ data: z.unknown(), metadata: versionInfoSchema.extend({ version: z.int().positive(), custom_metadata: customSchema }) });
const metaReply = reply({ current_version: z.int().nonnegative(), versions: z.record(z.string(), versionInfoSchema), custom_metadata: customSchema });
const writeReply = reply({ version: z.int().positive() });
const mountReply = reply({ type: z.unknown(), path: z.unknown(), options: z.looseObject({ version: z.unknown() }).nullish() });

/** A request. `path`: under /v1, unencoded, as a policy names it; `expected`: statuses besides 2xx handed back unparsed. */
interface Call<S extends z.ZodType = z.ZodType> {
  readonly method: "GET" | "POST" | "DELETE";
  readonly path: string;
  readonly query?: string;
  readonly body?: unknown;
  /** The policy capabilities the call needs, quoted for the message: `"read"`. */
  readonly capability: string;
  readonly expected?: readonly number[];
  readonly reply?: S;
}

/** A status worth another try (429, 5xx): thrown so that the retry policy sees it. */
class VaultStatus extends Error {
  override name = "VaultStatus";
  readonly status: number;
  constructor(status: number, detail: string) {
    super(`HTTP ${status}: ${detail}`);
    this.status = status;
  }
}

export function vaultPrimitives(config: VaultProvider, deps: StoreDeps = {}): SiblingPrimitives {
  if ((config.version ?? "v2") !== "v2") {
    throw new InputError(
      `spec.provider.vault.version: expected "v2" (the rotation needs KV v2's versions, check-and-set and custom_metadata), found "${config.version}"`,
    );
  }
  if (!deps.token) throw new InputError("vault store needs auth.tokenSecretRef's token");
  const server = new URL(config.server);
  if (server.protocol !== "http:" && server.protocol !== "https:") {
    throw new InputError(`spec.provider.vault.server: expected an http(s) URL, found ${server.protocol}`);
  }
  if (server.username || server.password || server.search || server.hash) {
    throw new InputError("spec.provider.vault.server: expected a plain address, found credentials, a query or a fragment");
  }
  const mount = (config.path ?? DEFAULT_MOUNT).replace(/^\/+|\/+$/g, "");
  if (!isVaultPath(mount)) throw new InputError(`spec.provider.vault.path: expected a KV v2 mount path, found "${config.path}"`);
  const root = `${server.origin}${server.pathname.replace(/\/+$/, "")}`;
  const description = `vault ${root} kv-v2 mount ${mount}${config.namespace ? ` namespace ${config.namespace}` : ""}`;
  const headers: Record<string, string> = { "X-Vault-Token": deps.token, ...(config.namespace ? { "X-Vault-Namespace": config.namespace } : {}) };
  const timeout = requestTimeoutMs();
  // The SecretStore's caBundle is the only CA trusted (as ESO does); verification stays on.
  const ca = config.caBundle !== undefined && server.protocol === "https:" ? parseCaPem(config.caBundle, "spec.provider.vault.caBundle") : undefined;
  const agent = server.protocol === "https:" ? new HttpsAgent({ keepAlive: true, ...(ca ? { ca } : {}) }) : new HttpAgent({ keepAlive: true });
  const calls = storeCalls(description, {
    transient: (e) => isNetworkError(e) || (e instanceof VaultStatus && isTransientStatus(e.status)),
    detail: (e) => {
      if (!(e instanceof Error)) return String(e);
      const cause = e.cause as { code?: string; message?: string } | undefined;
      return cause?.message ? `${e.message} (${cause.message}${cause.code ? `, ${cause.code}` : ""})` : e.message;
    },
  });
  const data = (name: string) => `${mount}/data/${name}`;
  const metadata = (name: string) => `${mount}/metadata/${name}`;
  let mountChecked: Promise<void> | undefined;

  /** One request; a 2xx reply parsed as `call.reply`, an expected status handed back without one. */
  const exchange = async <S extends z.ZodType>(call: Call<S>): Promise<{ status: number; reply?: z.infer<S>; json: unknown }> => {
    const url = `${root}/v1/${call.path.split("/").map(encodeURIComponent).join("/")}${call.query ? `?${call.query}` : ""}`;
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    const length: Record<string, string> = body === undefined ? {} : { "Content-Type": "application/json", "Content-Length": String(Buffer.byteLength(body)) };
    // Redirects are not followed (node:http never does): the token header would go wherever they point.
    const res = await send(url, { method: call.method, headers: { ...headers, ...length }, agent }, timeout, body);
    const json = parseJson(res.text);
    const said = vaultErrors(json) || "no detail";
    if (res.status === 403 && !call.expected?.includes(403)) {
      throw new StoreError(
        `permission denied: ${call.method} ${call.path} in ${description} (Vault: ${said}); ` +
          `the token's policy must grant ${call.capability} on path "${call.path}", or the token is invalid or expired`,
      );
    }
    if (res.status === 404 && said.includes("no handler for route")) {
      throw new StoreError(
        `${call.method} ${call.path} in ${description}: expected a KV v2 engine mounted at "${mount}" (spec.provider.vault.path), found no engine there`,
      );
    }
    if (call.expected?.includes(res.status)) return { status: res.status, json };
    if (isTransientStatus(res.status)) throw new VaultStatus(res.status, said);
    if (res.status < 200 || res.status >= 300) {
      const redirect = res.status >= 300 && res.status < 400 ? " (a redirect: point spec.provider.vault.server at the active node)" : "";
      throw new StoreError(`${call.method} ${call.path} in ${description}: expected success, found HTTP ${res.status}${redirect}: ${said}`);
    }
    if (!call.reply) return { status: res.status, json };
    const parsed = call.reply.safeParse(json);
    if (parsed.success) return { status: res.status, reply: parsed.data, json };
    // Names the field, never its content: replies hold secret values.
    const issue = parsed.error.issues[0];
    throw new StoreError(
      `${call.method} ${call.path} in ${description}: the reply is not a KV v2 reply (at ${(issue?.path ?? []).join(".") || "top level"}: ${issue?.code ?? "invalid"}); is the mount a KV v2 engine?`,
    );
  };

  const request = async <S extends z.ZodType>(name: string, call: Call<S>) => {
    if (call.method !== "GET") await checkMount();
    return calls(`${call.method} ${call.path}`, `${mount}/${name}`, () => exchange(call));
  };

  /**
   * Before the first write: is `mount` a KV v2 engine? Writing KV v2 requests to a KV v1 mount
   * would create secrets named `metadata/<key>` and `data/<key>` there. The same preflight
   * `vault kv` makes; any token with access to the mount may call it.
   */
  const checkMount = (): Promise<void> =>
    (mountChecked ??= preflight().catch((error: unknown) => {
      mountChecked = undefined;
      throw error;
    }));
  const preflight = async (): Promise<void> => {
    const path = `sys/internal/ui/mounts/${mount}`;
    const { status, reply: found, json } = await calls(`GET ${path}`, mount, () =>
      exchange({ method: "GET", path, capability: '"read"', expected: [403, 404], reply: mountReply }),
    );
    if (status === 404) return; // A server without the endpoint: nothing to check against.
    if (status === 403) {
      throw new StoreError(
        `permission denied: ${description} shows the token no mount "${mount}" (Vault: ${vaultErrors(json) || "no detail"}); ` +
          `either no KV v2 engine is mounted there (spec.provider.vault.path) or the token's policy grants nothing under "${mount}/", or the token is invalid or expired; nothing was written`,
      );
    }
    if (found?.type !== "kv" || found.options?.version !== "2") {
      const what = `a "${String(found?.type)}" engine${found?.type === "kv" ? ` version ${String(found.options?.version ?? "1")}` : ""}`;
      throw new StoreError(`${description}: expected a KV v2 engine mounted at "${mount}" (spec.provider.vault.path), found ${what}; nothing was written`);
    }
    if (found.path !== `${mount}/`) {
      throw new StoreError(
        `${description}: spec.provider.vault.path must name the KV v2 mount itself, found "${mount}" inside the mount "${String(found.path)}"; nothing was written`,
      );
    }
  };

  /** GET <mount>/data/<key>[?version=N]: the version's value (undefined when it or the secret is gone). */
  const readData = async (name: string, version?: number) => {
    const query = version === undefined ? {} : { query: `version=${version}` };
    // 404: no such secret, or that version is deleted or destroyed.
    const { reply: found } = await request(name, { method: "GET", path: data(name), ...query, capability: '"read"', expected: [404], reply: dataReply });
    if (!found) return undefined;
    if (typeof found.data !== "object" || found.data === null || Array.isArray(found.data)) {
      throw new StoreError(`GET ${data(name)} in ${description}: expected the version's data to be a JSON object`);
    }
    return { ...recordedRef(found.metadata.custom_metadata, String(found.metadata.version)), value: fromFields(found.data as Record<string, unknown>) };
  };

  const writeMeta = (name: string, custom: Marks) =>
    request(name, { method: "POST", path: metadata(name), body: { custom_metadata: custom }, capability: CREATE_UPDATE });

  const primitives: SiblingPrimitives = {
    staging: "sibling",
    provider: "vault",
    description,
    markKind: "custom_metadata entry",
    compareAndSwap: true,

    names(key) {
      if (!isVaultPath(key)) throw new InputError(`remote key "${key}": expected a Vault path of non-empty segments, without "." or ".."`);
      return siblingNames(key);
    },

    async head(name) {
      const { reply: m } = await request(name, { method: "GET", path: metadata(name), capability: '"read"', expected: [404], reply: metaReply });
      if (!m) return undefined;
      const n = String(m.current_version);
      const info = m.versions[n];
      const alive = info !== undefined && !info.destroyed && (info.deletion_time === "" || Date.parse(info.deletion_time) > Date.now());
      return { deleted: false, marks: m.custom_metadata, ...(alive ? { latest: recordedRef(m.custom_metadata, n) } : {}), revision: n };
    },

    async read(name, which) {
      if (typeof which === "object") return readData(name, Number(which.versionId));
      const latest = await readData(name);
      if (which === "latest" || !latest || Number(latest.versionId) <= 1) return which === "latest" ? latest : undefined;
      // Gone when max_versions trimmed it or someone deleted it.
      return readData(name, Number(latest.versionId) - 1);
    },

    async createEmpty(name, marks) {
      if (await primitives.head(name)) return false;
      await writeMeta(name, marks);
      return true;
    },

    async write(name, value, { head, marks, rotationId }) {
      if (!head) await writeMeta(name, marks); // Our marker first: a secret is never there without it.
      const cas = Number(head?.revision ?? 0);
      const call = { method: "POST", path: data(name), body: { data: toFields(value), options: { cas } }, capability: CREATE_UPDATE } as const;
      const { status, reply: written, json } = await request(name, { ...call, expected: [400], reply: writeReply });
      if (status === 400) {
        const errors = vaultErrors(json);
        if (!errors.includes("check-and-set")) throw new StoreError(`POST ${data(name)} in ${description} was refused (HTTP 400): ${errors}`);
        throw new StoreConflictError(`POST ${data(name)} in ${description}: version ${cas} is no longer the latest (check-and-set); nothing was written`);
      }
      const versionId = String(written!.version);
      if (rotationId !== undefined) await writeMeta(name, recordRotation(marks, versionId, rotationId));
      return versionId;
    },

    async adopt(name, head: SecretHead, rotationId) {
      await writeMeta(name, recordRotation(head.marks, head.latest!.versionId, rotationId));
    },

    async remove(name) {
      await request(name, { method: "DELETE", path: metadata(name), capability: '"delete"', expected: [404] });
    },

    async close() {
      agent.destroy();
    },
  };
  return primitives;
}

/**
 * The KV v2 fields a value is stored as: a canonical JSON object of strings (compact, keys sorted, as
 * the engine writes a whole Secret) as those fields, so `vault kv get` shows username, password…;
 * anything else, which could not be rebuilt byte for byte from Vault's field order, and a one-field
 * `{"value": "…"}` (which would read back as a plain text), as one field `value`.
 */
export function toFields(value: string): Record<string, string> {
  // Text starting with "{" parses, if at all, to an object.
  const fields = value.startsWith("{") ? (parseJson(value) as Record<string, unknown> | undefined) : undefined;
  const keys = Object.keys(fields ?? {});
  const strings = fields !== undefined && keys.every((k) => typeof fields[k] === "string") && !(keys.length === 1 && keys[0] === VALUE_FIELD);
  return strings && canonicalJson(fields) === value ? (fields as Record<string, string>) : { [VALUE_FIELD]: value };
}

/** The value a version's fields hold: the inverse of toFields (any other object reads as its canonical JSON). */
export function fromFields(data: Record<string, unknown>): string {
  const keys = Object.keys(data);
  const only = data[VALUE_FIELD];
  if (keys.length === 1 && keys[0] === VALUE_FIELD && typeof only === "string") return only;
  return canonicalJson(data);
}

/** Compact JSON with keys in sort order (a prototype-less object, so a key "__proto__" is kept like any other). */
function canonicalJson(fields: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(fields).sort()) sorted[key] = fields[key];
  return JSON.stringify(sorted);
}

/** Segments that are neither empty nor `.`/`..`, so a key never escapes its mount into another API path. */
function isVaultPath(path: string): boolean {
  return path !== "" && path.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

function vaultErrors(json: unknown): string {
  const errors = (json as { errors?: unknown } | undefined)?.errors;
  return Array.isArray(errors) ? errors.map((e) => String(e).replace(/\s+/g, " ").trim()).join("; ").slice(0, 500) : "";
}

/** One request and its whole answer within `timeout` ms of the first byte sent; past it a TimeoutError (transient: retried). */
function send(url: string, options: { method: string; headers: Record<string, string>; agent: HttpAgent }, timeout: number, body?: string) {
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = (url.startsWith("https:") ? httpsRequest : httpRequest)(url, options, (res) => {
      text(res).then((t) => resolve({ status: res.statusCode ?? 0, text: t }), reject).finally(() => clearTimeout(timer));
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no complete answer within ${timeout} ms`), { name: "TimeoutError" })), timeout);
    req.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.end(body);
  });
}
