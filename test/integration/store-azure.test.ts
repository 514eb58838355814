// The azurekv store against lowkey-vault: the conformance suite in a purgeable vault (Azure's
// default: soft delete on, purge protection off) and in a purge-protected one, then the Azure
// specifics (what a consumer reading the latest version sees, the pending sibling, versions,
// tags, soft delete, limits, API calls).
//
// Test-only wiring, none of it in the store: a stub credential (lowkey-vault takes any bearer
// token), the emulator's self-signed certificate as trusted CA (verification stays on), and
// disableChallengeResourceVerification (its challenge names https://localhost:PORT, not a
// *.vault.azure.net resource). lowkey-vault's vaults are told apart by host: localhost is its
// default vault (recovery level "Recoverable", i.e. purge-protected); 127.0.0.1 is made
// "Recoverable+Purgeable" through its management API.
import { randomUUID } from "node:crypto";
import { request } from "node:https";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import type { TokenCredential } from "@azure/identity";
import { isRestError, type KeyVaultSecret, SecretClient, type SecretClientOptions } from "@azure/keyvault-secrets";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, OwnershipError, StoreError } from "../../lib/errors.ts";
import type { AzureProvider } from "../../lib/manifests/schema.ts";
import {
  type AzureStoreTestSeam,
  azurePrimitives,
  MAX_VALUE_BYTES,
  PREVIOUS_VERSION_TAG,
} from "../../lib/stores/azure.ts";
import { createClient } from "../../lib/protocol/index.ts";
import { PENDING_SUFFIX, ROTATION_ID as ROTATION_ID_TAG, TIMEOUT_ENV } from "../../lib/stores/primitives.ts";
import type { RemoteState, SecretStoreClient, StoreDeps } from "../../lib/stores/types.ts";
import { type LowkeyVault, startLowkeyVault } from "../infra/emulators/servers.ts";
import { describeStoreConformance } from "./stores.conformance.ts";
import { describePrimitives } from "./stores.primitives.ts";

/** The engine's client over the Azure store's primitives, as the registry builds it. */
const createAzureStore = async (config: AzureProvider, deps: StoreDeps = {}, seam: AzureStoreTestSeam = {}) => createClient(azurePrimitives(config, deps, seam));

const STUB_TOKEN = `lowkey-stub-token-${randomUUID()}`;
const credential: TokenCredential = {
  getToken: async () => ({ token: STUB_TOKEN, expiresOnTimestamp: Date.now() + 3_600_000 }),
};

// Never a skip: a missing emulator fails the file.
let lowkey: LowkeyVault;
/** Recovery level "Recoverable+Purgeable": deleted secrets can be purged at once. */
let purgeableUrl: string;
/** lowkey-vault's default vault, "Recoverable": purge protection on. */
let protectedUrl: string;
beforeAll(async () => {
  lowkey = await startLowkeyVault();
  protectedUrl = lowkey.vaultUrl;
  purgeableUrl = `https://127.0.0.1:${lowkey.port}`;
  await management("DELETE", `?baseUri=${encodeURIComponent(purgeableUrl)}`);
  await management("DELETE", `/purge?baseUri=${encodeURIComponent(purgeableUrl)}`);
  await management(
    "POST",
    "",
    JSON.stringify({ baseUri: purgeableUrl, recoveryLevel: "Recoverable+Purgeable", recoverableDays: 90 }),
  );
});
afterAll(async () => {
  await lowkey?.stop();
});

/** lowkey-vault's own management API (not Key Vault's), for setting up the purgeable vault. */
function management(method: string, pathAndQuery: string, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${lowkey.vaultUrl}/management/vault${pathAndQuery}`,
      { method, ca: lowkey.caPem, headers: body ? { "Content-Type": "application/json" } : {} },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (text += chunk));
        res.on("end", () =>
          (res.statusCode ?? 0) < 300
            ? resolve(text)
            : reject(new Error(`lowkey-vault ${method} management/vault${pathAndQuery}: ${res.statusCode} ${text}`)),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Every HTTP request a client sends (after the one-off authentication challenge), as "METHOD /path". */
type CallLog = string[];

function clientOptions(calls?: CallLog, extra: SecretClientOptions = {}): SecretClientOptions {
  return {
    tlsOptions: { ca: lowkey.caPem },
    disableChallengeResourceVerification: true,
    additionalPolicies: calls
      ? [
          {
            position: "perRetry",
            policy: {
              name: "count-calls",
              sendRequest(req, next) {
                calls.push(`${req.method} ${new URL(req.url).pathname.replace(/\/$/, "")}`);
                return next(req);
              },
            },
          },
        ]
      : [],
    ...extra,
  };
}

function seam(calls?: CallLog, extra?: SecretClientOptions): AzureStoreTestSeam {
  return { credential, clientOptions: clientOptions(calls, extra) };
}

/** The provider's own API, for checks that must not go through the store. */
const sdk = (vaultUrl: string) => new SecretClient(vaultUrl, credential, clientOptions());

async function get(client: SecretClient, name: string, version?: string): Promise<KeyVaultSecret | undefined> {
  try {
    return await client.getSecret(name, version ? { version } : {});
  } catch (e) {
    if (isRestError(e) && e.statusCode === 404) return undefined;
    throw e;
  }
}

async function getDeleted(client: SecretClient, name: string): Promise<KeyVaultSecret | undefined> {
  try {
    return await client.getDeletedSecret(name);
  } catch (e) {
    if (isRestError(e) && e.statusCode === 404) return undefined;
    throw e;
  }
}

async function versionCount(client: SecretClient, name: string): Promise<number> {
  let n = 0;
  for await (const _ of client.listPropertiesOfSecretVersions(name)) n++;
  return n;
}

function conformance(label: string, vaultUrl: () => string): void {
  describeStoreConformance(`azurekv (${label})`, async () => {
    const client = sdk(vaultUrl());
    return {
      store: await createAzureStore({ vaultUrl: vaultUrl() }, {}, seam()),
      emulatorGaps: { blankValuesRefused: true },
      key: () => `conformance-${randomUUID()}`,
      async foreign(key, value) {
        // Marked as someone else's: a managed-by tag with another value must not pass for ours.
        await client.setSecret(key, value, { tags: { "managed-by": "external-secrets" } });
      },
      async inspect(key) {
        // What a consumer reads is the latest version of <key>; a secret whose first rotation is
        // still in flight exists only as its sibling, with no value for consumers yet.
        const secret = (await get(client, key)) ?? (await get(client, `${key}${PENDING_SUFFIX}`));
        if (!secret) return undefined;
        return {
          current: secret.name === key ? secret.value : undefined,
          owned: secret.properties.tags?.["managed-by"] === "cnpg-rotator",
        };
      },
    };
  });
}

describePrimitives("azurekv", async () => ({
  primitives: azurePrimitives({ vaultUrl: purgeableUrl }, {}, seam()),
  key: () => `primitives-${randomUUID()}`,
}));

conformance("purgeable vault", () => purgeableUrl);
conformance("purge-protected vault", () => protectedUrl);

describe("azurekv store", () => {
  let store: SecretStoreClient;
  let protectedStore: SecretStoreClient;
  let kv: SecretClient;
  let protectedKv: SecretClient;
  beforeAll(async () => {
    store = await createAzureStore({ vaultUrl: purgeableUrl }, {}, seam());
    protectedStore = await createAzureStore({ vaultUrl: protectedUrl }, {}, seam());
    kv = sdk(purgeableUrl);
    protectedKv = sdk(protectedUrl);
  });
  const key = () => `azure-${randomUUID()}`;
  const stage = async (name: string, value: string, rid: string, on = store) => on.stage(name, value, rid, await on.observe(name));
  const promote = async (name: string, rid: string, on = store) => on.promote(name, rid, await on.observe(name));
  const discard = async (name: string, rid: string, on = store) => on.discard(name, rid, await on.observe(name));

  it("keeps the old value as the latest version until promote, then the new one, the old one kept as a version", async () => {
    const name = key();
    await store.push(name, "old");
    const old = (await get(kv, name))!;
    const rid = randomUUID();
    await stage(name, "new", rid);

    // A consumer reading the latest version during the rotation still gets the old value.
    expect((await get(kv, name))?.value).toBe("old");
    expect((await get(kv, name))?.properties.version).toBe(old.properties.version);
    expect((await get(kv, `${name}${PENDING_SUFFIX}`))?.value).toBe("new");

    // A rotation's version is known by its rotation id, staged and promoted alike; Key Vault's own
    // version id of the promoted copy is a new one.
    expect(await promote(name, rid)).toEqual({ versionId: rid, value: "new", rotationId: rid });
    const latest = (await get(kv, name))!;
    expect(latest.value).toBe("new");
    expect(latest.properties.tags?.[ROTATION_ID_TAG]).toBe(rid);
    expect(latest.properties.version).not.toBe(old.properties.version);
    expect((await get(kv, name, old.properties.version))?.value).toBe("old");
    expect((await store.getPrevious(name))?.versionId).toBe(old.properties.version);
  });

  it("tags every version as ours, rotations with their id and <key> versions with the version they replaced", async () => {
    const name = key();
    const first = await store.push(name, "plain text");
    const pushed = (await get(kv, name))!;
    expect(pushed.properties.tags).toEqual({ "managed-by": "cnpg-rotator" });
    expect(pushed.properties.contentType).toBe("text/plain");

    const rid = randomUUID();
    const json = JSON.stringify({ username: "app", password: "p" });
    await stage(name, json, rid);
    const sibling = (await get(kv, `${name}${PENDING_SUFFIX}`))!;
    expect(sibling.properties.tags).toEqual({ "managed-by": "cnpg-rotator", [ROTATION_ID_TAG]: rid });
    expect(sibling.properties.contentType).toBe("application/json");

    await promote(name, rid);
    const promoted = (await get(kv, name))!;
    expect(promoted.properties.tags).toEqual({
      "managed-by": "cnpg-rotator",
      [ROTATION_ID_TAG]: rid,
      [PREVIOUS_VERSION_TAG]: first.versionId,
    });
    expect(promoted.properties.contentType).toBe("application/json");
  });

  it("purges the sibling after promote and after discard in a purgeable vault", async () => {
    const name = key();
    const sibling = `${name}${PENDING_SUFFIX}`;
    const rid = randomUUID();
    await stage(name, "v1", rid);
    await promote(name, rid);
    expect(await get(kv, sibling)).toBeUndefined();
    expect(await getDeleted(kv, sibling)).toBeUndefined();

    const discarded = randomUUID();
    await stage(name, "v2", discarded);
    await discard(name, discarded);
    expect(await get(kv, sibling)).toBeUndefined();
    expect(await getDeleted(kv, sibling)).toBeUndefined();
  });

  it("in a purge-protected vault leaves the sibling soft-deleted, and the next rotation recovers it and writes over it", async () => {
    const name = key();
    const sibling = `${name}${PENDING_SUFFIX}`;
    await protectedStore.push(name, "v0");
    const one = randomUUID();
    await stage(name, "v1", one, protectedStore);
    await promote(name, one, protectedStore);
    expect(await get(protectedKv, sibling)).toBeUndefined();
    expect((await getDeleted(protectedKv, sibling))?.properties.tags?.[ROTATION_ID_TAG]).toBe(one);

    const two = randomUUID();
    const staged = await stage(name, "v2", two, protectedStore);
    expect(staged).toEqual({ versionId: expect.any(String), value: "v2", rotationId: two });
    expect(await protectedStore.getPending(name)).toEqual(staged);
    expect((await get(protectedKv, name))?.value).toBe("v1");
    await promote(name, two, protectedStore);
    expect((await protectedStore.getCurrent(name))?.value).toBe("v2");
    expect((await protectedStore.getPrevious(name))?.value).toBe("v1");
    expect(await protectedStore.getPending(name)).toBeUndefined();
  });

  it("makes a version for every write, and none for a push of an unchanged value", async () => {
    const name = key();
    await store.push(name, "a");
    expect(await versionCount(kv, name)).toBe(1);
    await store.push(name, "a");
    expect(await versionCount(kv, name)).toBe(1);
    await store.push(name, "b");
    expect(await versionCount(kv, name)).toBe(2);
    const rid = randomUUID();
    await stage(name, "c", rid);
    expect(await versionCount(kv, name)).toBe(2); // Staging writes only the sibling.
    await promote(name, rid);
    await promote(name, rid);
    expect(await versionCount(kv, name)).toBe(3);
    await store.push(name, "c");
    expect(await versionCount(kv, name)).toBe(3);
  });

  it("recovers a soft-deleted secret of ours on the next write, so its history carries on", async () => {
    const name = key();
    const first = await store.push(name, "v1");
    await store.delete(name);
    expect(await get(kv, name)).toBeUndefined();
    expect(await getDeleted(kv, name)).toBeDefined(); // Soft-deleted, not purged.
    expect(await store.exists(name)).toBe(false);

    expect((await store.push(name, "v2")).changed).toBe(true);
    expect((await store.getCurrent(name))?.value).toBe("v2");
    expect(await store.getPrevious(name)).toEqual({ versionId: first.versionId, value: "v1" });

    // A rotation of a deleted secret recovers it at promote.
    await store.delete(name);
    const rid = randomUUID();
    await stage(name, "v3", rid);
    expect(await get(kv, name)).toBeUndefined();
    await promote(name, rid);
    expect(await store.getCurrent(name)).toEqual({ versionId: rid, value: "v3", rotationId: rid });
    expect((await store.getPrevious(name))?.value).toBe("v2");
  });

  it("never recovers a soft-deleted secret that is not ours", async () => {
    const name = key();
    await kv.setSecret(name, "theirs");
    await (await kv.beginDeleteSecret(name)).pollUntilDone();
    for (const attempt of [() => store.push(name, "ours"), () => store.push(name, "ours", { ifNotExists: true })]) {
      const error: Error = await attempt().catch((e) => e);
      expect(error).toBeInstanceOf(OwnershipError);
      expect(error.message).toContain(name);
      expect(error.message).not.toContain("theirs");
    }
    // Nor stages a rotation whose promote would have to.
    await expect(stage(name, "ours", randomUUID())).rejects.toBeInstanceOf(OwnershipError);
    expect(await store.getPending(name)).toBeUndefined();
    expect(await get(kv, name)).toBeUndefined();
    expect((await getDeleted(kv, name))?.value).toBe("theirs");
  });

  it("refuses a sibling name held by a secret that is not ours", async () => {
    const name = key();
    await kv.setSecret(`${name}${PENDING_SUFFIX}`, "theirs");
    await expect(stage(name, "v", randomUUID())).rejects.toBeInstanceOf(OwnershipError);
    expect(await store.getPending(name)).toBeUndefined();
    expect(await store.exists(name)).toBe(false);
    expect((await get(kv, `${name}${PENDING_SUFFIX}`))?.value).toBe("theirs");
  });

  it("delete takes a rotation in flight with the secret", async () => {
    const name = key();
    await store.push(name, "old");
    await stage(name, "new", randomUUID());
    await store.delete(name);
    expect(await store.exists(name)).toBe(false);
    expect(await store.getPending(name)).toBeUndefined();
    expect(await getDeleted(kv, `${name}${PENDING_SUFFIX}`)).toBeUndefined();
  });

  it("refuses names Key Vault cannot take, and values over 25 KB, before writing", async () => {
    for (const bad of ["", "a_b", "a/b", "ä", "x".repeat(128), `db${PENDING_SUFFIX}`]) {
      const error: Error = await store.push(bad, "v").catch((e) => e);
      expect(error).toBeInstanceOf(InputError);
      expect(error.message).toContain(JSON.stringify(bad).slice(1, -1));
    }
    // A key that can be pushed but whose sibling name would be too long cannot be rotated.
    const long = `long-${"x".repeat(115)}`;
    expect(long.length + PENDING_SUFFIX.length).toBe(128);
    await expect(stage(long, "v", randomUUID())).rejects.toThrow(InputError);
    expect((await store.push(long, "v")).changed).toBe(true);
    expect(await store.getPending(long)).toBeUndefined();

    const name = key();
    expect((await store.push(name, "x".repeat(MAX_VALUE_BYTES))).changed).toBe(true);
    const tooBig = "é".repeat(MAX_VALUE_BYTES / 2 + 1); // Counted in UTF-8 bytes, not characters.
    for (const attempt of [() => store.push(name, tooBig), () => stage(name, tooBig, randomUUID())]) {
      const error: Error = await attempt().catch((e) => e);
      expect(error).toBeInstanceOf(InputError);
      expect(error.message).toContain(`${MAX_VALUE_BYTES + 2} bytes`);
      expect(error.message).not.toContain("éé");
    }
    expect(await versionCount(kv, name)).toBe(1);
    expect(await store.getPending(name)).toBeUndefined();
  });

  it("keeps API calls few (reading what it fences on just before each write)", async () => {
    const calls: CallLog = [];
    const counted = await createAzureStore({ vaultUrl: purgeableUrl }, {}, seam(calls));
    const count = async (op: (seen: RemoteState) => Promise<unknown>, key = name): Promise<string[]> => {
      const seen = await counted.observe(key);
      calls.length = 0;
      await op(seen);
      return [...calls].sort();
    };
    const name = key();
    const s = `/secrets/${name}`;
    const ds = `/deletedsecrets/${name}`;
    const p = `/secrets/${name}${PENDING_SUFFIX}`;
    const dp = `/deletedsecrets/${name}${PENDING_SUFFIX}`;
    await counted.getCurrent(name); // The first call of a client also answers the authentication challenge.

    // A missing secret's head also asks whether a soft-deleted one holds the name (and whose it is).
    expect(await count(() => counted.observe(name))).toEqual([`GET ${s}`, `GET ${ds}`, `GET ${p}`, `GET ${dp}`].sort());
    expect(await count(() => counted.push(name, "v1"))).toEqual([`GET ${s}`, `GET ${ds}`, `GET ${s}`, `PUT ${s}`].sort());
    expect(await count(() => counted.push(name, "v1"))).toEqual([`GET ${s}`, `GET ${s}`]);
    expect(await count(() => counted.getCurrent(name))).toEqual([`GET ${s}`]);
    const rid = randomUUID();
    expect(await count((seen) => counted.stage(name, "v2", rid, seen))).toEqual(
      [`GET ${s}`, `GET ${p}`, `GET ${dp}`, `GET ${p}`, `PUT ${p}`].sort(),
    );
    expect(await count((seen) => counted.stage(name, "v2", rid, seen))).toEqual([`GET ${s}`, `GET ${p}`, `GET ${p}`].sort());
    expect(await count(() => counted.getPending(name))).toEqual([`GET ${p}`, `GET ${p}`]);
    // The current version was pushed, not recorded: its value is read, in case a promote wrote it and stopped.
    expect(await count((seen) => counted.promote(name, rid, seen))).toEqual(
      [`GET ${s}`, `GET ${p}`, `GET ${p}`, `GET ${s}`, `PUT ${s}`, `DELETE ${p}`, `GET ${dp}`, `DELETE ${dp}`].sort(),
    );
    expect(await count((seen) => counted.promote(name, rid, seen))).toEqual([`GET ${s}`, `GET ${p}`, `GET ${dp}`, `GET ${s}`].sort());
    expect((await count(() => counted.getPrevious(name))).length).toBe(2);
    expect(await count(() => counted.exists(name))).toEqual([`GET ${s}`]);
    const discarded = randomUUID();
    await stage(name, "v3", discarded, counted);
    expect(await count((seen) => counted.discard(name, discarded, seen))).toEqual(
      [`GET ${s}`, `GET ${p}`, `DELETE ${p}`, `GET ${dp}`, `DELETE ${dp}`].sort(),
    );
    expect(await count(() => counted.delete(name))).toEqual([`GET ${s}`, `GET ${p}`, `GET ${dp}`, `DELETE ${s}`, `GET ${ds}`].sort());
  });

  it("retries a request past CNPG_ROTATOR_STORE_TIMEOUT, as a transient failure (the HTTP client ends it as an abort)", async () => {
    // A TCP relay to lowkey-vault that swallows its first connection (accepted, nothing
    // forwarded, never answered: a blackhole) and relays every later one.
    const held = new Set<Socket>();
    let connections = 0;
    const relay = createServer((socket) => {
      socket.on("error", () => {});
      if (++connections === 1) return void held.add(socket);
      const upstream = connect(lowkey.port, "127.0.0.1");
      upstream.on("error", () => socket.destroy());
      socket.pipe(upstream).pipe(socket);
    });
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
    const saved = process.env[TIMEOUT_ENV];
    process.env[TIMEOUT_ENV] = "1s";
    try {
      const viaRelay = await createAzureStore({ vaultUrl: `https://127.0.0.1:${(relay.address() as AddressInfo).port}` }, {}, seam());
      const started = Date.now();
      await viaRelay.push(key(), "after-a-timeout");
      expect(connections).toBeGreaterThanOrEqual(2);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    } finally {
      if (saved === undefined) delete process.env[TIMEOUT_ENV];
      else process.env[TIMEOUT_ENV] = saved;
      for (const s of held) s.destroy();
      relay.close();
    }
  });

  it("wraps SDK failures in a StoreError naming the call and the secret, never a value or the token", async () => {
    // Nothing listens on the discard port; no retries, so the failure comes at once.
    const broken = await createAzureStore(
      { vaultUrl: "https://127.0.0.1:9" },
      {},
      seam(undefined, { retryOptions: { maxRetries: 0 } }),
    );
    const error: Error = await broken.push("some-name", "secret-value").catch((e) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(error.message).toContain("GetSecret");
    expect(error.message).toContain("some-name");
    expect(error.message).not.toContain("secret-value");
    expect(error.message).not.toContain(STUB_TOKEN);
    expect(broken.description).toBe("azure keyvault https://127.0.0.1:9");
  });

  it("authenticates with DefaultAzureCredential unless a test injects a credential, and refuses configuration it cannot honour", async () => {
    const production = await createAzureStore({
      vaultUrl: "https://example.vault.azure.net/",
      tenantId: "00000000-0000-0000-0000-000000000000",
      authType: "WorkloadIdentity",
      identityId: "11111111-1111-1111-1111-111111111111",
      environmentType: "PublicCloud",
    });
    expect(production.provider).toBe("azurekv");
    expect(production.description).toBe("azure keyvault https://example.vault.azure.net");
    await expect(createAzureStore({ vaultUrl: "http://example.vault.azure.net" })).rejects.toThrow(
      /spec\.provider\.azurekv\.vaultUrl: expected an https URL/,
    );
    await expect(createAzureStore({ vaultUrl: "https://x.vault.azure.net", authType: "Token" })).rejects.toThrow(
      /spec\.provider\.azurekv\.authType/,
    );
    await expect(
      createAzureStore({ vaultUrl: "https://x.vault.azure.net", environmentType: "GermanCloud" }),
    ).rejects.toBeInstanceOf(InputError);
  });
});
