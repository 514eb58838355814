// The aws store against moto's server mode: the conformance suite, then the
// AWS specifics (staging labels, tags, deletion with a recovery window).
// The endpoint reaches the SDK only through AWS_ENDPOINT_URL_SECRETS_MANAGER,
// as it would in a deployment: the store never takes an endpoint.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CreateSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, OwnershipError, StoreConflictError, StoreError, StoreStateError } from "../../lib/errors.ts";
import type { AwsProvider } from "../../lib/manifests/schema.ts";
import { awsPrimitives, PUSH_TOKEN_PREFIX } from "../../lib/stores/aws.ts";
import { createClient, createStore } from "../../lib/protocol/index.ts";
import { PENDING, TIMEOUT_ENV, UNPROMOTED } from "../../lib/stores/primitives.ts";
import type { StoreDeps } from "../../lib/stores/types.ts";
import { startFaultProxy } from "../faults/fault-proxy.ts";
import { binaries, type MotoServer, startMoto } from "../infra/servers.ts";
import { describeStoreConformance } from "./stores.conformance.ts";
import { describePrimitives } from "./stores.primitives.ts";
import { awsRequests } from "./support.ts";

/** The engine's client over the AWS store's primitives, as the registry builds it. */
const createAwsStore = (config: AwsProvider, deps: StoreDeps = {}) => createClient(awsPrimitives(config, deps));

const REGION = "us-east-1";
const config = (extra: Partial<AwsProvider> = {}): AwsProvider => ({ service: "SecretsManager", region: REGION, ...extra });

// When the run has no globalSetup (test/infra/global-setup.ts provides the endpoint
// and dummy credentials), start moto here. Never a skip: a missing moto fails.
let moto: MotoServer | undefined;
let motoDir: string | undefined;
beforeAll(async () => {
  if (process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER) return;
  if (!existsSync(binaries.motoServer)) {
    throw new Error(`moto is not installed at ${binaries.motoServer}; run test/infra/setup-moto.sh`);
  }
  motoDir = await mkdtemp(join(tmpdir(), "cnpg-rotator-moto-"));
  moto = await startMoto(motoDir);
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: moto.endpoint,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_SESSION_TOKEN: "testing",
  });
});
afterAll(async () => {
  await moto?.stop();
  if (motoDir) await rm(motoDir, { recursive: true, force: true });
});

/** The provider's own API, for checks that must not go through the store. */
let aws: SecretsManagerClient;
beforeAll(() => {
  aws = new SecretsManagerClient({ region: REGION });
});
afterAll(() => aws.destroy());

async function labels(name: string): Promise<Record<string, string[]>> {
  const out = await aws.send(new ListSecretVersionIdsCommand({ SecretId: name, IncludeDeprecated: true }));
  return Object.fromEntries((out.Versions ?? []).map((v) => [v.VersionId!, [...(v.VersionStages ?? [])].sort()]));
}

async function describeSecret(name: string) {
  try {
    return await aws.send(new DescribeSecretCommand({ SecretId: name }));
  } catch (e) {
    if ((e as Error).name === "ResourceNotFoundException") return undefined;
    throw e;
  }
}

describePrimitives("aws", async () => ({
  primitives: awsPrimitives(config()),
  key: () => `primitives/${randomUUID()}`,
}));

describeStoreConformance("aws", async () => ({
  store: createAwsStore(config()),
  key: () => `conformance/${randomUUID()}`,
  async foreign(key, value) {
    // Marked as someone else's: a managed-by tag with another value must not pass for ours.
    await aws.send(
      new CreateSecretCommand({ Name: key, SecretString: value, Tags: [{ Key: "managed-by", Value: "external-secrets" }] }),
    );
  },
  async inspect(key) {
    const secret = await describeSecret(key);
    if (!secret || secret.DeletedDate) return undefined;
    const owned = secret.Tags?.some((t) => t.Key === "managed-by" && t.Value === "cnpg-rotator") ?? false;
    try {
      // AWS reads AWSCURRENT when no stage is given; moto instead reads the version last made
      // current by a write and misses UpdateSecretVersionStage, so name the stage.
      const current = await aws.send(new GetSecretValueCommand({ SecretId: key, VersionStage: "AWSCURRENT" }));
      return { current: current.SecretString, owned };
    } catch (e) {
      if ((e as Error).name === "ResourceNotFoundException") return { current: undefined, owned };
      throw e;
    }
  },
}));


describe("aws store", () => {
  const store = createAwsStore(config());
  afterAll(() => store.close());
  const key = () => `aws/${randomUUID()}`;
  const stage = async (name: string, value: string, rid: string) => store.stage(name, value, rid, await store.observe(name));
  const promote = async (name: string, rid: string) => store.promote(name, rid, await store.observe(name));
  const discard = async (name: string, rid: string) => store.discard(name, rid, await store.observe(name));

  it("observes current and pending versions with one DescribeSecret, reading no value", async () => {
    const name = key();
    expect(await store.observe(name)).toEqual({ exists: false, owned: false });
    const old = (await store.push(name, "old")).versionId!;
    const rid = randomUUID();
    await stage(name, "new", rid);
    const { result, ops } = await awsRequests(() => store.observe(name));
    expect(result).toEqual({
      exists: true,
      owned: true,
      current: { versionId: old },
      pending: { versionId: rid, rotationId: rid },
    });
    expect(ops).toEqual(["DescribeSecret"]);

    // A never-promoted first version is pending, not current, as getCurrent / getPending read it.
    const fresh = key();
    await stage(fresh, "first", rid);
    expect(await store.observe(fresh)).toEqual({ exists: true, owned: true, pending: { versionId: rid, rotationId: rid } });
    const foreign = key();
    await aws.send(new CreateSecretCommand({ Name: foreign, SecretString: "theirs" }));
    expect(await store.observe(foreign)).toMatchObject({ exists: true, owned: false });
    await store.delete(name);
    expect(await store.observe(name)).toEqual({ exists: false, owned: true });
  });

  it("stages with one PutSecretValue after a DescribeSecret (the fence), and promotes with two label moves (compare-and-swap)", async () => {
    const name = key();
    const old = (await store.push(name, "old")).versionId!;
    const rid = randomUUID();
    const { result, ops } = await awsRequests(async () => {
      const staged = await store.stage(name, "new", rid, await store.observe(name));
      const promoted = await store.promote(name, rid, await store.observe(name));
      return { staged, promoted };
    });
    expect(ops).toEqual([
      "DescribeSecret",
      "DescribeSecret",
      "PutSecretValue",
      "DescribeSecret",
      "UpdateSecretVersionStage",
      "UpdateSecretVersionStage",
    ]);
    expect(result.staged).toEqual({ versionId: rid, value: "new", rotationId: rid });
    expect(result.promoted).toEqual({ versionId: rid, value: "new", rotationId: rid });
    expect(await labels(name)).toEqual({ [old]: ["AWSPREVIOUS"], [rid]: ["AWSCURRENT"] });
    expect(await store.getCurrent(name)).toEqual({ versionId: rid, value: "new", rotationId: rid });

    // A new secret's first version too: it holds AWSCURRENT already, so promoting only takes our labels off.
    const fresh = key();
    await stage(fresh, "first", rid);
    expect(await promote(fresh, rid)).toEqual({ versionId: rid, value: "first", rotationId: rid });
    expect(await labels(fresh)).toEqual({ [rid]: ["AWSCURRENT"] });
  });

  it("refuses a promote decided before AWSCURRENT moved, writing nothing; observed again, it promotes", async () => {
    const name = key();
    await store.push(name, "old");
    const rid = randomUUID();
    await stage(name, "new", rid);
    const stale = await store.observe(name);
    // Someone else pushes meanwhile.
    const other = createAwsStore(config());
    const pushed = (await other.push(name, "pushed")).versionId!;
    await other.close();
    const { result, ops } = await awsRequests(() => store.promote(name, rid, stale).catch((e: Error) => e));
    // AWS refuses the move off the version seen current; the look that follows finds current moved.
    expect(result).toBeInstanceOf(StoreConflictError);
    expect(ops).toEqual(["UpdateSecretVersionStage", "DescribeSecret"]);
    expect(await promote(name, rid)).toEqual({ versionId: rid, value: "new", rotationId: rid });
    expect(await store.getCurrent(name)).toEqual({ versionId: rid, value: "new", rotationId: rid });
    expect((await store.getPrevious(name))?.versionId).toBe(pushed);
    expect(await store.getPending(name)).toBeUndefined();
  });

  it("a promote after a discard is refused; a foreign secret is refused before any write", async () => {
    const name = key();
    await store.push(name, "old");
    const rid = randomUUID();
    await stage(name, "new", rid);
    await discard(name, rid);
    await expect(promote(name, rid)).rejects.toBeInstanceOf(StoreStateError);
    expect((await store.getCurrent(name))?.value).toBe("old");
    const foreign = key();
    await aws.send(new CreateSecretCommand({ Name: foreign, SecretString: "theirs" }));
    const seen = await store.observe(foreign);
    const { result, ops } = await awsRequests(() => store.stage(foreign, "ours", randomUUID(), seen).catch((e: Error) => e));
    expect(result).toBeInstanceOf(OwnershipError);
    expect(ops).toEqual(["DescribeSecret"]);
  });

  it("creates secrets with our tag and a description", async () => {
    const name = key();
    await stage(name, "v", randomUUID());
    const secret = await describeSecret(name);
    expect(secret?.Tags).toEqual([{ Key: "managed-by", Value: "cnpg-rotator" }]);
    expect(secret?.Description).toContain("cnpg-rotator");
    const pushed = key();
    await store.push(pushed, "v");
    expect((await describeSecret(pushed))?.Tags).toEqual([{ Key: "managed-by", Value: "cnpg-rotator" }]);
  });

  it("stages with the rotation id as VersionId under AWSPENDING and promotes by moving AWSCURRENT", async () => {
    const name = key();
    const old = await store.push(name, "old");
    const rid = randomUUID();
    const staged = await stage(name, "new", rid);
    await stage(name, "new", rid);
    await stage(name, "other", rid);
    expect(staged.versionId).toBe(rid);
    expect(await labels(name)).toEqual({ [old.versionId!]: ["AWSCURRENT"], [rid]: ["AWSPENDING"] });

    await promote(name, rid);
    expect(await labels(name)).toEqual({ [old.versionId!]: ["AWSPREVIOUS"], [rid]: ["AWSCURRENT"] });
    await promote(name, rid);
    expect(await labels(name)).toEqual({ [old.versionId!]: ["AWSPREVIOUS"], [rid]: ["AWSCURRENT"] });
  });

  it("moves AWSPENDING to a new rotation and relabels a discarded version staged again", async () => {
    const name = key();
    const current = (await store.push(name, "old")).versionId!;
    const first = randomUUID();
    const second = randomUUID();
    await stage(name, "one", first);
    await stage(name, "two", second);
    expect(await labels(name)).toEqual({ [current]: ["AWSCURRENT"], [first]: [], [second]: ["AWSPENDING"] });
    // AWS versions are immutable: staging the first rotation again brings back its first value.
    expect(await stage(name, "three", first)).toEqual({ versionId: first, value: "one", rotationId: first });
    expect(await labels(name)).toEqual({ [current]: ["AWSCURRENT"], [first]: ["AWSPENDING"], [second]: [] });
  });

  it("reads the first version of a new secret, which AWS makes current, as pending until promoted", async () => {
    const name = key();
    const rid = randomUUID();
    await stage(name, "first", rid);
    expect(await labels(name)).toEqual({ [rid]: ["AWSCURRENT", PENDING, UNPROMOTED].sort() });
    expect(await store.getCurrent(name)).toBeUndefined();

    // Another rotation replaces it; AWSCURRENT stays on the never-promoted version until one is promoted.
    const next = randomUUID();
    await stage(name, "second", next);
    expect(await store.getCurrent(name)).toBeUndefined();
    expect((await store.getPending(name))?.rotationId).toBe(next);
    // Holding AWSCURRENT does not make the replaced rotation promotable, nor stop it being staged again.
    await expect(promote(name, rid)).rejects.toBeInstanceOf(StoreStateError);
    expect(await stage(name, "other", rid)).toEqual({ versionId: rid, value: "first", rotationId: rid });
    expect((await store.getPending(name))?.rotationId).toBe(rid);
    await stage(name, "second", next);
    await promote(name, next);
    expect(await store.getCurrent(name)).toEqual({ versionId: next, value: "second", rotationId: next });
    expect(await store.getPrevious(name)).toBeUndefined(); // The never-promoted version is no previous value.
    expect((await labels(name))[next]).toEqual(["AWSCURRENT"]);
  });

  it("pushes with a deterministic token, so a retried push makes no second version", async () => {
    const name = key();
    const first = await store.push(name, "one");
    expect(first.versionId).toMatch(new RegExp(`^${PUSH_TOKEN_PREFIX}[0-9a-f]{59}$`));
    expect((await store.getCurrent(name))?.rotationId).toBeUndefined();
    // Same value on top of the same version gives the same token: AWS treats the repeat as a no-op.
    const other = key();
    expect((await store.push(other, "one")).versionId).toBe(first.versionId);
    expect(Object.keys(await labels(name))).toHaveLength(1);
  });

  it("pushes a value onto a current it was once pushed onto (the token names an old version)", async () => {
    const name = key();
    const rid = randomUUID();
    await stage(name, "rotated", rid);
    await promote(name, rid);
    const pushed = await store.push(name, "a");
    // The rotation's version becomes current again, then the same push repeats on top of it.
    await stage(name, "rotated", rid);
    await promote(name, rid);
    expect((await store.getCurrent(name))?.value).toBe("rotated");
    expect(await store.push(name, "a")).toEqual({ changed: true, versionId: pushed.versionId });
    expect(await store.getCurrent(name)).toEqual({ versionId: pushed.versionId, value: "a" });
    expect((await store.getPrevious(name))?.value).toBe("rotated");
  });

  it("deletes with a recovery window by default and restores a deleted secret written again", async () => {
    const name = key();
    await store.push(name, "v1");
    await store.delete(name);
    const deleted = await describeSecret(name);
    expect(deleted?.DeletedDate).toBeInstanceOf(Date);
    expect(await store.exists(name)).toBe(false);
    await store.delete(name);

    const rid = randomUUID();
    await stage(name, "v2", rid);
    await promote(name, rid);
    expect((await describeSecret(name))?.DeletedDate).toBeUndefined();
    expect((await store.getCurrent(name))?.value).toBe("v2");
    expect((await store.getPrevious(name))?.value).toBe("v1");
  });

  it("deletes at once with forceDeleteWithoutRecovery", async () => {
    const forced = createAwsStore(config({ secretsManager: { forceDeleteWithoutRecovery: true } }));
    const name = key();
    await forced.push(name, "v");
    await forced.delete(name);
    expect(await describeSecret(name)).toBeUndefined();
    await forced.close();
  });

  it("discarding a never-promoted first version deletes the secret at once", async () => {
    const name = key();
    const rid = randomUUID();
    await stage(name, "v", rid);
    await discard(name, rid);
    expect(await describeSecret(name)).toBeUndefined();
  });

  it("puts the prefix in front of every name", async () => {
    const prefixed = createAwsStore(config({ prefix: "team-a/" }));
    expect(prefixed.description).toBe(`aws secretsmanager ${REGION} prefix team-a/`);
    const name = key();
    await prefixed.push(name, "v");
    expect(await describeSecret(name)).toBeUndefined();
    expect((await aws.send(new GetSecretValueCommand({ SecretId: `team-a/${name}` }))).SecretString).toBe("v");
    await prefixed.close();
  });

  it("refuses a rotation id AWS cannot take as ClientRequestToken, before writing", async () => {
    const name = key();
    await expect(stage(name, "v", "too-short")).rejects.toBeInstanceOf(StoreError);
    expect(await describeSecret(name)).toBeUndefined();
  });

  it("gives up on a blackholed connection (accepted, never answered) within CNPG_ROTATOR_STORE_TIMEOUT per attempt", async () => {
    const sockets = new Set<Socket>();
    const blackhole = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => blackhole.listen(0, "127.0.0.1", resolve));
    const saved = { endpoint: process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER, timeout: process.env[TIMEOUT_ENV] };
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = `http://127.0.0.1:${(blackhole.address() as AddressInfo).port}`;
    process.env[TIMEOUT_ENV] = "300ms";
    const stalled = createAwsStore(config());
    try {
      const started = Date.now();
      const error: Error = await stalled.observe("some/name").catch((e) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).toContain("DescribeSecret");
      // Four attempts of 300 ms and the pauses between them: seconds, not the SDK's forever.
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(sockets.size).toBeGreaterThanOrEqual(2); // Retried by our policy, once per attempt.
    } finally {
      Object.assign(process.env, { AWS_ENDPOINT_URL_SECRETS_MANAGER: saved.endpoint });
      if (saved.timeout === undefined) delete process.env[TIMEOUT_ENV];
      else process.env[TIMEOUT_ENV] = saved.timeout;
      await stalled.close();
      for (const s of sockets) s.destroy();
      blackhole.close();
    }
  });

  it("promotes when the answer to its last label move is lost after AWS applied it (the retry finds nothing to move)", async () => {
    const name = key();
    const old = (await store.push(name, "old")).versionId!;
    const rid = randomUUID();
    await stage(name, "new", rid);
    const seen = await store.observe(name);
    const proxy = await startFaultProxy({ upstream: process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER! });
    // The move of AWSPENDING off the promoted version: forwarded, applied by moto, its answer cut.
    proxy.add({
      match: (r) => r.headers["x-amz-target"] === "secretsmanager.UpdateSecretVersionStage" && r.body.toString().includes('"VersionStage":"AWSPENDING"'),
      action: { drop: true },
      times: 1,
    });
    const saved = process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = proxy.url;
    // The SDK resolves its endpoint at the first request: keep it set until the promote is done.
    const faulty = createAwsStore(config());
    try {
      expect(await faulty.promote(name, rid, seen)).toEqual({ versionId: rid, value: "new", rotationId: rid });
      expect(proxy.hits).toBe(1);
    } finally {
      process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = saved;
      await faulty.close();
      await proxy.close();
    }
    // Not rolled back: the rotation stays current, nothing pending.
    expect(await labels(name)).toEqual({ [old]: ["AWSPREVIOUS"], [rid]: ["AWSCURRENT"] });
  });

  it("wraps SDK failures in a StoreError naming the call and the secret", async () => {
    const saved = process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = "http://127.0.0.1:9"; // Nothing listens on the discard port.
    const broken = createAwsStore(config());
    try {
      const error: Error = await broken.push("some/name", "secret-value").catch((e) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).toContain("DescribeSecret");
      expect(error.message).toContain("some/name");
      expect(error.message).not.toContain("secret-value");
    } finally {
      process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = saved;
      await broken.close();
    }
  });

  it("refuses configuration it cannot honour", async () => {
    expect(() => createAwsStore(config({ role: "arn:aws:iam::1:role/x" }))).toThrow(InputError);
    expect(() => createAwsStore(config({ secretsManager: { recoveryWindowInDays: 3 } }))).toThrow(
      /spec\.provider\.aws\.secretsManager\.recoveryWindowInDays/,
    );
    expect(() => createAwsStore(config({ secretsManager: { forceDeleteWithoutRecovery: "yes" } }))).toThrow(InputError);
    expect(() => createAwsStore({ service: "ParameterStore", region: REGION })).toThrow(InputError);
  });

  it("is created by the registry", async () => {
    const created = await createStore({ name: "aws", config: config() });
    expect(created.provider).toBe("aws");
    expect(created.description).toBe(`aws secretsmanager ${REGION}`);
    await created.close();
  });
});
