import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BinaryKeyError, InputError } from "../../lib/errors.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { selectTargets } from "../../lib/rotation/engine.ts";
import { planRotations, readRemoteValue, remoteValue, wholeSecretJson } from "../../lib/rotation/plan.ts";
import { ANNOTATIONS, dueCheck, successorId, successorIds } from "../../lib/rotation/names.ts";
import { parseRotateRequest } from "../../triggers/request.ts";

const SEED = join(import.meta.dirname, "../../examples/seed");
const seed = (name: string) => readFileSync(join(SEED, name), "utf8");
const FILE_STORE = `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: local}
spec:
  provider:
    file: {path: /tmp/store.json}
`;
const push = (data: string) => `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: push}
spec:
  secretStoreRefs: [{name: local, kind: SecretStore}]
  selector: {secret: {name: cluster-example-app}}
  data:
${data}`;
const WHOLE = "    - match: {remoteRef: {remoteKey: cluster-example-app}}\n";

function set(...extra: string[]) {
  return loadManifests([
    { file: "password.yaml", text: seed("password-generator.yaml") },
    { file: "es.yaml", text: seed("external-secret.yaml") },
    ...extra.map((text, i) => ({ file: `extra-${i}.yaml`, text })),
  ]);
}

describe("planRotations", () => {
  it("refuses a rotation with no store selected, saying how to choose one", () => {
    expect(() => planRotations(set())).toThrow(InputError);
    expect(() => planRotations(set())).toThrow(/no store is selected for Secret default\/cluster-example-app.*PushSecret/s);
  });

  it("plans the seed with a file store and a whole-Secret PushSecret", () => {
    const [t] = planRotations(set(FILE_STORE, push(WHOLE)));
    expect(t).toMatchObject({ namespace: "default", secretName: "cluster-example-app" });
    expect(t!.publications).toHaveLength(1);
    expect(t!.publications[0]!.remoteKey).toBe("cluster-example-app");
    expect(t!.recoveryKeys).toEqual({ password: "password" });
  });

  it("refuses a PushSecret that does not carry the generated password", () => {
    const onlyPgpass = push("    - match: {secretKey: pgpass, remoteRef: {remoteKey: k}}\n");
    expect(() => planRotations(set(FILE_STORE, onlyPgpass))).toThrow(/no store receives the generated "password" unchanged/);
  });

  it("names the template's real mistake: a missing key is not reported as a store that lacks the password", () => {
    const typo = seed("external-secret.yaml").replace('password: "{{ .password }}"', 'password: "{{ .pasword }}"');
    const manifests = loadManifests([
      { file: "password.yaml", text: seed("password-generator.yaml") },
      { file: "es.yaml", text: typo },
      { file: "store.yaml", text: FILE_STORE },
      { file: "push.yaml", text: push(WHOLE) },
    ]);
    // selectTargets is what rotate runs first, before any Lease or write.
    expect(() => selectTargets(manifests, undefined)).toThrow(/executing "password" at <\.pasword>: map has no entry for key "pasword"/);
    expect(() => selectTargets(manifests, undefined)).toThrow(InputError);
  });

  it("accepts a per-key push of the password", () => {
    const [t] = planRotations(set(FILE_STORE, push("    - match: {secretKey: password, remoteRef: {remoteKey: k, property: pw}}\n")));
    expect(t!.recoveryKeys).toEqual({ password: "password" });
  });

  it("selectTargets refuses an unknown target before anything runs", () => {
    const s = set(FILE_STORE, push(WHOLE));
    expect(selectTargets(s, ["cluster-example-app"])).toHaveLength(1);
    expect(() => selectTargets(s, ["default/nope"])).toThrow(/no ExternalSecret targets Secret default\/nope; known targets: default\/cluster-example-app/);
  });
});

describe("remote values", () => {
  const [t] = planRotations(set(FILE_STORE, push(WHOLE)));
  const data = { username: "app", password: "p@ss", dbname: "app" };

  it("a whole Secret is one JSON object with sorted keys, read back whole", () => {
    const value = remoteValue(t!.publications[0]!, data, undefined);
    expect(value).toBe(wholeSecretJson(data));
    expect(Object.keys(JSON.parse(value))).toEqual(["dbname", "password", "username"]);
    expect(readRemoteValue(t!.publications[0]!, value)).toEqual(data);
  });

  it("with property, only that field of the JSON value changes", () => {
    const [p] = planRotations(set(FILE_STORE, push("    - match: {secretKey: password, remoteRef: {remoteKey: k, property: pw}}\n")));
    const pub = p!.publications[0]!;
    expect(JSON.parse(remoteValue(pub, data, '{"other":"x","pw":"old"}'))).toEqual({ other: "x", pw: "p@ss" });
    expect(() => remoteValue(pub, data, "not json")).toThrow(/does not hold a JSON object/);
  });

  it("refuses to copy a key whose bytes are not UTF-8 text, and only such a key", () => {
    const withBlob = { ...data, blob: "\ufffd(" };
    const whole = t!.publications[0]!;
    expect(() => remoteValue(whole, withBlob, undefined, ["blob"])).toThrow(BinaryKeyError);
    expect(() => remoteValue(whole, withBlob, undefined, ["blob"])).toThrow(/PushSecret default\/push: Secret key "blob" holds bytes that are not UTF-8 text/);
    const [p] = planRotations(set(FILE_STORE, push("    - match: {secretKey: password, remoteRef: {remoteKey: k}}\n")));
    expect(remoteValue(p!.publications[0]!, withBlob, undefined, ["blob"])).toBe("p@ss");
    const [q] = planRotations(set(FILE_STORE, push(`${WHOLE}    - match: {secretKey: blob, remoteRef: {remoteKey: other}}\n`)));
    const error = (() => {
      try {
        remoteValue(q!.publications[1]!, withBlob, undefined, ["blob"]);
      } catch (e) {
        return e as BinaryKeyError;
      }
    })();
    expect(error?.keys).toEqual(["blob"]);
    // A binary key the Secret no longer has is nothing to refuse.
    expect(remoteValue(whole, data, undefined, ["blob"])).toBe(wholeSecretJson(data));
  });
});

describe("due check and rotation ids", () => {
  const [t] = planRotations(set(FILE_STORE, push(WHOLE)));
  const es = t!.externalSecret;
  const secret = (annotations: Record<string, string>) => ({
    name: "s",
    namespace: "default",
    uid: "u",
    resourceVersion: "1",
    type: "Opaque",
    labels: {},
    annotations,
    data: {},
    binaryKeys: [],
  });

  it("is due when never rotated, not due within the interval, due after it", () => {
    const now = new Date("2026-01-02T00:00:00Z");
    expect(dueCheck(es, undefined, now).due).toBe(true);
    expect(dueCheck(es, secret({}), now).due).toBe(true);
    const recent = secret({ [ANNOTATIONS.rotatedAt]: "2026-01-01T12:00:00Z" });
    expect(dueCheck(es, recent, now)).toMatchObject({ due: false, nextDue: new Date("2026-01-02T12:00:00Z") });
    const old = secret({ [ANNOTATIONS.rotatedAt]: "2026-01-01T00:00:30Z" });
    expect(dueCheck(es, old, now).due).toBe(true); // a scheduler firing 30 s early still counts
  });

  it("successor ids are deterministic UUID-shaped tokens (AWS ClientRequestToken: 32-64 chars)", () => {
    const uid = "6f1c2b9e-0d4a-4c43-9a53-5b1f0e7d2c10";
    const a = successorId("default", "x", uid, undefined);
    expect(a).toBe(successorId("default", "x", uid, undefined));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(successorId("default", "x", uid, a)).not.toBe(a);
    expect(successorId("other", "x", uid, undefined)).not.toBe(a);
  });

  it("successor ids differ per Secret object: a Secret deleted and created again gets new ids", () => {
    const first = successorId("default", "x", "uid-of-the-first-secret", undefined);
    const recreated = successorId("default", "x", "uid-of-the-second-secret", undefined);
    expect(recreated).not.toBe(first);
    expect(successorId("default", "x", "uid-of-the-second-secret", recreated)).not.toBe(
      successorId("default", "x", "uid-of-the-first-secret", recreated),
    );
    // The id of releases that derived it without the uid is still recognised, to resume with.
    const [current, legacy] = successorIds("default", "x", "uid-of-the-second-secret", undefined);
    expect(current).toBe(recreated);
    expect(legacy).toBe(successorIds("default", "x", "uid-of-the-first-secret", undefined)[1]);
    expect(legacy).not.toBe(current);
    // Pinned: what successorId("default", "x", previous) returned before the uid was part of it.
    expect(successorIds("default", "x", "any", undefined)[1]).toBe("f8690767-801c-a71a-1340-102ef83755ce");
    expect(successorIds("default", "x", "any", "abc")[1]).toBe("1725d1d0-cc9b-1c40-5b11-a41091236894");
  });
});

describe("parseRotateRequest", () => {
  it("reads manual payloads", () => {
    expect(parseRotateRequest({ target: "default/cluster-example-app", force: true, dryRun: true })).toEqual({
      trigger: "manual",
      targets: ["default/cluster-example-app"],
      force: true,
      dryRun: true,
    });
    expect(parseRotateRequest(undefined)).toEqual({ trigger: "manual" });
    expect(parseRotateRequest('{"force": true}')).toEqual({ trigger: "manual", force: true });
  });

  it("reads EventBridge scheduled events", () => {
    const event = {
      version: "0",
      id: "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
      "detail-type": "Scheduled Event",
      source: "aws.events",
      account: "123456789012",
      time: "2026-11-27T00:00:00Z",
      region: "us-east-1",
      resources: ["arn:aws:events:us-east-1:123456789012:rule/my-schedule"],
      detail: {},
    };
    expect(parseRotateRequest(event)).toEqual({ trigger: "schedule" });
  });

  it("refuses what it does not understand, naming the field", () => {
    expect(() => parseRotateRequest({ target: "Default/X" })).toThrow(/event\.target: expected "namespace\/name"/);
    expect(() => parseRotateRequest({ force: "yes" })).toThrow(/event\.force: expected boolean/);
    expect(() => parseRotateRequest({ tagret: "a/b" })).toThrow(/unknown field "tagret"/);
    expect(() => parseRotateRequest([1])).toThrow(/expected a JSON object, found an array/);
    expect(() => parseRotateRequest("{nope")).toThrow(/expected a JSON object/);
  });
});
