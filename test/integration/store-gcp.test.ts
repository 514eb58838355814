// The gcpsm store against blackwell-systems/gcp-secret-manager-emulator (gRPC): the
// conformance suite, then the GCP specifics (the `<key>-pending` sibling, what `latest`
// gives consumers during a rotation, annotations, regional names, key validation).
// The store reaches the emulator only through GOOGLE_SECRET_MANAGER_ENDPOINT, as a local
// run would; the checks below read through the SDK directly, bypassing the store.
import { randomUUID } from "node:crypto";
import { SecretManagerServiceClient } from "@google-cloud/secret-manager";
import { grpc } from "google-gax";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startFaultProxy } from "../faults/fault-proxy.ts";
import { InputError, OwnershipError, StoreError } from "../../lib/errors.ts";
import type { GcpProvider } from "../../lib/manifests/schema.ts";
import {
  ENDPOINT_ENV,
  gcpPrimitives,
  ROLE_LABEL,
} from "../../lib/stores/gcp.ts";
import { CURRENT_ROTATION, PREVIOUS_ROTATION, ROTATION_ID } from "../../lib/stores/primitives.ts";
import { createClient } from "../../lib/protocol/index.ts";
import type { SecretStoreClient, StoreDeps } from "../../lib/stores/types.ts";
import { type GcpSecretManagerEmulator, GOOGLE_CLIENT_ENV, startGcpSecretManager } from "../infra/emulators/servers.ts";
import { describeStoreConformance } from "./stores.conformance.ts";
import { describePrimitives } from "./stores.primitives.ts";

/** The engine's client over the GCP store's primitives, as the registry builds it. */
const createGcpStore = async (config: GcpProvider, deps: StoreDeps = {}) => createClient(gcpPrimitives(config, deps));

const PROJECT = "cnpg-rotator-test";
const PARENT = `projects/${PROJECT}`;
const config = (extra: Partial<GcpProvider> = {}): GcpProvider => ({ projectID: PROJECT, ...extra });

let emulator: GcpSecretManagerEmulator;
/** The provider's own API, for checks that must not go through the store. */
let gcp: SecretManagerServiceClient;

beforeAll(async () => {
  Object.assign(process.env, GOOGLE_CLIENT_ENV);
  emulator = await startGcpSecretManager();
  process.env[ENDPOINT_ENV] = `127.0.0.1:${emulator.grpcPort}`;
  gcp = new SecretManagerServiceClient({ ...emulator.clientOptions, sslCreds: grpc.credentials.createInsecure() });
});
afterAll(async () => {
  await gcp?.close();
  await emulator?.stop();
  delete process.env[ENDPOINT_ENV];
});

const code = (e: unknown) => (e as { code?: number }).code;
const NOT_FOUND = 5;

async function getSecret(name: string) {
  try {
    return (await gcp.getSecret({ name }))[0];
  } catch (e) {
    if (code(e) === NOT_FOUND) return undefined;
    throw e;
  }
}

/** The value of a version, or the gRPC status code refusing it. */
async function access(name: string, version: string | number = "latest"): Promise<string | number> {
  try {
    const [out] = await gcp.accessSecretVersion({ name: `${name}/versions/${version}` });
    return Buffer.from(out.payload!.data as Uint8Array).toString("utf8");
  } catch (e) {
    const c = code(e);
    if (typeof c === "number") return c;
    throw e;
  }
}

/** Version numbers and states, newest first. */
async function versions(name: string): Promise<string[]> {
  const [list] = await gcp.listSecretVersions({ parent: name }, { autoPaginate: false });
  return list.map((v) => `${v.name!.split("/").pop()}:${v.state}`);
}

describePrimitives("gcpsm", async () => ({ primitives: gcpPrimitives(config()), key: () => `primitives-${randomUUID()}` }));

describeStoreConformance("gcpsm", async () => ({
  store: await createGcpStore(config()),
  key: () => `conformance-${randomUUID()}`,
  async foreign(key, value) {
    // Marked as someone else's: a managed-by label with another value must not pass for ours.
    const [secret] = await gcp.createSecret({
      parent: PARENT,
      secretId: key,
      secret: { replication: { automatic: {} }, labels: { "managed-by": "external-secrets" } },
    });
    await gcp.addSecretVersion({ parent: secret.name!, payload: { data: Buffer.from(value, "utf8") } });
  },
  async inspect(key) {
    const name = `${PARENT}/secrets/${key}`;
    const secret = await getSecret(name);
    if (!secret) return undefined;
    const owned = secret.labels?.["managed-by"] === "cnpg-rotator";
    const current = await access(name);
    return { current: typeof current === "string" ? current : undefined, owned };
  },
}));

describe("gcpsm store", () => {
  let store: SecretStoreClient;
  beforeAll(async () => {
    store = await createGcpStore(config());
  });
  afterAll(() => store?.close());
  const key = () => `gcp-${randomUUID()}`;
  const stage = async (k: string, value: string, rid: string, on = store) => on.stage(k, value, rid, await on.observe(k));
  const promote = async (k: string, rid: string, on = store) => on.promote(k, rid, await on.observe(k));
  const discard = async (k: string, rid: string) => store.discard(k, rid, await store.observe(k));
  const path = (id: string) => `${PARENT}/secrets/${id}`;

  it("promotes when the answer to its record (the annotations after the new version) is lost after it was applied", async () => {
    const k = key();
    await store.push(k, "old");
    const rid = randomUUID();
    await stage(k, "new", rid);
    const proxy = await startFaultProxy({ upstream: `http://127.0.0.1:${emulator.grpcPort}`, http2: true });
    // promote: UpdateSecret (the claim), AddSecretVersion, UpdateSecret (the record): the record's answer is cut.
    proxy.add({ match: (r) => r.path.endsWith("/UpdateSecret"), action: { drop: true }, skip: 1, times: 1 });
    const saved = process.env[ENDPOINT_ENV];
    process.env[ENDPOINT_ENV] = `127.0.0.1:${proxy.port}`;
    const faulty = await createGcpStore(config());
    process.env[ENDPOINT_ENV] = saved;
    try {
      expect(await promote(k, rid, faulty)).toEqual({ versionId: rid, value: "new", rotationId: rid });
      expect(proxy.hits).toBe(1);
    } finally {
      await faulty.close();
      await proxy.close();
    }
    // The version it wrote stays enabled and latest: consumers read the new value.
    expect(await access(path(k))).toBe("new");
    expect(await store.getCurrent(k)).toEqual({ versionId: rid, value: "new", rotationId: rid });
  });

  it("stages in <key>-pending: consumers reading latest see the old value until promote", async () => {
    const k = key();
    await store.push(k, "old");
    const rid = randomUUID();
    await stage(k, "new", rid);

    // In flight: <key> untouched, the staged value in the labelled, annotated sibling.
    expect(await access(path(k))).toBe("old");
    expect(await versions(path(k))).toEqual(["1:ENABLED"]);
    const sibling = await getSecret(path(`${k}-pending`));
    expect(sibling?.labels).toEqual({ "managed-by": "cnpg-rotator", [ROLE_LABEL]: "pending" });
    expect(sibling?.annotations).toEqual({ [ROTATION_ID]: rid });
    expect(await access(path(`${k}-pending`), 1)).toBe("new");

    await promote(k, rid);
    expect(await access(path(k))).toBe("new");
    expect(await versions(path(k))).toEqual(["2:ENABLED", "1:ENABLED"]);
    expect(await access(path(k), 1)).toBe("old");
    expect((await getSecret(path(k)))?.annotations).toEqual({ [CURRENT_ROTATION]: `${rid}@2` });
    expect(await getSecret(path(`${k}-pending`))).toBeUndefined();
  });

  it("creates <key> without versions for a first rotation: consumers find no value, never the staged one", async () => {
    const k = key();
    const rid = randomUUID();
    await stage(k, "first", rid);
    const secret = await getSecret(path(k));
    expect(secret?.labels).toEqual({ "managed-by": "cnpg-rotator" });
    expect(secret?.replication?.automatic).toBeTruthy();
    expect(await access(path(k))).toBe(NOT_FOUND);

    await promote(k, rid);
    expect(await access(path(k))).toBe("first");
    expect(await versions(path(k))).toEqual(["1:ENABLED"]);
  });

  it("maps versions back to rotations through the current/previous annotations", async () => {
    const k = key();
    const a = randomUUID();
    const b = randomUUID();
    await stage(k, "a", a);
    await promote(k, a);
    await stage(k, "b", b);
    await promote(k, b);
    expect((await getSecret(path(k)))?.annotations).toEqual({
      [CURRENT_ROTATION]: `${b}@2`,
      [PREVIOUS_ROTATION]: `${a}@1`,
    });
    expect(await store.getPrevious(k)).toEqual({ versionId: a, value: "a", rotationId: a });

    // A push on top is a plain GCP version; the rotation before it is still recognised.
    const pushed = await store.push(k, "c");
    expect(pushed).toEqual({ changed: true, versionId: "3" });
    expect(await store.getCurrent(k)).toEqual({ versionId: "3", value: "c" });
    expect(await store.getPrevious(k)).toEqual({ versionId: b, value: "b", rotationId: b });
  });

  it("keeps annotations and labels someone else put on <key> when recording a promotion", async () => {
    const k = key();
    await store.push(k, "old");
    await gcp.updateSecret({
      secret: { name: path(k), annotations: { "team.example.com_owner": "db" } },
      updateMask: { paths: ["annotations"] },
    });
    const rid = randomUUID();
    await stage(k, "new", rid);
    await promote(k, rid);
    expect((await getSecret(path(k)))?.annotations).toEqual({
      "team.example.com_owner": "db",
      [CURRENT_ROTATION]: `${rid}@2`,
    });
  });

  it("replaces the sibling of another rotation with a fresh one", async () => {
    const k = key();
    await store.push(k, "old");
    await stage(k, "one", randomUUID());
    const rid = randomUUID();
    await stage(k, "two", rid);
    expect((await getSecret(path(`${k}-pending`)))?.annotations).toEqual({ [ROTATION_ID]: rid });
    expect(await versions(path(`${k}-pending`))).toEqual(["1:ENABLED"]);
    expect(await access(path(`${k}-pending`), 1)).toBe("two");
  });

  it("finishes a promote that stopped before deleting the sibling", async () => {
    const k = key();
    await store.push(k, "old");
    const rid = randomUUID();
    await stage(k, "new", rid);
    // As if a promote had added and recorded the version, then died.
    const sibling = path(`${k}-pending`);
    const [version] = await gcp.addSecretVersion({ parent: path(k), payload: { data: Buffer.from("new") } });
    await gcp.updateSecret({
      secret: { name: path(k), annotations: { [CURRENT_ROTATION]: `${rid}@${version.name!.split("/").pop()}` } },
      updateMask: { paths: ["annotations"] },
    });
    expect(await promote(k, rid)).toEqual({ versionId: rid, value: "new", rotationId: rid });
    expect(await getSecret(sibling)).toBeUndefined();
    expect(await versions(path(k))).toEqual(["2:ENABLED", "1:ENABLED"]);
  });

  it("a promote that loses the compare-and-swap to another promote of the same rotation keeps one current copy", async () => {
    // The race is staged deterministically: the emulator checks UpdateSecret's etag and applies
    // the update under separate locks, so truly concurrent promotes can both pass its check.
    const proto = SecretManagerServiceClient.prototype;
    // The originals, typed as the one promise-returning overload this test calls.
    type Call = (this: unknown, ...args: unknown[]) => Promise<[{ name?: string | null }]>;
    const addVersion = proto.addSecretVersion as unknown as Call;
    const updateSecret = proto.updateSecret as unknown as Call;
    for (const other of ["newer", "older"] as const) {
      const k = key();
      await store.push(k, "old");
      const rid = randomUUID();
      const staged = await stage(k, "new", rid);
      // The other promote of this rotation, done straight through the API.
      const otherPromote = async () => {
        const [v] = await addVersion.call(gcp, { parent: path(k), payload: { data: Buffer.from("new") } });
        await updateSecret.call(gcp, {
          secret: { name: path(k), annotations: { [CURRENT_ROTATION]: `${rid}@${v.name!.split("/").pop()}` } },
          updateMask: { paths: ["annotations"] },
        });
      };
      // "newer": it lands between our AddSecretVersion and our UpdateSecret recording it (the second
      // UpdateSecret: the first is our claim); "older": just before our AddSecretVersion.
      const spy =
        other === "newer"
          ? vi
              .spyOn(proto, "updateSecret")
              .mockImplementationOnce(function (this: unknown, ...args: unknown[]) {
                return updateSecret.apply(this, args);
              } as never)
              .mockImplementationOnce(async function (this: unknown, ...args: unknown[]) {
                await otherPromote();
                return updateSecret.apply(this, args);
              } as never)
          : vi.spyOn(proto, "addSecretVersion").mockImplementationOnce(async function (this: unknown, ...args: unknown[]) {
              await otherPromote();
              return addVersion.apply(this, args);
            } as never);
      try {
        expect(await promote(k, rid)).toEqual(staged);
      } finally {
        spy.mockRestore();
      }
      // 1 is the old value, 2 and 3 the two copies of the new one (ours is 2 when the other is
      // newer, 3 when it is older): the older copy is disabled, never the newest.
      expect(await versions(path(k))).toEqual(["3:ENABLED", "2:DISABLED", "1:ENABLED"]);
      expect((await getSecret(path(k)))?.annotations).toEqual({ [CURRENT_ROTATION]: `${rid}@3` });
      expect(await store.getCurrent(k)).toEqual(staged);
      expect(await store.getPrevious(k)).toEqual({ versionId: "1", value: "old" });
      expect(await store.getPending(k)).toBeUndefined();
      expect(await access(path(k))).toBe("new");
    }
  });

  it("resumes a stage that stopped between creating the sibling and writing its value", async () => {
    const k = key();
    await store.push(k, "old");
    const rid = randomUUID();
    await gcp.createSecret({
      parent: PARENT,
      secretId: `${k}-pending`,
      secret: {
        replication: { automatic: {} },
        labels: { "managed-by": "cnpg-rotator", [ROLE_LABEL]: "pending" },
        annotations: { [ROTATION_ID]: rid },
      },
    });
    expect(await store.getPending(k)).toBeUndefined(); // Nothing staged yet.
    expect(await stage(k, "new", rid)).toEqual({ versionId: rid, value: "new", rotationId: rid });
    expect(await versions(path(`${k}-pending`))).toEqual(["1:ENABLED"]);
  });

  it("starts the sibling afresh when its staged version was disabled by hand", async () => {
    const k = key();
    await store.push(k, "old");
    const rid = randomUUID();
    await stage(k, "first", rid);
    await gcp.disableSecretVersion({ name: `${path(`${k}-pending`)}/versions/1` });
    expect(await store.getPending(k)).toBeUndefined();
    await expect(promote(k, rid)).rejects.toThrow(/without a staged value/);
    expect(await stage(k, "second", rid)).toEqual({ versionId: rid, value: "second", rotationId: rid });
    expect(await versions(path(`${k}-pending`))).toEqual(["1:ENABLED"]);
    await promote(k, rid);
    expect(await access(path(k))).toBe("second");
  });

  it("discard deletes the sibling, and a <key> that never had a value", async () => {
    const k = key();
    await store.push(k, "old");
    const rid = randomUUID();
    await stage(k, "new", rid);
    await discard(k, rid);
    expect(await getSecret(path(`${k}-pending`))).toBeUndefined();
    expect(await access(path(k))).toBe("old");

    const fresh = key();
    const first = randomUUID();
    await stage(fresh, "never accepted", first);
    await discard(fresh, first);
    expect(await getSecret(path(fresh))).toBeUndefined();
    expect(await getSecret(path(`${fresh}-pending`))).toBeUndefined();
  });

  it("delete removes the sibling with <key>", async () => {
    const k = key();
    await store.push(k, "old");
    await stage(k, "new", randomUUID());
    await store.delete(k);
    expect(await getSecret(path(k))).toBeUndefined();
    expect(await getSecret(path(`${k}-pending`))).toBeUndefined();
  });

  it("refuses a sibling that is not ours, naming it", async () => {
    const k = key();
    await store.push(k, "old");
    await gcp.createSecret({ parent: PARENT, secretId: `${k}-pending`, secret: { replication: { automatic: {} } } });
    const error = await stage(k, "new", randomUUID()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OwnershipError);
    expect((error as Error).message).toContain(`"${k}-pending"`);
    expect(await store.getPending(k)).toBeUndefined();
    await discard(k, randomUUID());
    expect(await getSecret(path(`${k}-pending`))).toBeDefined();
  });

  it("refuses remote keys that cannot be secret ids, or would collide with a sibling, before any call", async () => {
    for (const bad of ["team/app", "", "x".repeat(248), "pässword", "db-pending"]) {
      for (const attempt of [
        () => store.push(bad, "v"),
        () => stage(bad, "v", randomUUID()),
        () => store.getCurrent(bad),
        () => store.exists(bad),
      ]) {
        const error = await attempt().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InputError);
        expect((error as Error).message).toContain(`"${bad}"`);
      }
    }
    // The longest key whose sibling still fits in 255 characters.
    const longest = `k${randomUUID().replaceAll("-", "")}`.padEnd(247, "x");
    expect((await store.push(longest, "v")).changed).toBe(true);
    expect((await store.getCurrent(longest))?.value).toBe("v");
  });

  it("with a location, writes regional secrets under projects/<p>/locations/<l>", async () => {
    const regional = await createGcpStore(config({ location: "europe-west1" }));
    try {
      expect(regional.description).toContain(`${PARENT}/locations/europe-west1`);
      const k = key();
      const rid = randomUUID();
      await stage(k, "v", rid, regional);
      await promote(k, rid, regional);
      const name = `${PARENT}/locations/europe-west1/secrets/${k}`;
      expect(await access(name)).toBe("v");
      expect(await getSecret(path(k))).toBeUndefined();
      expect(await regional.getCurrent(k)).toEqual({ versionId: rid, value: "v", rotationId: rid });
    } finally {
      await regional.close();
    }
  });

  it("refuses configuration it cannot use", async () => {
    await expect(createGcpStore(config({ projectID: "p/secrets/x" }))).rejects.toThrow(/spec\.provider\.gcpsm\.projectID/);
    await expect(createGcpStore(config({ location: "evil.example.com/x" }))).rejects.toThrow(
      /spec\.provider\.gcpsm\.location/,
    );
    const saved = process.env[ENDPOINT_ENV];
    process.env[ENDPOINT_ENV] = "http://127.0.0.1";
    try {
      await expect(createGcpStore(config())).rejects.toBeInstanceOf(InputError);
    } finally {
      process.env[ENDPOINT_ENV] = saved;
    }
  });

  it("describes itself without credentials and names the emulator endpoint", () => {
    expect(store.provider).toBe("gcpsm");
    expect(store.description).toBe(`gcp secretmanager ${PARENT} via ${process.env[ENDPOINT_ENV]} (plaintext, ${ENDPOINT_ENV})`);
  });

  it("wraps SDK failures in a StoreError naming the call and the secret", async () => {
    const saved = process.env[ENDPOINT_ENV];
    process.env[ENDPOINT_ENV] = "127.0.0.1:9"; // Nothing listens on the discard port.
    const broken = await createGcpStore(config());
    try {
      const error: Error = await broken.push("some-name", "secret-value").catch((e) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).toContain("GetSecret");
      expect(error.message).toContain("some-name");
      expect(error.message).not.toContain("secret-value");
    } finally {
      process.env[ENDPOINT_ENV] = saved;
      await broken.close();
    }
  });
});
