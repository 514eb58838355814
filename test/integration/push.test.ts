// PushSecret against a real kube-apiserver with the file store: whole and
// per-key pushes, no new version when nothing changed, IfNotExists, Delete.
import { join } from "node:path";
import { describe, expect, inject, it } from "vitest";
import { loadManifests } from "../../lib/manifests/index.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import { push } from "../../lib/rotation/push.ts";
import { status } from "../../lib/rotation/status.ts";
import { createStore } from "../../lib/protocol/index.ts";
import { kubeRequest } from "../infra/kube-client.ts";
import { adminClient, createAppSecret, engineFor, fileStoreYaml, seedManifests, seenSecrets, tempDir, uniqueName } from "./support.ts";

const infra = inject("infra");
const kube = adminClient();
const SECRET = "cluster-example-app";

function pushYaml(spec: { updatePolicy?: string; deletionPolicy?: string; data: string }): string {
  return `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: app-push
spec:
  refreshInterval: 1h
${spec.updatePolicy ? `  updatePolicy: ${spec.updatePolicy}\n` : ""}${spec.deletionPolicy ? `  deletionPolicy: ${spec.deletionPolicy}\n` : ""}  secretStoreRefs:
    - name: local
      kind: SecretStore
  selector:
    secret:
      name: ${SECRET}
  data:
${spec.data}`;
}

async function setup(spec: Parameters<typeof pushYaml>[0]) {
  const namespace = uniqueName("push");
  await kube.ensureNamespace(namespace);
  const storePath = join(tempDir(), "store.json");
  const manifests = loadManifests(
    [{ file: "m.yaml", text: `${fileStoreYaml(storePath)}---\n${pushYaml(spec)}` }],
    { namespace },
  );
  const secret = await createAppSecret(kube, namespace);
  const store = await createStore({ name: "file", config: { path: storePath } });
  return { namespace, storePath, manifests, secret, store, engine: engineFor(manifests, kube) };
}

describe("push: the PushSecret engine", () => {
  it("pushes a whole Secret as one JSON object, and makes no new version when nothing changed", async () => {
    const { secret, store, engine, namespace } = await setup({ data: "    - match: {remoteRef: {remoteKey: app-copy}}\n" });
    const [first] = await push(engine);
    expect(first).toMatchObject({ outcome: "pushed", remoteKey: "app-copy", secret: `${namespace}/${SECRET}` });
    const current = await store.getCurrent("app-copy");
    expect(JSON.parse(current!.value)).toEqual(secret.data);
    const [second] = await push(engine);
    expect(second).toMatchObject({ outcome: "unchanged", versionId: current!.versionId });
    expect((await store.getCurrent("app-copy"))!.versionId).toBe(current!.versionId);

    await kube.updateSecret(namespace, SECRET, () => ({ data: { "extra-key": "added" } }));
    const [third] = await push(engine);
    expect(third!.outcome).toBe("pushed");
    expect(JSON.parse((await store.getCurrent("app-copy"))!.value)["extra-key"]).toBe("added");
    expect(JSON.parse((await store.getPrevious("app-copy"))!.value)["extra-key"]).toBeUndefined();
  });

  it("with secretKey and property, changes only that field of a JSON value", async () => {
    const { secret, store, engine } = await setup({
      data: "    - match: {secretKey: password, remoteRef: {remoteKey: app-fields, property: pw}}\n    - match: {secretKey: username, remoteRef: {remoteKey: app-fields, property: user}}\n",
    });
    await store.push("app-fields", JSON.stringify({ other: "kept" }));
    const [result] = await push(engine);
    expect(result!.outcome).toBe("pushed");
    expect(JSON.parse((await store.getCurrent("app-fields"))!.value)).toEqual({
      other: "kept",
      pw: secret.data.password,
      user: "app",
    });
  });

  it("updatePolicy IfNotExists never overwrites", async () => {
    const { store, engine } = await setup({ updatePolicy: "IfNotExists", data: "    - match: {secretKey: password, remoteRef: {remoteKey: app-once}}\n" });
    await store.push("app-once", "set by someone earlier");
    const [result] = await push(engine);
    expect(result!.outcome).toBe("exists");
    expect((await store.getCurrent("app-once"))!.value).toBe("set by someone earlier");
  });

  it("deletionPolicy Delete removes the remote secret once the source Secret is gone; None keeps it", async () => {
    const del = await setup({ deletionPolicy: "Delete", data: "    - match: {remoteRef: {remoteKey: app-gone}}\n" });
    await push(del.engine);
    expect(await del.store.exists("app-gone")).toBe(true);
    await kube.deleteSecret(del.namespace, SECRET);
    const [result] = await push(del.engine);
    expect(result).toMatchObject({ outcome: "deleted" });
    expect(await del.store.exists("app-gone")).toBe(false);

    const keep = await setup({ deletionPolicy: "None", data: "    - match: {remoteRef: {remoteKey: app-kept}}\n" });
    await push(keep.engine);
    await kube.deleteSecret(keep.namespace, SECRET);
    const [kept] = await push(keep.engine);
    expect(kept!.outcome).toBe("source-missing");
    expect(await keep.store.exists("app-kept")).toBe(true);
  });

  it("stands aside while a rotation is in flight, so it never publishes an unpromoted password", async () => {
    const namespace = uniqueName("push");
    await kube.ensureNamespace(namespace);
    const storePath = join(tempDir(), "store.json");
    const manifests = seedManifests(
      namespace,
      fileStoreYaml(storePath),
      pushYaml({ data: `    - match: {remoteRef: {remoteKey: ${SECRET}}}\n` }),
    );
    const original = (await createAppSecret(kube, namespace)).data.password;
    const crash = (s: string) => {
      if (s === "merge") throw new Error("simulated crash after merge");
    };
    await rotate(engineFor(manifests, kube, { afterStep: crash }));
    const [result] = await push(engineFor(manifests, kube));
    expect(result!.outcome).toBe("rotation-in-flight");
    const store = await createStore({ name: "file", config: { path: storePath } });
    expect(JSON.parse((await store.getCurrent(SECRET))!.value).password).toBe(original);
  });

  it("refuses an unknown PushSecret name before anything runs", async () => {
    const { engine } = await setup({ data: "    - match: {remoteRef: {remoteKey: x}}\n" });
    await expect(push(engine, { targets: ["default/nope"] })).rejects.toThrow(/no PushSecret default\/nope/);
  });
});

describe("push: a Secret key that is not UTF-8 text", () => {
  // Bytes no UTF-8 decoder reads back: a lone continuation byte, an invalid lead byte, a NUL.
  const BLOB = Buffer.from([0x80, 0xff, 0x00, 0xc3, 0x28]);
  const withBlob = async (namespace: string) => {
    const r = await kubeRequest(infra, `/api/v1/namespaces/${namespace}/secrets/${SECRET}`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: { data: { blob: BLOB.toString("base64") } },
    });
    expect(r.status).toBe(200);
  };
  const blobBytes = async (namespace: string) => {
    const r = await kubeRequest<{ data: Record<string, string> }>(infra, `/api/v1/namespaces/${namespace}/secrets/${SECRET}`);
    return Buffer.from(r.body.data["blob"]!, "base64");
  };

  it("is refused, naming the key, by a whole-Secret push and a secretKey push, rather than stored with U+FFFD", async () => {
    for (const data of ["    - match: {remoteRef: {remoteKey: app-copy}}\n", "    - match: {secretKey: blob, remoteRef: {remoteKey: app-copy}}\n"]) {
      const { namespace, store, engine, secret } = await setup({ data });
      seenSecrets.add(secret.data.password!);
      await withBlob(namespace);
      const [result] = await push(engine);
      expect(result).toMatchObject({ outcome: "failed", error: { type: "BinaryKeyError" } });
      expect(result!.error!.message).toMatch(/Secret key "blob" holds bytes that are not UTF-8 text.*Nothing was pushed/);
      expect(await store.getCurrent("app-copy")).toBeUndefined();
      expect(await blobBytes(namespace)).toEqual(BLOB);
    }
  });

  it("fails a rotation that would copy it, before anything is written; pushing only the password rotates and leaves its bytes alone", async () => {
    const whole = await setup({ data: `    - match: {remoteRef: {remoteKey: ${SECRET}}}\n` });
    seenSecrets.add(whole.secret.data.password!);
    await withBlob(whole.namespace);
    const manifests = seedManifests(whole.namespace, fileStoreYaml(join(tempDir(), "store.json")), pushYaml({ data: `    - match: {remoteRef: {remoteKey: ${SECRET}}}\n` }));
    const [refused] = await rotate(engineFor(manifests, kube));
    expect(refused).toMatchObject({ outcome: "failed", error: { type: "BinaryKeyError" } });
    expect((await kube.readSecret(whole.namespace, SECRET))!.data.password).toBe(whole.secret.data.password);
    const lease = await kubeRequest(infra, `/apis/coordination.k8s.io/v1/namespaces/${whole.namespace}/leases/cnpg-rotator-${SECRET}`);
    expect(lease.status).toBe(404);

    const perKey = seedManifests(whole.namespace, fileStoreYaml(join(tempDir(), "store.json")), pushYaml({ data: `    - match: {secretKey: password, remoteRef: {remoteKey: ${SECRET}}}\n` }));
    const [rotated] = await rotate(engineFor(perKey, kube));
    expect(rotated!.outcome).toBe("rotated");
    seenSecrets.add((await kube.readSecret(whole.namespace, SECRET))!.data.password!);
    expect(await blobBytes(whole.namespace)).toEqual(BLOB);
  });

  it("status compares bytes: a copy holding U+FFFD in its place is drift in that key", async () => {
    const { namespace, store, engine, secret } = await setup({ data: "    - match: {remoteRef: {remoteKey: app-copy}}\n" });
    seenSecrets.add(secret.data.password!);
    await withBlob(namespace);
    // What a whole-Secret push wrote before binary keys were refused: the bytes decoded as UTF-8.
    const decoded = Object.fromEntries(Object.entries({ ...secret.data, blob: BLOB.toString("utf8") }).sort());
    await store.push("app-copy", JSON.stringify(decoded));
    const [ps] = (await status(engine)).filter((s) => s.kind === "PushSecret");
    expect(ps).toMatchObject({ reason: "Drift", ready: false, stores: [{ inSync: false, driftedKeys: ["blob"] }] });
    expect(ps!.message).toMatch(/app-copy differs from the Secret in blob/);
  });
});
