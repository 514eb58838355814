// The docs' second example end to end: the seed's four YAML files verbatim
// (Password, ExternalSecret, SecretStore + token Secret, PushSecret), a real
// Vault dev server with KV v2 at `secrets`, and the real kube-apiserver.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadManifests } from "../../lib/manifests/index.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import { push } from "../../lib/rotation/push.ts";
import { storeFactory } from "../../lib/rotation/stores.ts";
import { startVault, type VaultServer } from "../infra/emulators/servers.ts";
import { adminClient, createAppSecret, engineFor, seenSecrets, seedYaml, uniqueName } from "./support.ts";

const kube = adminClient();
let vault: VaultServer;
const SEED_FILES = ["password-generator.yaml", "external-secret.yaml", "vault-secret-store.yaml", "push-secret.yaml"];

beforeAll(async () => {
  vault = await startVault({ kvV2Mounts: ["secrets"] });
});
afterAll(async () => {
  await vault?.stop();
});

async function kv(path: string): Promise<{ data: Record<string, string>; metadata: { custom_metadata: Record<string, string> | null; version: number } }> {
  const res = await fetch(`${vault.address}/v1/secrets/data/${path}`, { headers: { "X-Vault-Token": vault.token } });
  expect(res.status).toBe(200);
  const data = ((await res.json()) as { data: { data: Record<string, string> } }).data.data;
  const meta = await fetch(`${vault.address}/v1/secrets/metadata/${path}`, { headers: { "X-Vault-Token": vault.token } });
  const metadata = ((await meta.json()) as { data: { custom_metadata: Record<string, string> | null; current_version: number } }).data;
  return { data, metadata: { custom_metadata: metadata.custom_metadata, version: metadata.current_version } };
}

describe("the seed's second example: rotate, then the Secret is in Vault KV v2", () => {
  it("holds every key of the Secret at secrets/cluster-example-app, equal to the Secret, marked as ours", async () => {
    const namespace = uniqueName("seed");
    await kube.ensureNamespace(namespace);
    const manifests = loadManifests(
      SEED_FILES.map((f) => ({ file: f, text: seedYaml(f) })),
      { namespace },
    );
    // Apply the seed's token Secret as `kubectl apply` would, with its placeholder
    // (`hvs.*******`, which Vault refuses as a token id) replaced by this server's token —
    // the one edit the docs expect of every reader.
    const token = manifests.secrets[0]!;
    expect(token.data.token).toBe("hvs.*******");
    await kube.createSecret(namespace, token.metadata.name, { type: "Opaque", data: { token: vault.token } });
    const original = await createAppSecret(kube, namespace);
    seenSecrets.add(original.data.password!);

    // vault.vault.svc:8200 resolves only inside a cluster: the function is told where Vault is.
    const engine = engineFor(manifests, kube, { createStore: storeFactory({ vaultServer: vault.address }) });
    const [result] = await rotate(engine);
    expect(result).toMatchObject({ outcome: "rotated", stores: [{ store: "SecretStore/vault-backend", provider: "vault", remoteKey: "cluster-example-app" }] });

    const secret = (await kube.readSecret(namespace, "cluster-example-app"))!;
    seenSecrets.add(secret.data.password!);
    const stored = await kv("cluster-example-app");
    expect(stored.data).toEqual(secret.data);
    expect(Object.keys(stored.data).sort()).toEqual(
      ["dbname", "fqdn-jdbc-uri", "fqdn-uri", "host", "jdbc-uri", "password", "pgpass", "port", "uri", "user", "username"],
    );
    expect(stored.metadata.custom_metadata).toMatchObject({ "managed-by": "cnpg-rotator" });
    // The version before holds the Secret as it was: nothing applied is ever lost.
    const previous = await fetch(`${vault.address}/v1/secrets/data/cluster-example-app?version=${stored.metadata.version - 1}`, {
      headers: { "X-Vault-Token": vault.token },
    });
    expect(((await previous.json()) as { data: { data: Record<string, string> } }).data.data.password).toBe(original.data.password);

    // The push schedule finds nothing to do: no new version.
    const [pushed] = await push(engine);
    expect(pushed!.outcome).toBe("unchanged");
    expect((await kv("cluster-example-app")).metadata.version).toBe(stored.metadata.version);
  });

  it("a missing token Secret is a clear error before anything is written", async () => {
    const namespace = uniqueName("seed");
    await kube.ensureNamespace(namespace);
    const manifests = loadManifests(SEED_FILES.map((f) => ({ file: f, text: seedYaml(f) })), { namespace });
    const original = await createAppSecret(kube, namespace);
    seenSecrets.add(original.data.password!);
    const engine = engineFor(manifests, kube, { createStore: storeFactory({ vaultServer: vault.address }) });
    await expect(rotate(engine)).rejects.toThrow(
      `SecretStore ${namespace}/vault-backend: spec.provider.vault.auth.tokenSecretRef: Secret ${namespace}/vault-token not found; nothing was written`,
    );
    expect((await kube.readSecret(namespace, "cluster-example-app"))!.data.password).toBe(original.data.password);
  });
});
