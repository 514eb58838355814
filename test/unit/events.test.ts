import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../lib/errors.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import {
  answerHttp,
  azureSecretTargets,
  type Delivery,
  deliver,
  gcpSecretTargets,
  parseSecretId,
  pubSubMessage,
  pushFromPubSub,
  rotateFromEventGrid,
  rotateFromPubSub,
  scheduledEvent,
  timerTick,
} from "../../triggers/events.ts";
import type { InvocationResponse } from "../../triggers/invoke.ts";
import { parseRotateRequest } from "../../triggers/request.ts";

const SEED = join(import.meta.dirname, "../../examples/seed");
const seed = (name: string) => readFileSync(join(SEED, name), "utf8");

const store = (name: string, provider: string) => `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: ${name}, namespace: NS}
spec:
  provider:
${provider}`;
const pushSecret = (name: string, storeName: string, remoteKey: string, secret = "cluster-example-app") => `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: ${name}, namespace: NS}
spec:
  secretStoreRefs: [{name: ${storeName}, kind: SecretStore}]
  selector: {secret: {name: ${secret}}}
  data:
    - match: {remoteRef: {remoteKey: ${remoteKey}}}
`;
const inNamespace = (ns: string, text: string) => text.replaceAll("NS", ns);

/** The seed's Password + ExternalSecret in three namespaces, each publishing to another store. */
const manifests = loadManifests(
  ["apps", "shop", "billing"].flatMap((ns) => [
    { file: `${ns}/password.yaml`, text: seed("password-generator.yaml").replace(/^metadata:\n/m, `metadata:\n  namespace: ${ns}\n`) },
    { file: `${ns}/es.yaml`, text: seed("external-secret.yaml").replace(/^metadata:\n/m, `metadata:\n  namespace: ${ns}\n`) },
  ]).concat([
    { file: "apps/store.yaml", text: inNamespace("apps", store("gsm", "    gcpsm: {projectID: my-project}\n")) },
    { file: "apps/push.yaml", text: inNamespace("apps", pushSecret("to-gsm", "gsm", "cluster-example-app")) },
    { file: "shop/store.yaml", text: inNamespace("shop", store("gsm-eu", "    gcpsm: {projectID: my-project, location: europe-west1}\n")) },
    { file: "shop/push.yaml", text: inNamespace("shop", pushSecret("to-gsm", "gsm-eu", "cluster-example-app")) },
    { file: "billing/store.yaml", text: inNamespace("billing", store("kv", "    azurekv: {vaultUrl: 'https://pg-vault.vault.azure.net'}\n")) },
    { file: "billing/push.yaml", text: inNamespace("billing", pushSecret("to-kv", "kv", "secret/Billing-App")) },
  ]),
);
const load = () => manifests;

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

/** A messagePublished CloudEvent as Eventarc delivers it to a 2nd gen function. */
function pubSubEvent(message: { data?: string; attributes?: Record<string, string> }) {
  return {
    specversion: "1.0",
    id: "1234567890",
    source: "//pubsub.googleapis.com/projects/my-project/topics/cnpg-rotator",
    type: "google.cloud.pubsub.topic.v1.messagePublished",
    datacontenttype: "application/json",
    data: {
      message: { ...message, messageId: "1234567890", publishTime: "2026-01-15T03:00:00.000Z" },
      subscription: "projects/my-project/subscriptions/eventarc-sub",
    },
  };
}

const eventOf = (d: Delivery) => {
  if (!("event" in d)) throw new Error(`ignored: ${d.ignored}`);
  return d.event;
};

describe("pubSubMessage", () => {
  it("decodes base64 data as UTF-8 and keeps the attributes, from a CloudEvent or a raw push body", () => {
    const text = '{"target":"apps/cluster-example-app","note":"ü"}';
    expect(pubSubMessage(pubSubEvent({ data: b64(text), attributes: { a: "b" } }))).toEqual({
      data: text,
      attributes: { a: "b" },
      messageId: "1234567890",
    });
    // The functions framework passes a push without data through as the raw push body.
    expect(pubSubMessage({ message: { attributes: { eventType: "TOPIC_CONFIGURED" }, messageId: "7" }, subscription: "s" })).toEqual({
      data: "",
      attributes: { eventType: "TOPIC_CONFIGURED" },
      messageId: "7",
    });
    // A body the platform left as bytes.
    const bytes = Buffer.from(JSON.stringify({ message: { data: b64("{}") } }));
    expect(pubSubMessage({ type: "google.cloud.pubsub.topic.v1.messagePublished", data: bytes }).data).toBe("{}");
  });

  it("names what is wrong with a bad envelope", () => {
    expect(() => pubSubMessage("hello")).toThrow(/^Pub\/Sub event: expected a google.cloud.pubsub.topic.v1.messagePublished CloudEvent, found a string$/);
    expect(() => pubSubMessage({ ...pubSubEvent({}), type: "google.cloud.storage.object.v1.finalized" })).toThrow(
      /expected CloudEvent type google.cloud.pubsub.topic.v1.messagePublished, found "google.cloud.storage.object.v1.finalized"/,
    );
    expect(() => pubSubMessage({ type: "google.cloud.pubsub.topic.v1.messagePublished", data: {} })).toThrow(
      /expected data.message \(a Pub\/Sub message\), found nothing/,
    );
    expect(() => pubSubMessage(pubSubEvent({ data: 42 as unknown as string }))).toThrow(/message.data: expected a base64 string, found a number/);
    expect(() => pubSubMessage(pubSubEvent({ data: "not base64!" }))).toThrow(/message.data: expected base64 .* outside the base64 alphabet/);
    expect(() => pubSubMessage(pubSubEvent({ data: Buffer.from([0xff, 0xfe]).toString("base64") }))).toThrow(
      /message.data: expected UTF-8 text, found 2 bytes/,
    );
    expect(() => pubSubMessage(pubSubEvent({ attributes: { n: 1 } as unknown as Record<string, string> }))).toThrow(
      /message.attributes.n: expected a string, found a number/,
    );
    for (const bad of ["x", pubSubEvent({ data: "!" })]) expect(() => pubSubMessage(bad)).toThrow(InputError);
  });
});

describe("rotateFromPubSub: Cloud Scheduler messages", () => {
  it("is a scheduled run of the message's payload", () => {
    const event = eventOf(rotateFromPubSub(pubSubEvent({ data: b64('{"target":"apps/cluster-example-app"}') }), load));
    expect(event).toEqual(scheduledEvent({ target: "apps/cluster-example-app" }));
    expect(parseRotateRequest(event)).toEqual({ trigger: "schedule", targets: ["apps/cluster-example-app"] });
  });

  it("with empty data (or none) rotates every due target", () => {
    for (const message of [{}, { data: "" }, { data: b64("  \n") }]) {
      expect(parseRotateRequest(eventOf(rotateFromPubSub(pubSubEvent(message), load)))).toEqual({ trigger: "schedule" });
    }
  });

  it("refuses data that is not a JSON object, without echoing it", () => {
    expect(() => rotateFromPubSub(pubSubEvent({ data: b64("hunter2-secret") }), load)).toThrow(
      /^Pub\/Sub message.data: expected a JSON object such as \{"target":"namespace\/name"\}, found 14 characters that are not JSON$/,
    );
    expect(() => rotateFromPubSub(pubSubEvent({ data: b64('["apps/x"]') }), load)).toThrow(/message.data: expected a JSON object .* found an array/);
    // Fields are checked by the engine's own request parser, naming the field.
    expect(() => parseRotateRequest(eventOf(rotateFromPubSub(pubSubEvent({ data: b64('{"taget":"x"}') }), load)))).toThrow(
      /unknown field "taget"/,
    );
  });
});

describe("rotateFromPubSub: Secret Manager notifications", () => {
  const notification = (eventType: string, secretId?: string) =>
    pubSubEvent({
      data: b64(JSON.stringify({ name: secretId })),
      attributes: { eventType, dataFormat: "JSON_API_V1", ...(secretId ? { secretId } : {}) },
    });

  it("SECRET_ROTATE rotates, as a scheduled run, the targets whose gcpsm store writes that secret", () => {
    const d = rotateFromPubSub(notification("SECRET_ROTATE", "projects/123456789/secrets/cluster-example-app"), load);
    expect(parseRotateRequest(eventOf(d))).toEqual({ trigger: "schedule", targets: ["apps/cluster-example-app"] });
    const regional = rotateFromPubSub(notification("SECRET_ROTATE", "projects/my-project/locations/europe-west1/secrets/cluster-example-app"), load);
    expect(parseRotateRequest(eventOf(regional))).toEqual({ trigger: "schedule", targets: ["shop/cluster-example-app"] });
  });

  it("SECRET_ROTATE of a secret no target writes is acknowledged, saying so", () => {
    expect(rotateFromPubSub(notification("SECRET_ROTATE", "projects/123/secrets/someone-elses"), load)).toEqual({
      ignored: expect.stringMatching(/SECRET_ROTATE for projects\/123\/secrets\/someone-elses: no ExternalSecret's PushSecret writes it/),
    });
    // Another project, named by ID: not ours either.
    expect(rotateFromPubSub(notification("SECRET_ROTATE", "projects/other-project/secrets/cluster-example-app"), load)).toHaveProperty("ignored");
  });

  it("TOPIC_CONFIGURED and every other event type are acknowledged without reading the manifests", () => {
    const never = () => {
      throw new Error("manifests read");
    };
    expect(rotateFromPubSub(pubSubEvent({ attributes: { eventType: "TOPIC_CONFIGURED" } }), never)).toEqual({
      ignored: expect.stringMatching(/^Secret Manager TOPIC_CONFIGURED: the test message/),
    });
    expect(rotateFromPubSub(notification("SECRET_VERSION_ADD", "projects/1/secrets/cluster-example-app"), never)).toEqual({
      ignored: "Secret Manager SECRET_VERSION_ADD notification: only SECRET_ROTATE starts a rotation",
    });
  });

  it("SECRET_ROTATE without a usable secretId is bad input", () => {
    expect(() => rotateFromPubSub(notification("SECRET_ROTATE"), load)).toThrow(
      /attribute secretId: expected projects\/PROJECT\/secrets\/NAME, found none/,
    );
    expect(() => parseSecretId("secrets/x")).toThrow(/found "secrets\/x"/);
    expect(parseSecretId("projects/p/locations/l/secrets/n")).toEqual({ project: "p", location: "l", name: "n" });
  });
});

describe("gcpSecretTargets / azureSecretTargets", () => {
  it("match a project number to any projectID, a project ID only to its own, and a region only to its own", () => {
    expect(gcpSecretTargets(manifests, { project: "42", name: "cluster-example-app" })).toEqual(["apps/cluster-example-app"]);
    expect(gcpSecretTargets(manifests, { project: "my-project", name: "cluster-example-app" })).toEqual(["apps/cluster-example-app"]);
    expect(gcpSecretTargets(manifests, { project: "my-project", location: "europe-west1", name: "cluster-example-app" })).toEqual([
      "shop/cluster-example-app",
    ]);
    expect(gcpSecretTargets(manifests, { project: "42", location: "us-east1", name: "cluster-example-app" })).toEqual([]);
  });

  it("match Key Vault names case-insensitively, with or without ESO's secret/ prefix, in the named vault only", () => {
    expect(azureSecretTargets(manifests, { vault: "PG-VAULT", name: "billing-app" })).toEqual(["billing/cluster-example-app"]);
    expect(azureSecretTargets(manifests, { name: "Billing-App" })).toEqual(["billing/cluster-example-app"]);
    expect(azureSecretTargets(manifests, { vault: "other-vault", name: "Billing-App" })).toEqual([]);
  });
});

describe("pushFromPubSub", () => {
  it("is a scheduled push of the message's payload; Secret Manager notifications are not for it", () => {
    const event = eventOf(pushFromPubSub(pubSubEvent({ data: b64('{"target":"apps/to-gsm"}') })));
    expect(parseRotateRequest(event)).toEqual({ trigger: "schedule", targets: ["apps/to-gsm"] });
    expect(pushFromPubSub(pubSubEvent({ attributes: { eventType: "SECRET_ROTATE", secretId: "projects/1/secrets/x" } }))).toEqual({
      ignored: expect.stringMatching(/SECRET_ROTATE notification: these start rotations/),
    });
  });
});

describe("rotateFromEventGrid", () => {
  const nearExpiry = (data: Record<string, unknown>) => ({
    id: "00000000-0000-0000-0000-000000000001",
    topic: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/pg-vault",
    subject: "Billing-App",
    eventType: "Microsoft.KeyVault.SecretNearExpiry",
    eventTime: "2026-01-15T03:00:00Z",
    dataVersion: "1",
    metadataVersion: "1",
    data,
  });
  const data = {
    Id: "https://pg-vault.vault.azure.net/secrets/Billing-App/0123456789abcdef",
    VaultName: "pg-vault",
    ObjectType: "Secret",
    ObjectName: "Billing-App",
    Version: "0123456789abcdef",
    NBF: null,
    EXP: 1768446000,
  };

  it("SecretNearExpiry rotates, as a scheduled run, the targets whose azurekv store writes that secret", () => {
    expect(parseRotateRequest(eventOf(rotateFromEventGrid(nearExpiry(data), load)))).toEqual({
      trigger: "schedule",
      targets: ["billing/cluster-example-app"],
    });
    // The CloudEvents schema of the same event.
    const cloudEvent = { specversion: "1.0", type: "Microsoft.KeyVault.SecretNearExpiry", source: "/x", id: "1", data };
    expect(parseRotateRequest(eventOf(rotateFromEventGrid(cloudEvent, load)))).toMatchObject({ targets: ["billing/cluster-example-app"] });
  });

  it("acknowledges other event types and secrets no target writes", () => {
    expect(rotateFromEventGrid({ ...nearExpiry(data), eventType: "Microsoft.KeyVault.SecretNewVersionCreated" }, load)).toEqual({
      ignored: "Event Grid Microsoft.KeyVault.SecretNewVersionCreated: only Microsoft.KeyVault.SecretNearExpiry starts a rotation",
    });
    expect(rotateFromEventGrid(nearExpiry({ ...data, ObjectName: "unrelated" }), load)).toEqual({
      ignored: expect.stringMatching(/for pg-vault\/unrelated: no ExternalSecret's PushSecret writes it through an azurekv SecretStore/),
    });
  });

  it("names what is wrong with a bad event", () => {
    expect(() => rotateFromEventGrid([], load)).toThrow(/^Event Grid event: expected an object, found an array$/);
    expect(() => rotateFromEventGrid({ data }, load)).toThrow(/no eventType \(expected Microsoft.KeyVault.SecretNearExpiry\)/);
    expect(() => rotateFromEventGrid(nearExpiry({ ...data, ObjectName: "" }), load)).toThrow(/data.ObjectName: expected the secret's name, found a string/);
    expect(() => rotateFromEventGrid({ ...nearExpiry(data), data: "x" }, load)).toThrow(/SecretNearExpiry: data: expected an object, found a string/);
  });
});

describe("deliver and answerHttp", () => {
  const lines: string[] = [];
  const log = {
    info: (_: object, m: string) => lines.push(`info ${m}`),
    warn: (_: object, m: string) => lines.push(`warn ${m}`),
    error: (_: object, m: string) => lines.push(`error ${m}`),
  };
  const calls: unknown[] = [];
  const ok = async (event: unknown): Promise<InvocationResponse<string>> => {
    calls.push(event);
    const { trigger } = parseRotateRequest(event);
    return { ok: true, trigger, results: ["rotated"] };
  };

  it("runs the engine once, answers bad input instead of throwing, and logs what it skipped", async () => {
    expect(await deliver(timerTick, ok, log)).toEqual({ ok: true, trigger: "schedule", results: ["rotated"] });
    expect(await deliver(() => rotateFromPubSub(pubSubEvent({ data: b64("nope") }), load), ok, log)).toEqual({
      ok: false,
      results: [],
      error: { type: "InputError", message: expect.stringMatching(/^Pub\/Sub message.data: /) },
    });
    expect(await deliver(() => ({ ignored: "why" }), ok, log)).toEqual({ ok: true, results: [], ignored: "why" });
    expect(calls).toHaveLength(1);
    expect(lines).toEqual(["warn event refused", "info event acknowledged without a run"]);
    // Anything but bad input propagates: the platform retries.
    await expect(deliver(timerTick, () => Promise.reject(new Error("down")), log)).rejects.toThrow("down");
  });

  it("HTTP: 200 with the response, 400 for bad input, 405 for GET, 500 for a failed Cloud Scheduler run", async () => {
    const headers: Record<string, string> = {};
    const call = (method: string, body: unknown, extra: Record<string, string> = {}) => ({
      method,
      header: (n: string) => ({ ...headers, ...extra })[n.toLowerCase()],
      body,
    });
    expect(await answerHttp(call("POST", { target: "apps/cluster-example-app" }), ok, log)).toMatchObject({
      status: 200,
      body: { ok: true, trigger: "manual" },
    });
    expect(await answerHttp(call("POST", Buffer.from('{"target":"apps/x","force":true}')), ok, log)).toMatchObject({ status: 200 });
    expect(await answerHttp(call("POST", "{not json"), ok, log)).toMatchObject({
      status: 400,
      body: { ok: false, error: { type: "InputError", message: expect.stringMatching(/^request body: expected a JSON object/) } },
    });
    const refusing = async () => ({ ok: false, trigger: "manual" as const, results: [], error: { type: "InputError", message: "target" } });
    expect(await answerHttp(call("POST", {}), refusing, log)).toMatchObject({ status: 400 });
    expect(await answerHttp(call("GET", undefined), ok, log)).toMatchObject({
      status: 405,
      headers: { allow: "POST" },
      body: { ok: false, error: { message: expect.stringMatching(/^method GET: expected POST/) } },
    });
    const scheduled = await answerHttp(call("POST", Buffer.alloc(0), { "x-cloudscheduler": "true" }), ok, log);
    expect(scheduled).toMatchObject({ status: 200, body: { trigger: "schedule" } });
    const failing = async () => {
      throw Object.assign(new Error("1 of 1 failed: apps/x (SecretMissingError)"), { name: "ScheduledRunFailed" });
    };
    expect(await answerHttp(call("POST", undefined, { "x-cloudscheduler": "true" }), failing, log)).toMatchObject({
      status: 500,
      body: { ok: false, trigger: "schedule", error: { type: "ScheduledRunFailed" } },
    });
  });
});
