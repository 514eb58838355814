// The vault store against HashiCorp Vault's dev server (KV v2 mounted at the seed's `secrets`):
// the conformance suite, then what is particular to Vault: the sibling `<key>-pending`, what a
// consumer reading the latest version sees during a rotation, compare-and-swap, the KV field
// mapping, policies, TLS with a caBundle. Checks read Vault through its HTTP API, as `vault kv
// get` would, never through the store.
import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import dc from "node:diagnostics_channel";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { InputError, OwnershipError, StoreConflictError, StoreError, StoreStateError } from "../../lib/errors.ts";
import type { VaultProvider } from "../../lib/manifests/schema.ts";
import { createClient } from "../../lib/protocol/index.ts";
import type { SecretStoreClient, StoreDeps } from "../../lib/stores/types.ts";
import { CURRENT_ROTATION, PREVIOUS_ROTATION, ROTATION_ID } from "../../lib/stores/primitives.ts";
import { vaultPrimitives } from "../../lib/stores/vault.ts";
import { type FaultProxy, startFaultProxy } from "../faults/fault-proxy.ts";
import { cacheDir, freePort, startVault, type VaultServer } from "../infra/emulators/servers.ts";
import { describeStoreConformance } from "./stores.conformance.ts";
import { describePrimitives } from "./stores.primitives.ts";

/** The engine's client over the Vault store's primitives, as the registry builds it. */
const createVaultStore = async (config: VaultProvider, deps: StoreDeps = {}) => createClient(vaultPrimitives(config, deps));

const MOUNT = "secrets";

let vault: VaultServer;
beforeAll(async () => {
  vault = await startVault({ kvV2Mounts: [MOUNT] });
});
afterAll(async () => {
  await vault?.stop();
});

const config = (extra: Partial<VaultProvider> = {}): VaultProvider => ({
  server: vault.address,
  path: MOUNT,
  version: "v2",
  auth: { tokenSecretRef: { name: "vault-token", key: "token" } },
  ...extra,
});

// The test's own way to Vault (global fetch), apart from the store's node:http transport.
const realFetch = globalThis.fetch;

/** Vault's HTTP API with the root token (or another), bypassing the store. */
async function api(
  method: string,
  path: string,
  body?: unknown,
  token = vault.token,
): Promise<{ status: number; json: unknown }> {
  const res = await realFetch(`${vault.address}/v1/${path}`, {
    method,
    headers: { "X-Vault-Token": token, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function ok<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const reply = await api(method, path, body);
  if (reply.status >= 300) throw new Error(`${method} ${path}: HTTP ${reply.status} ${JSON.stringify(reply.json)}`);
  return reply.json as T;
}

interface VaultMetadata {
  current_version: number;
  custom_metadata: Record<string, string> | null;
}

/** The fields of a version as `vault kv get [-version=N] secrets/<key>` shows them; undefined on 404. */
async function fields(key: string, version?: number, mount = MOUNT): Promise<Record<string, unknown> | undefined> {
  const reply = await api("GET", `${mount}/data/${key}${version ? `?version=${version}` : ""}`);
  if (reply.status === 404) return undefined;
  return (reply.json as { data: { data: Record<string, unknown> } }).data.data;
}

async function metadata(key: string): Promise<VaultMetadata | undefined> {
  const reply = await api("GET", `${MOUNT}/metadata/${key}`);
  return reply.status === 404 ? undefined : (reply.json as { data: VaultMetadata }).data;
}

/** The documented mapping read back independently: one field `value` is the text, other fields a sorted JSON object. */
function consumerValue(data: Record<string, unknown>): string {
  const keys = Object.keys(data);
  if (keys.length === 1 && keys[0] === "value" && typeof data.value === "string") return data.value;
  return JSON.stringify(Object.fromEntries(keys.sort().map((k) => [k, data[k]])));
}

describePrimitives("vault", async () => ({
  primitives: vaultPrimitives(config(), { token: vault.token }),
  key: () => `primitives/${randomUUID()}`,
}));

describeStoreConformance("vault", async () => ({
  store: await createVaultStore(config(), { token: vault.token }),
  key: () => `conformance/${randomUUID()}`,
  async foreign(key, value) {
    // Pushed by ESO: its own managed-by value, which must not pass for ours.
    await ok("POST", `${MOUNT}/metadata/${key}`, { custom_metadata: { "managed-by": "external-secrets" } });
    await ok("POST", `${MOUNT}/data/${key}`, { data: { value } });
  },
  async inspect(key) {
    const meta = await metadata(key);
    if (!meta) return undefined;
    const data = await fields(key);
    return { current: data && consumerValue(data), owned: meta?.custom_metadata?.["managed-by"] === "cnpg-rotator" };
  },
}));

/** Counts the store's requests (method and path under /v1) while `body` runs (node:http's diagnostics channel). */
async function countRequests(body: () => Promise<unknown>): Promise<string[]> {
  const seen: string[] = [];
  const listener = (message: unknown) => {
    const request = (message as { request: { method: string; path: string } }).request;
    const url = new URL(request.path, "http://vault");
    seen.push(`${request.method} ${decodeURIComponent(url.pathname.replace(/^\/v1\//, ""))}`);
  };
  dc.subscribe("http.client.request.start", listener);
  try {
    await body();
  } finally {
    dc.unsubscribe("http.client.request.start", listener);
  }
  return seen;
}

describe("vault store", () => {
  let store: SecretStoreClient;
  beforeAll(async () => {
    store = await createVaultStore(config(), { token: vault.token });
  });
  afterAll(() => store?.close());
  afterEach(() => vi.restoreAllMocks());
  const key = () => `vault/${randomUUID()}`;
  const stage = async (name: string, value: string, rid: string, on = store) => on.stage(name, value, rid, await on.observe(name));
  const promote = async (name: string, rid: string, on = store) => on.promote(name, rid, await on.observe(name));
  const discard = async (name: string, rid: string, on = store) => on.discard(name, rid, await on.observe(name));

  it("stages in the sibling <key>-pending: a consumer reading the latest version sees the old value until promote", async () => {
    const name = key();
    await store.push(name, "old");
    const rid = randomUUID();
    await stage(name, "new", rid);

    // During the rotation: `vault kv get secrets/<key>` is still the old value, version 1.
    expect(await fields(name)).toEqual({ value: "old" });
    expect((await metadata(name))?.current_version).toBe(1);
    expect(await fields(`${name}-pending`)).toEqual({ value: "new" });
    expect((await metadata(`${name}-pending`))?.custom_metadata).toEqual({ "managed-by": "cnpg-rotator", [ROTATION_ID]: rid });

    await promote(name, rid);
    // After: the latest version is the new value, the one before it the old; the sibling is gone.
    const meta = await metadata(name);
    expect(meta?.current_version).toBe(2);
    expect(await fields(name)).toEqual({ value: "new" });
    expect(await fields(name, 1)).toEqual({ value: "old" });
    expect(meta?.custom_metadata).toEqual({ "managed-by": "cnpg-rotator", [CURRENT_ROTATION]: `${rid}@2` });
    expect(await metadata(`${name}-pending`))?.toBeUndefined();

    // A second rotation records which rotation made the previous version.
    const next = randomUUID();
    await stage(name, "newer", next);
    await promote(name, next);
    expect((await metadata(name))?.custom_metadata).toEqual({
      "managed-by": "cnpg-rotator",
      [CURRENT_ROTATION]: `${next}@3`,
      [PREVIOUS_ROTATION]: `${rid}@2`,
    });
    expect(await store.getPrevious(name)).toEqual({ versionId: rid, value: "new", rotationId: rid });
    expect(await store.getCurrent(name)).toEqual({ versionId: next, value: "newer", rotationId: next });
  });

  it("creates a new secret as metadata only while its first rotation is pending, so consumers find no value", async () => {
    const name = key();
    const rid = randomUUID();
    await stage(name, "first", rid);
    const meta = await metadata(name);
    expect(meta?.current_version).toBe(0);
    expect(meta?.custom_metadata).toEqual({ "managed-by": "cnpg-rotator" });
    expect((await api("GET", `${MOUNT}/data/${name}`)).status).toBe(404);
  });

  it("stores a whole-Secret JSON object as KV fields, as the seed's `vault kv get secrets/cluster-example-app` shows", async () => {
    const secret = {
      dbname: "app",
      host: "cluster-example-rw",
      jdbc_uri: "jdbc:postgresql://cluster-example-rw.default:5432/app?password=p%40ss&user=app",
      password: 'p@ss"\\/é',
      pgpass: "cluster-example-rw:5432:app:app:p@ss\n",
      port: "5432",
      uri: "postgresql://app:p%40ss@cluster-example-rw.default:5432/app",
      user: "app",
      username: "app",
    };
    // As the engine writes a whole Secret: compact JSON, keys sorted.
    const value = JSON.stringify(secret);
    const rid = randomUUID();
    await stage("cluster-example-app", value, rid);
    expect(await fields("cluster-example-app-pending")).toEqual(secret);
    await promote("cluster-example-app", rid);
    expect(await fields("cluster-example-app")).toEqual(secret);
    expect((await store.getCurrent("cluster-example-app"))?.value).toBe(value);
    expect((await store.push("cluster-example-app", value)).changed).toBe(false);
  });

  it("stores any other text under the one field `value`, and reads it back as is", async () => {
    const cases: Array<[string, Record<string, string>]> = [
      ["s3cr3t", { value: "s3cr3t" }],
      ["", { value: "" }],
      ['{"b":"1","a":"2"}', { value: '{"b":"1","a":"2"}' }], // Unsorted: Vault would not keep the order.
      ['{"a": "1"}', { value: '{"a": "1"}' }], // Not compact.
      ['{"a":{"b":"c"}}', { value: '{"a":{"b":"c"}}' }], // Not all strings.
      ['{"value":"x"}', { value: '{"value":"x"}' }], // Would read back as the text "x".
      ["[1,2]", { value: "[1,2]" }],
      ['{"a":"1","value":"x"}', { a: "1", value: "x" }],
      ["{}", {}],
    ];
    for (const [value, expected] of cases) {
      const name = key();
      await store.push(name, value);
      expect(await fields(name)).toEqual(expected);
      expect((await store.getCurrent(name))?.value).toBe(value);
    }
  });

  it("reads a secret written by someone else with fields as their sorted JSON object", async () => {
    const name = key();
    await ok("POST", `${MOUNT}/data/${name}`, { data: { zeta: "1", alpha: { nested: true } } });
    expect(await store.getCurrent(name)).toEqual({ versionId: "1", value: '{"alpha":{"nested":true},"zeta":"1"}' });
  });

  describe("compare-and-swap", () => {
    const proxies: FaultProxy[] = [];
    const stores: SecretStoreClient[] = [];
    afterEach(async () => {
      for (const s of stores.splice(0)) await s.close();
      for (const p of proxies.splice(0)) await p.close();
    });
    /**
     * A store whose first data write to `path` reaches Vault only after `concurrent` wrote there
     * (through an HTTP proxy that holds it); the statuses Vault gave the store's writes to `path`.
     */
    async function interleave(path: string, concurrent: () => Promise<unknown>): Promise<{ store: SecretStoreClient; writes: () => number[] }> {
      const proxy = await startFaultProxy({ upstream: vault.address });
      proxies.push(proxy);
      const target = `/v1/${MOUNT}/data/${path.split("/").map(encodeURIComponent).join("/")}`;
      proxy.add({ match: (r) => r.method === "POST" && r.path === target, action: { before: concurrent }, times: 1 });
      const through = await createVaultStore(config({ server: proxy.url }), { token: vault.token });
      stores.push(through);
      return { store: through, writes: () => proxy.answers.filter((a) => a.method === "POST" && a.path === target).map((a) => a.status) };
    }

    it("push: a write between the store's read and its write is detected and kept; decided again, it goes on top", async () => {
      const name = key();
      await store.push(name, "old");
      const seen = await interleave(name, () => ok("POST", `${MOUNT}/data/${name}`, { data: { value: "theirs" } }));
      await expect(seen.store.push(name, "mine")).rejects.toBeInstanceOf(StoreConflictError);
      expect(seen.writes()).toEqual([400]); // cas=1 refused: nothing written over theirs.
      expect(await store.push(name, "mine")).toEqual({ changed: true, versionId: "3" });
      expect(await fields(name, 1)).toEqual({ value: "old" });
      expect(await fields(name, 2)).toEqual({ value: "theirs" });
      expect(await fields(name, 3)).toEqual({ value: "mine" });
    });

    it("push: a concurrent write of the same value makes no second version", async () => {
      const name = key();
      await store.push(name, "old");
      const seen = await interleave(name, () => ok("POST", `${MOUNT}/data/${name}`, { data: { value: "same" } }));
      expect(await seen.store.push(name, "same")).toEqual({ changed: false, versionId: "2" });
      expect(seen.writes()).toEqual([400]);
      expect((await metadata(name))?.current_version).toBe(2);
    });

    it("promote: a push between its read and its write becomes the previous version", async () => {
      const name = key();
      await store.push(name, "old");
      const rid = randomUUID();
      await stage(name, "rotated", rid);
      const seen = await interleave(name, () => ok("POST", `${MOUNT}/data/${name}`, { data: { value: "pushed" } }));
      await expect(promote(name, rid, seen.store)).rejects.toBeInstanceOf(StoreConflictError);
      expect(seen.writes()).toEqual([400]);
      // Observed again and decided again, the push is kept as the previous version.
      await promote(name, rid);
      expect(await store.getCurrent(name)).toEqual({ versionId: rid, value: "rotated", rotationId: rid });
      expect(await store.getPrevious(name)).toEqual({ versionId: "2", value: "pushed" });
      expect((await metadata(name))?.custom_metadata?.[CURRENT_ROTATION]).toBe(`${rid}@3`);
    });

    it("promote: finishing a promote that stopped after writing the value adds no second version", async () => {
      const name = key();
      await store.push(name, "old");
      const rid = randomUUID();
      await stage(name, "rotated", rid);
      // What the stopped promote left: the staged value as the latest version, nothing recorded yet.
      await ok("POST", `${MOUNT}/data/${name}`, { data: { value: "rotated" }, options: { cas: 1 } });
      expect(await promote(name, rid)).toEqual({ versionId: rid, value: "rotated", rotationId: rid });
      expect((await metadata(name))?.current_version).toBe(2);
      expect(await store.getPrevious(name)).toEqual({ versionId: "1", value: "old" });
      expect(await store.getPending(name)).toBeUndefined();
    });

    it("stage: a half-done stage (sibling marked, value not written) is staged afresh, by the same rotation or another", async () => {
      for (const again of ["same", "other"] as const) {
        const name = key();
        await store.push(name, "old");
        const rid = randomUUID();
        await ok("POST", `${MOUNT}/metadata/${name}-pending`, { custom_metadata: { "managed-by": "cnpg-rotator", [ROTATION_ID]: rid } });
        expect(await store.getPending(name)).toBeUndefined();
        const next = again === "same" ? rid : randomUUID();
        expect(await stage(name, "v", next)).toEqual({ versionId: next, value: "v", rotationId: next });
        expect(await store.getPending(name)).toEqual({ versionId: next, value: "v", rotationId: next });
        expect((await metadata(`${name}-pending`))?.current_version).toBe(1);
      }
    });
  });

  describe("ownership", () => {
    it("refuses to use a foreign secret named <key>-pending as the staging sibling", async () => {
      const name = key();
      await store.push(name, "old");
      await ok("POST", `${MOUNT}/data/${name}-pending`, { data: { value: "someone else's" } });
      await expect(stage(name, "new", randomUUID())).rejects.toBeInstanceOf(OwnershipError);
      expect(await fields(`${name}-pending`)).toEqual({ value: "someone else's" });
      await store.delete(name);
      expect(await fields(`${name}-pending`)).toEqual({ value: "someone else's" });
    });

    it("never takes a secret of ours named <key>-pending for a sibling, nor a sibling for a key", async () => {
      const name = key();
      await ok("POST", `${MOUNT}/metadata/${name}-pending`, { custom_metadata: { "managed-by": "cnpg-rotator" } });
      await ok("POST", `${MOUNT}/data/${name}-pending`, { data: { value: "a secret of its own" } });
      await expect(stage(name, "new", randomUUID())).rejects.toBeInstanceOf(StoreStateError);
      expect(await fields(`${name}-pending`)).toEqual({ value: "a secret of its own" });
      const other = key();
      await stage(other, "staged", randomUUID());
      await expect(store.push(`${other}-pending`, "x")).rejects.toBeInstanceOf(InputError);
    });

    it("refuses a metadata-only secret without our marker", async () => {
      const name = key();
      await ok("POST", `${MOUNT}/metadata/${name}`, { custom_metadata: { owner: "team-a" } });
      await expect(store.push(name, "v")).rejects.toBeInstanceOf(OwnershipError);
      expect((await metadata(name))?.custom_metadata).toEqual({ owner: "team-a" });
    });

    it("keeps custom_metadata that others added to our secret", async () => {
      const name = key();
      await store.push(name, "old");
      await ok("POST", `${MOUNT}/metadata/${name}`, { custom_metadata: { "managed-by": "cnpg-rotator", team: "a" } });
      const rid = randomUUID();
      await stage(name, "new", rid);
      await promote(name, rid);
      expect((await metadata(name))?.custom_metadata).toMatchObject({ team: "a", [CURRENT_ROTATION]: `${rid}@2` });
    });

    it("delete removes every version and the sibling of a rotation in flight", async () => {
      const name = key();
      await store.push(name, "v1");
      await store.push(name, "v2");
      await stage(name, "v3", randomUUID());
      await store.delete(name);
      expect(await metadata(name))?.toBeUndefined();
      expect(await metadata(`${name}-pending`))?.toBeUndefined();
    });
  });

  describe("policies", () => {
    async function tokenFor(policy: string, hcl: string): Promise<string> {
      await ok("POST", `sys/policies/acl/${policy}`, { policy: hcl });
      const created = await ok<{ auth: { client_token: string } }>("POST", "auth/token/create", {
        policies: [policy],
        ttl: "1h",
      });
      return created.auth.client_token;
    }

    it("a token that may only read fails with a clear error naming the path and capability, and writes nothing", async () => {
      const token = await tokenFor(
        "cnpg-rotator-read-only",
        `path "${MOUNT}/data/*" { capabilities = ["read"] }\npath "${MOUNT}/metadata/*" { capabilities = ["read"] }\n`,
      );
      const readOnly = await createVaultStore(config(), { token });
      try {
        const fresh = key();
        const error: Error = await readOnly.push(fresh, "value-7c1e").catch((e) => e);
        expect(error).toBeInstanceOf(StoreError);
        expect(error.message).toContain("permission denied");
        expect(error.message).toContain(`${MOUNT}/metadata/${fresh}`);
        expect(error.message).toContain('"create" and "update"');
        expect(error.message).not.toContain(token);
        expect(error.message).not.toContain("value-7c1e");
        expect(await metadata(fresh))?.toBeUndefined();

        const existing = key();
        await store.push(existing, "old");
        const refused: Error = await readOnly.push(existing, "value-7c1e").catch((e) => e);
        expect(refused.message).toMatch(new RegExp(`permission denied.*${MOUNT}/data/${existing}`));
        await expect(stage(existing, "value-7c1e", randomUUID(), readOnly)).rejects.toThrow(
          `${MOUNT}/metadata/${existing}-pending`,
        );
        expect(await metadata(`${existing}-pending`))?.toBeUndefined();
        expect((await metadata(existing))?.current_version).toBe(1);
        expect(await readOnly.getCurrent(existing)).toEqual({ versionId: "1", value: "old" });
      } finally {
        await readOnly.close();
      }
    });

    it("the documented policy is enough for every operation", async () => {
      const token = await tokenFor(
        "cnpg-rotator",
        `path "${MOUNT}/data/*" {\n  capabilities = ["create", "read", "update"]\n}\npath "${MOUNT}/metadata/*" {\n  capabilities = ["create", "read", "update", "delete"]\n}\n`,
      );
      const limited = await createVaultStore(config(), { token });
      try {
        const name = key();
        const rid = randomUUID();
        await stage(name, "first", rid, limited);
        await promote(name, rid, limited);
        await limited.push(name, "pushed");
        const next = randomUUID();
        await stage(name, "second", next, limited);
        await discard(name, next, limited);
        expect(await limited.getPrevious(name)).toEqual({ versionId: rid, value: "first", rotationId: rid });
        expect(await limited.exists(name)).toBe(true);
        await limited.delete(name);
        expect(await metadata(name))?.toBeUndefined();
      } finally {
        await limited.close();
      }
    });
  });

  it("checks the mount once, before its first write", async () => {
    const fresh = await createVaultStore(config(), { token: vault.token });
    const name = key();
    expect(await countRequests(() => fresh.getCurrent(name))).toEqual([`GET ${MOUNT}/data/${name}`]);
    expect(await countRequests(() => fresh.push(name, "v"))).toEqual([
      `GET ${MOUNT}/metadata/${name}`,
      `GET sys/internal/ui/mounts/${MOUNT}`,
      `POST ${MOUNT}/metadata/${name}`,
      `POST ${MOUNT}/data/${name}`,
    ]);
    expect(await countRequests(() => fresh.push(name, "w"))).toEqual([
      `GET ${MOUNT}/metadata/${name}`,
      `GET ${MOUNT}/data/${name}`,
      `POST ${MOUNT}/data/${name}`,
    ]);
    await fresh.close();
  });

  it("makes few requests per operation (reading what it fences on, without values, before each write)", async () => {
    const name = key();
    const rid = randomUUID();
    const m = `${MOUNT}/metadata/${name}`;
    const d = `${MOUNT}/data/${name}`;
    const counts: Record<string, string[]> = {};
    const count = async (label: string, body: () => Promise<unknown>) => {
      counts[label] = await countRequests(body);
    };
    await count("observe", () => store.observe(name));
    await count("pushNew", () => store.push(name, "one"));
    await count("pushSame", () => store.push(name, "one"));
    await count("pushChanged", () => store.push(name, "two"));
    let seen = await store.observe(name);
    await count("stage", () => store.stage(name, "three", rid, seen));
    seen = await store.observe(name);
    await count("stageAgain", () => store.stage(name, "three", rid, seen));
    await count("getPending", () => store.getPending(name));
    seen = await store.observe(name);
    await count("promote", () => store.promote(name, rid, seen));
    await count("getCurrent", () => store.getCurrent(name));
    await count("getPrevious", () => store.getPrevious(name));
    await count("exists", () => store.exists(name));
    await count("delete", () => store.delete(name));
    expect(counts).toEqual({
      observe: [`GET ${m}`, `GET ${m}-pending`],
      pushNew: [`GET ${m}`, `POST ${m}`, `POST ${d}`],
      pushSame: [`GET ${m}`, `GET ${d}`],
      pushChanged: [`GET ${m}`, `GET ${d}`, `POST ${d}`],
      stage: [`GET ${m}`, `GET ${m}-pending`, `POST ${m}-pending`, `POST ${d}-pending`],
      stageAgain: [`GET ${m}`, `GET ${m}-pending`, `GET ${d}-pending`],
      getPending: [`GET ${m}-pending`, `GET ${d}-pending`],
      // The current version was pushed, not recorded: its value is read, in case a promote wrote it and stopped.
      promote: [`GET ${m}`, `GET ${m}-pending`, `GET ${d}-pending`, `GET ${d}`, `POST ${d}`, `POST ${m}`, `DELETE ${m}-pending`],
      getCurrent: [`GET ${d}`],
      getPrevious: [`GET ${d}`, `GET ${d}`],
      exists: [`GET ${m}`],
      delete: [`GET ${m}`, `GET ${m}-pending`, `DELETE ${m}`],
    });
  });

  describe("configuration", () => {
    it("refuses KV v1 and a missing token", async () => {
      await expect(createVaultStore(config({ version: "v1" }), { token: "t" })).rejects.toThrow(
        /spec\.provider\.vault\.version: expected "v2"/,
      );
      await expect(createVaultStore(config(), {})).rejects.toThrow(
        new InputError("vault store needs auth.tokenSecretRef's token"),
      );
    });

    it("uses ESO's default mount `secret` when path is absent (the dev server mounts KV v2 there)", async () => {
      const { path: _, ...withoutPath } = config();
      const byDefault = await createVaultStore(withoutPath, { token: vault.token });
      expect(byDefault.description).toBe(`vault ${vault.address} kv-v2 mount secret`);
      const name = key();
      await byDefault.push(name, "v");
      expect(await fields(name, undefined, "secret")).toEqual({ value: "v" });
      await byDefault.close();
    });

    it("sends the token and namespace as headers, and never shows the token", async () => {
      const token = vault.token;
      const namespaced = await createVaultStore(config({ namespace: "team-a" }), { token });
      expect(namespaced.description).toBe(`vault ${vault.address} kv-v2 mount ${MOUNT} namespace team-a`);
      expect(namespaced.description).not.toContain(token);
      const headers: { token: unknown; namespace: unknown }[] = [];
      const listener = (message: unknown) => {
        const request = (message as { request: { getHeader(n: string): unknown } }).request;
        headers.push({ token: request.getHeader("x-vault-token"), namespace: request.getHeader("x-vault-namespace") });
      };
      dc.subscribe("http.client.request.start", listener);
      await namespaced.exists(key()).finally(() => dc.unsubscribe("http.client.request.start", listener)); // OSS Vault ignores the namespace header.
      expect(headers[0]?.token).toBe(token);
      expect(headers[0]?.namespace).toBe("team-a");
    });

    it("checks before its first write that the mount is KV v2, so a KV v1 mount gets no stray secrets", async () => {
      await ok("POST", "sys/mounts/kv-one", { type: "kv", options: { version: "1" } });
      const v1 = await createVaultStore(config({ path: "kv-one" }), { token: vault.token });
      await expect(v1.push("app", "v")).rejects.toThrow(/expected a KV v2 engine mounted at "kv-one".*found a "kv" engine version 1/);
      await expect(stage("app", "v", randomUUID(), v1)).rejects.toThrow(/KV v2/);
      expect((await api("LIST", "kv-one")).status).toBe(404); // Nothing written there.

      const inside = await createVaultStore(config({ path: `${MOUNT}/team-a` }), { token: vault.token });
      await expect(inside.push("app", "v")).rejects.toThrow(/must name the KV v2 mount itself.*"secrets\/"/);
      expect(await metadata("team-a/metadata/app")).toBeUndefined();

      const missing = await createVaultStore(config({ path: "no-such-mount" }), { token: vault.token });
      await expect(missing.push("app", "v")).rejects.toThrow(/found no engine there/);
      await expect(missing.getCurrent("app")).rejects.toThrow(/found no engine there/);
      for (const s of [v1, inside, missing]) await s.close();
    });

    it("refuses keys that would leave the mount", async () => {
      for (const bad of ["", "a//b", "../sys/policies", "a/./b", "/lead"]) {
        await expect(store.push(bad, "v")).rejects.toBeInstanceOf(InputError);
      }
    });

    it("reports an unreachable server as a StoreError naming the path, without token or value", async () => {
      const broken = await createVaultStore(config({ server: "http://127.0.0.1:9" }), { token: "hvs.secret-token" });
      const error: Error = await broken.push("some/name", "secret-value").catch((e) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).toContain(`${MOUNT}/metadata/some/name`);
      expect(error.message).not.toContain("hvs.secret-token");
      expect(error.message).not.toContain("secret-value");
    });

    it("refuses a token Vault does not know, saying so", async () => {
      const bad = await createVaultStore(config(), { token: "hvs.not-a-token" });
      const error: Error = await bad.getCurrent(key()).catch((e) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).toMatch(/permission denied.*invalid token/);
      expect(error.message).not.toContain("hvs.not-a-token");
    });
  });
});

// Vault's own TLS dev mode: it makes a CA and a certificate for 127.0.0.1, so the caBundle path is
// tested against the real server. Started here, not in servers.ts, as only this test needs it.
describe("vault store over https", () => {
  let child: ChildProcess | undefined;
  let dir: string;
  let address: string;
  let caPem: string;

  beforeAll(async () => {
    const bin = join(cacheDir(), "bin", "vault");
    if (!existsSync(bin)) throw new Error(`expected the vault binary at ${bin} (test/infra/emulators/build.sh vault)`);
    dir = await mkdtemp(join(tmpdir(), "cnpg-rotator-vault-tls-"));
    const port = await freePort();
    address = `https://127.0.0.1:${port}`;
    child = spawn(
      bin,
      [
        "server",
        "-dev",
        "-dev-tls",
        `-dev-tls-cert-dir=${dir}`,
        `-dev-root-token-id=${vault.token}`,
        `-dev-listen-address=127.0.0.1:${port}`,
        "-dev-no-store-token",
      ],
      { cwd: dir, stdio: "ignore", env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } },
    );
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (existsSync(join(dir, "vault-ca.pem"))) {
        caPem = await readFile(join(dir, "vault-ca.pem"), "utf8");
        const store = await createVaultStore(config({ server: address, path: "secret", caBundle: b64(caPem) }), {
          token: vault.token,
        });
        const up = await store.exists("probe").then(
          () => true,
          () => false,
        );
        await store.close();
        if (up) break;
      }
      if (child.exitCode !== null || Date.now() > deadline) throw new Error("vault -dev-tls did not come up");
      await new Promise((r) => setTimeout(r, 200));
    }
  });
  afterAll(async () => {
    child?.kill("SIGTERM");
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const b64 = (s: string) => Buffer.from(s).toString("base64");

  it("trusts the caBundle (base64 PEM, as in ESO's SecretStore)", async () => {
    const store = await createVaultStore(config({ server: address, path: "secret", caBundle: b64(caPem) }), {
      token: vault.token,
    });
    try {
      const name = `tls/${randomUUID()}`;
      const rid = randomUUID();
      await store.stage(name, "over tls", rid, await store.observe(name));
      await store.promote(name, rid, await store.observe(name));
      expect(await store.getCurrent(name)).toEqual({ versionId: rid, value: "over tls", rotationId: rid });
    } finally {
      await store.close();
    }
  });

  it("verifies the certificate: without the CA, or with another, it refuses to talk", async () => {
    const without = await createVaultStore(config({ server: address, path: "secret" }), { token: vault.token });
    await expect(without.exists("x")).rejects.toBeInstanceOf(StoreError);
    // Some other CA: a root made by the plain dev server's PKI engine, which the TLS server's chain does not lead to.
    await ok("POST", "sys/mounts/pki-other", { type: "pki" });
    const other = await ok<{ data: { certificate: string } }>("POST", "pki-other/root/generate/internal", {
      common_name: "other-ca",
      ttl: "1h",
    });
    const otherCa = b64(other.data.certificate);
    const wrong = await createVaultStore(config({ server: address, path: "secret", caBundle: otherCa }), {
      token: vault.token,
    });
    const error: Error = await wrong.exists("x").catch((e) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(error.message).toMatch(/certificate/i);
    await wrong.close();
  });

  it("refuses a caBundle without a certificate", async () => {
    await expect(
      createVaultStore(config({ server: address, caBundle: b64("not a pem") }), { token: vault.token }),
    ).rejects.toBeInstanceOf(InputError);
  });

  it("refuses a caBundle whose certificate does not parse, naming the field, before any request", async () => {
    const garbled = b64("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n");
    const error: Error = await createVaultStore(config({ server: address, caBundle: garbled }), { token: vault.token }).catch((e) => e);
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toMatch(/^spec\.provider\.vault\.caBundle: the CA certificate does not parse/);
  });
});
