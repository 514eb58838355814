// PushSecret against a real kube-apiserver with the file store: whole and
// per-key pushes, no new version when nothing changed, IfNotExists, Delete.
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadManifests } from "../../lib/manifests/index.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import { push } from "../../lib/rotation/push.ts";
import { createStore } from "../../lib/stores/index.ts";
import { adminClient, createAppSecret, engineFor, fileStoreYaml, seedManifests, tempDir, uniqueName } from "./support.ts";

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
