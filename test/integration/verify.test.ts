// Verified rotation end to end (SPEC §5.4): the seed's manifests rotated against the real
// kube-apiserver, a real PostgreSQL and a stand-in for CNPG that applies (or never applies)
// the Secret's password to the role. The rotation is promoted only after a real login with
// the new password; when that never succeeds it fails with a VerificationError, is not
// promoted, and is rolled back so that Secret, store and database agree again.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { readJdbc, readPgpass, readUri } from "../../lib/cnpg/index.ts";
import { InputError, VerificationError } from "../../lib/errors.ts";
import { loadManifests, type ManifestSet } from "../../lib/manifests/index.ts";
import { tryLogin } from "../../lib/postgres/index.ts";
import { engineFromEnvironment } from "../../lib/rotation/context.ts";
import { type Engine, rotate } from "../../lib/rotation/engine.ts";
import { rollback } from "../../lib/rotation/rollback.ts";
import { ANNOTATIONS, successorId } from "../../lib/rotation/names.ts";
import { createVerifier, VERIFY_ANNOTATIONS, type VerifyConfig } from "../../lib/rotation/verify.ts";
import { type Reconciler, type ReconcilerMode, startReconciler } from "../infra/cnpg-reconciler.ts";
import { type PostgresServer, startPostgres } from "../infra/postgres.ts";
import {
  adminClient,
  awsStoreYaml,
  capturingLogger,
  createAppSecret,
  engineFor,
  fileStoreYaml,
  logLines,
  pushSecretYaml,
  seedManifests,
  seedYaml,
  seenSecrets,
  tempDir,
  uniqueName,
} from "./support.ts";

const SECRET = "cluster-example-app";
const kube = adminClient();
const seen = seenSecrets;

let server: PostgresServer;
const reconcilers: Reconciler[] = [];

beforeAll(async () => {
  // startPostgres fails the file when the server is missing: never skipped.
  server = await startPostgres();
  seen.add(server.superuserPassword);
});
afterEach(async () => {
  await Promise.all(reconcilers.splice(0).map((r) => r.stop()));
});
afterAll(async () => {
  await server?.stop();
});

/** The seed's Password + ExternalSecret (with extra annotations on the ExternalSecret), a file store and a PushSecret. */
function manifests(namespace: string, storePath: string, annotations: Record<string, string> = {}): ManifestSet {
  return loadManifests(manifestFiles(storePath, annotations), { namespace });
}

function manifestFiles(storePath: string, annotations: Record<string, string> = {}) {
  let es = seedYaml("external-secret.yaml");
  const entries = Object.entries(annotations);
  if (entries.length > 0) {
    const header = "  name: cluster-example-app-secret\n";
    expect(es).toContain(header);
    es = es.replace(header, `${header}  annotations:\n${entries.map(([k, v]) => `    ${k}: "${v}"\n`).join("")}`);
  }
  return [
    { file: "password-generator.yaml", text: seedYaml("password-generator.yaml") },
    { file: "external-secret.yaml", text: es },
    { file: "store.yaml", text: fileStoreYaml(storePath) },
    { file: "push-secret.yaml", text: pushSecretYaml("local", SECRET) },
  ];
}

/** A namespace with CNPG's app Secret, the role `app` set to its password, and a CNPG stand-in watching it. */
async function setup(mode: ReconcilerMode, delayMs = 0) {
  const namespace = uniqueName("verify");
  await kube.ensureNamespace(namespace);
  const storePath = join(tempDir(), "store.json");
  const created = await createAppSecret(kube, namespace);
  const original = created.data.password!;
  seen.add(original);
  await server.ensureLoginRole("app", original);
  const reconciler = startReconciler({
    kube: adminClient(),
    namespace,
    secretName: SECRET,
    postgres: { host: server.host, port: server.port, user: server.superuser, password: server.superuserPassword },
    mode,
    delayMs,
  });
  reconcilers.push(reconciler);
  return { namespace, storePath, original, reconciler };
}

/** A verifier that also records (and registers) every password it was asked to test. */
function recordingVerifier(config: VerifyConfig) {
  const tested: string[] = [];
  const inner = createVerifier(config, { log: capturingLogger() });
  const verify: NonNullable<Engine["verify"]> = async (secret, target) => {
    const password = secret.data.password!;
    seen.add(password);
    tested.push(password);
    await inner(secret, target);
  };
  return { verify, tested };
}

const login = (password: string, user = "app") =>
  tryLogin({ host: server.host, port: server.port, user, password, database: "app", ssl: "disable" }, { timeoutMs: 5_000 });

interface Version {
  value: string;
  rotationId?: string;
  versionId: string;
}
/** The file store's state for the Secret, read from its file; every password in it registered. */
function store(path: string): { current?: Version; pending?: Version; previous?: Version } {
  if (!existsSync(path)) return {};
  const doc = JSON.parse(readFileSync(path, "utf8")) as { secrets: Record<string, { current?: Version; pending?: Version; previous?: Version }> };
  const entry = doc.secrets[SECRET] ?? {};
  for (const v of [entry.current, entry.pending, entry.previous]) if (v) seen.add(passwordIn(v)!);
  return entry;
}
const passwordIn = (v: Version | undefined) => (v ? (JSON.parse(v.value) as { password?: string }).password : undefined);

async function secretNow(namespace: string) {
  const s = (await kube.readSecret(namespace, SECRET))!;
  seen.add(s.data.password!);
  return s;
}

/** The Secret's metadata.uid: rotation ids derive from it. */
async function uidOf(namespace: string): Promise<string> {
  return (await kube.readSecret(namespace, SECRET))!.uid;
}

/** Every derived key of the Secret carries its `password`, as libpq and pgJDBC read them. */
function expectConsistent(data: Record<string, string>) {
  const password = data.password!;
  expect(readUri(data.uri!).password).toBe(password);
  expect(readUri(data["fqdn-uri"]!).password).toBe(password);
  expect(readJdbc(data["jdbc-uri"]!).password).toBe(password);
  expect(readJdbc(data["fqdn-jdbc-uri"]!).password).toBe(password);
  expect(readPgpass(data.pgpass!).password).toBe(password);
}

describe("verified rotation against a real PostgreSQL", () => {
  it("promotes only after CNPG has applied the new password and a login with it succeeded", async () => {
    const { namespace, storePath, original, reconciler } = await setup("apply", 1_500);
    // The Secret's host (cluster-example-rw) does not resolve here: the ExternalSecret says where to log in.
    const set = manifests(namespace, storePath, {
      [VERIFY_ANNOTATIONS.host]: server.host,
      [VERIFY_ANNOTATIONS.port]: String(server.port),
      [VERIFY_ANNOTATIONS.sslMode]: "disable",
    });
    const { verify, tested } = recordingVerifier({ enabled: true, timeoutMs: 30_000, initialDelayMs: 100 });
    const linesBefore = logLines.length;

    const [result] = await rotate(engineFor(set, kube, { verify, rollbackOnVerifyFailure: true }));
    expect(result).toMatchObject({ outcome: "rotated", target: `${namespace}/${SECRET}` });
    expect(result!.rolledBack).toBeUndefined();

    const secret = await secretNow(namespace);
    const password = secret.data.password!;
    expect(password).not.toBe(original);
    expect(tested).toEqual([password]);
    expectConsistent(secret.data);
    expect(reconciler.applied).toBe(1);
    expect(reconciler.lastError).toBeUndefined();

    // The verifier had to wait for CNPG: its first attempts were refused by the server.
    const retries = logLines.slice(linesBefore).filter((l) => l.includes("new password not accepted yet"));
    expect(retries.length).toBeGreaterThan(0);
    expect(retries.every((l) => l.includes('"status":"auth-failed"') && l.includes('"code":"28P01"'))).toBe(true);
    expect(logLines.slice(linesBefore).some((l) => l.includes("logged in with the new password"))).toBe(true);

    // Promoted: current is the new password, previous the old one, nothing pending.
    const entry = store(storePath);
    expect(passwordIn(entry.current)).toBe(password);
    expect(entry.current!.rotationId).toBe(result!.rotationId);
    expect(passwordIn(entry.previous)).toBe(original);
    expect(entry.pending).toBeUndefined();

    // And the database agrees.
    expect(await login(password)).toMatchObject({ status: "ok" });
    expect(await login(original)).toMatchObject({ status: "auth-failed", code: "28P01" });
  });

  it("a CNPG that never applies it: VerificationError, not promoted, rolled back; the next run rotates with a new id", async () => {
    const { namespace, storePath, original, reconciler } = await setup("never");
    const set = manifests(namespace, storePath);
    const config = { enabled: true, host: server.host, port: server.port, sslMode: "disable", timeoutMs: 3_000, initialDelayMs: 100 } as const;
    const { verify, tested } = recordingVerifier(config);
    const engine = engineFor(set, kube, { verify, rollbackOnVerifyFailure: true });

    const started = Date.now();
    const [failed] = await rotate(engine);
    expect(Date.now() - started).toBeGreaterThanOrEqual(3_000);
    expect(failed).toMatchObject({ outcome: "failed", rolledBack: true, error: { type: "VerificationError" } });
    const rolledBackId = failed!.rotationId!;
    expect(rolledBackId).toBe(successorId(namespace, SECRET, await uidOf(namespace), undefined));
    expect(failed!.error!.message).toContain(`rotation ${rolledBackId}`);
    expect(failed!.error!.message).toContain("auth-failed 28P01");
    expect(failed!.error!.message).toContain("was not promoted");
    const rejected = tested[0]!;
    expect(rejected).not.toBe(original);
    // It saw the new password and did not apply it (a poll may also have seen the rollback's write by now).
    expect(reconciler.ignored).toBeGreaterThanOrEqual(1);

    // The store was never promoted: current is still the old password, the pending one is gone.
    let entry = store(storePath);
    expect(passwordIn(entry.current)).toBe(original);
    expect(entry.pending).toBeUndefined();

    // The Secret is back on the old password, every derived key included, and says what happened.
    let secret = await secretNow(namespace);
    expect(secret.data.password).toBe(original);
    expectConsistent(secret.data);
    expect(secret.annotations[ANNOTATIONS.rotationId]).toBe(rolledBackId);
    expect(secret.annotations[ANNOTATIONS.rolledBack]).toBe(rolledBackId);
    expect(secret.labels["cnpg.io/reload"]).toBe("true");
    // Store and Secret agree on every key, not only the password.
    expect(JSON.parse(entry.current!.value)).toEqual(secret.data);

    // The database: the old password (the Secret's and the store's) works, the rejected one never did.
    expect(await login(secret.data.password!)).toMatchObject({ status: "ok" });
    expect(await login(rejected)).toMatchObject({ status: "auth-failed" });

    // CNPG recovers; the next scheduled run (not forced: a rolled-back rotation leaves the target due) succeeds.
    reconciler.setMode("apply");
    const [next] = await rotate(engine);
    expect(next).toMatchObject({ outcome: "rotated" });
    expect(next!.rotationId).not.toBe(rolledBackId);
    expect(next!.rotationId).toBe(successorId(namespace, SECRET, await uidOf(namespace), rolledBackId));
    secret = await secretNow(namespace);
    const password = secret.data.password!;
    expect(password).not.toBe(original);
    expect(password).not.toBe(rejected);
    expect(secret.annotations[ANNOTATIONS.rotationId]).toBe(next!.rotationId);
    expect(secret.annotations[ANNOTATIONS.rolledBack]).toBeUndefined();
    expect(secret.annotations[ANNOTATIONS.rolledBackAt]).toBeUndefined();
    entry = store(storePath);
    expect(passwordIn(entry.current)).toBe(password);
    expect(entry.current!.rotationId).toBe(next!.rotationId);
    expect(passwordIn(entry.previous)).toBe(original);
    expect(entry.pending).toBeUndefined();
    expect(await login(password)).toMatchObject({ status: "ok" });

    const [again] = await rotate(engine);
    expect(again!.outcome).toBe("not-due");
  });

  it("without automatic rollback: a later run tests the same rotation again; a manual rollback, even interrupted, converges", async () => {
    const { namespace, storePath, original, reconciler } = await setup("never");
    const set = manifests(namespace, storePath);
    const config = { enabled: true, host: server.host, port: server.port, sslMode: "disable", timeoutMs: 3_000, initialDelayMs: 100 } as const;
    const { verify, tested } = recordingVerifier(config);
    const engine = engineFor(set, kube, { verify });

    const [failed] = await rotate(engine);
    expect(failed).toMatchObject({ outcome: "failed", rolledBack: false, error: { type: "VerificationError" } });
    const id = failed!.rotationId!;
    // Merged, not promoted: the Secret holds the new password, the store still serves the old one.
    const pendingPassword = (await secretNow(namespace)).data.password!;
    let entry = store(storePath);
    expect(passwordIn(entry.current)).toBe(original);
    expect(entry.pending?.rotationId).toBe(id);
    expect(passwordIn(entry.pending)).toBe(pendingPassword);

    // A retry resumes the same rotation (same id, same password) and tests it again.
    const [retried] = await rotate(engine);
    expect(retried).toMatchObject({ outcome: "failed", rotationId: id, error: { type: "VerificationError" } });
    expect(tested).toEqual([pendingPassword, pendingPassword]);

    // A rollback that stops after putting the Secret back and before discarding the pending value…
    const [crashed] = await rollback(engine, {
      targets: [`${namespace}/${SECRET}`],
      afterStep: (step) => {
        if (step === "restore") throw new Error("simulated crash after restore");
      },
    });
    expect(crashed).toMatchObject({ outcome: "failed", error: { message: "simulated crash after restore" } });
    expect((await secretNow(namespace)).data.password).toBe(original);
    expect(store(storePath).pending?.rotationId).toBe(id);

    // …is finished by the next rollback, which only discards what is left.
    const [done] = await rollback(engine, { targets: [`${namespace}/${SECRET}`] });
    expect(done).toMatchObject({ outcome: "rolled-back", rotationId: id });
    const [noop] = await rollback(engine, { targets: [`${namespace}/${SECRET}`] });
    expect(noop).toMatchObject({ outcome: "nothing-to-roll-back", reason: `rotation ${id} was already rolled back` });

    const secret = await secretNow(namespace);
    entry = store(storePath);
    expect(entry.pending).toBeUndefined();
    expect(secret.data.password).toBe(original);
    expect(passwordIn(entry.current)).toBe(original);
    expectConsistent(secret.data);
    expect(await login(original)).toMatchObject({ status: "ok" });

    reconciler.setMode("apply");
    const [next] = await rotate(engine);
    expect(next).toMatchObject({ outcome: "rotated", rotationId: successorId(namespace, SECRET, await uidOf(namespace), id) });
    expect(await login((await secretNow(namespace)).data.password!)).toMatchObject({ status: "ok" });
  });

  it("a rollback interrupted before its discard: the next rotation never promotes the rolled-back password", async () => {
    const { namespace, storePath, original, reconciler } = await setup("never");
    const set = manifests(namespace, storePath);
    const config = { enabled: true, host: server.host, port: server.port, sslMode: "disable", timeoutMs: 3_000, initialDelayMs: 100 } as const;
    const { verify, tested } = recordingVerifier(config);
    const engine = engineFor(set, kube, { verify });
    const [failed] = await rotate(engine);
    const id = failed!.rotationId!;
    await rollback(engine, {
      afterStep: (step) => {
        if (step === "restore") throw new Error("simulated crash after restore");
      },
    });
    expect(store(storePath).pending?.rotationId).toBe(id);

    reconciler.setMode("apply");
    const [next] = await rotate(engine);
    // A new rotation (not a resume of the rolled-back one), with a new id and a new password.
    expect(next).toMatchObject({ outcome: "rotated", rotationId: successorId(namespace, SECRET, await uidOf(namespace), id) });
    const password = (await secretNow(namespace)).data.password!;
    expect(password).not.toBe(tested[0]);
    const entry = store(storePath);
    expect(passwordIn(entry.current)).toBe(password);
    expect(passwordIn(entry.previous)).toBe(original);
    expect(entry.pending).toBeUndefined();
    expect(await login(password)).toMatchObject({ status: "ok" });
  });

  it("from the environment: CNPG_ROTATOR_VERIFY* turn it on, rollback is the default, bad values are refused before any write", async () => {
    const { namespace, storePath, original } = await setup("never");
    const dir = tempDir();
    for (const f of manifestFiles(storePath)) writeFileSync(join(dir, f.file), f.text);
    const env = {
      CNPG_ROTATOR_MANIFESTS: dir,
      CNPG_ROTATOR_NAMESPACE: namespace,
      CNPG_ROTATOR_VERIFY: "true",
      CNPG_ROTATOR_VERIFY_HOST: server.host,
      CNPG_ROTATOR_VERIFY_PORT: String(server.port),
      CNPG_ROTATOR_VERIFY_SSLMODE: "disable",
      CNPG_ROTATOR_VERIFY_TIMEOUT: "3s",
    };
    const fromEnv = (extra: Record<string, string> = {}) => engineFromEnvironment({ env: { ...env, ...extra }, kube, log: capturingLogger() });

    const [failed] = await rotate(await fromEnv());
    expect(failed).toMatchObject({ outcome: "failed", rolledBack: true, error: { type: "VerificationError" } });
    expect((await secretNow(namespace)).data.password).toBe(original);
    expect(passwordIn(store(storePath).current)).toBe(original);

    // TLS required by the verifier, refused by the server: fails at once, no waiting for the timeout.
    const started = Date.now();
    const [tls] = await rotate(await fromEnv({ CNPG_ROTATOR_VERIFY_SSLMODE: "require", CNPG_ROTATOR_VERIFY_TIMEOUT: "60s" }));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(tls).toMatchObject({ outcome: "failed", rolledBack: true, error: { type: "VerificationError" } });
    expect(tls!.error!.message).toContain("does not support SSL");

    // Rollback off: the failed rotation stays merged and pending, for the next run to test again.
    const [kept] = await rotate(await fromEnv({ CNPG_ROTATOR_ROLLBACK_ON_VERIFY_FAILURE: "false" }));
    expect(kept).toMatchObject({ outcome: "failed", rolledBack: false });
    expect(store(storePath).pending?.rotationId).toBe(kept!.rotationId);
    const [rolled] = await rollback(await fromEnv(), { targets: [`${namespace}/${SECRET}`] });
    expect(rolled).toMatchObject({ outcome: "rolled-back", rotationId: kept!.rotationId });
    expect((await secretNow(namespace)).data.password).toBe(original);

    for (const [name, value] of [
      ["CNPG_ROTATOR_VERIFY", "yes please"],
      ["CNPG_ROTATOR_VERIFY_PORT", "54x"],
      ["CNPG_ROTATOR_VERIFY_SSLMODE", "prefer"],
      ["CNPG_ROTATOR_VERIFY_TIMEOUT", "soon"],
      ["CNPG_ROTATOR_VERIFY_HOST", "not a host"],
      ["CNPG_ROTATOR_ROLLBACK_ON_VERIFY_FAILURE", "maybe"],
    ] as const) {
      await expect(fromEnv({ [name]: value }), name).rejects.toThrow(InputError);
      await expect(fromEnv({ [name]: value }), name).rejects.toThrow(name);
    }
    const badAnnotation = tempDir();
    for (const f of manifestFiles(storePath, { [VERIFY_ANNOTATIONS.port]: "0" })) writeFileSync(join(badAnnotation, f.file), f.text);
    await expect(fromEnv({ CNPG_ROTATOR_MANIFESTS: badAnnotation })).rejects.toThrow(`annotation ${VERIFY_ANNOTATIONS.port}`);
    // Off unless asked for; an annotation turns it on for one target.
    expect((await fromEnv({ CNPG_ROTATOR_VERIFY: "false" })).verify).toBeUndefined();
    const optIn = tempDir();
    for (const f of manifestFiles(storePath, { [VERIFY_ANNOTATIONS.verify]: "true" })) writeFileSync(join(optIn, f.file), f.text);
    expect((await fromEnv({ CNPG_ROTATOR_VERIFY: "false", CNPG_ROTATOR_MANIFESTS: optIn })).verify).toBeTypeOf("function");
  });

  it("AWS Secrets Manager (moto): AWSCURRENT never moves to the rejected password; the next rotation uses a new ClientRequestToken", async () => {
    const { namespace, original, reconciler } = await setup("never");
    const remoteKey = uniqueName("verify-aws");
    const set = seedManifests(namespace, awsStoreYaml(), pushSecretYaml("aws-backend", remoteKey));
    const config = { enabled: true, host: server.host, port: server.port, sslMode: "disable", timeoutMs: 3_000, initialDelayMs: 100 } as const;
    const { verify, tested } = recordingVerifier(config);
    const engine = engineFor(set, kube, { verify, rollbackOnVerifyFailure: true });
    const sm = new SecretsManagerClient({ region: "us-east-1" });
    const stage = async (label: string) => {
      const v = await sm.send(new GetSecretValueCommand({ SecretId: remoteKey, VersionStage: label }));
      const password = (JSON.parse(v.SecretString!) as { password: string }).password;
      seen.add(password);
      return { versionId: v.VersionId!, password };
    };

    const [failed] = await rotate(engine);
    expect(failed).toMatchObject({ outcome: "failed", rolledBack: true, error: { type: "VerificationError" } });
    const rejectedId = failed!.rotationId!;
    expect((await stage("AWSCURRENT")).password).toBe(original);
    const versions = await sm.send(new ListSecretVersionIdsCommand({ SecretId: remoteKey, IncludeDeprecated: true }));
    expect(versions.Versions!.some((v) => v.VersionStages?.includes("AWSPENDING"))).toBe(false);
    // AWS keeps the rejected version under its token, without a stage: that token is spent.
    expect(versions.Versions!.find((v) => v.VersionId === rejectedId)?.VersionStages ?? []).toEqual([]);
    const reuse = sm.send(new PutSecretValueCommand({ SecretId: remoteKey, ClientRequestToken: rejectedId, SecretString: '{"password":"another"}' }));
    await expect(reuse).rejects.toMatchObject({ name: "ResourceExistsException" });

    reconciler.setMode("apply");
    const [next] = await rotate(engine);
    expect(next).toMatchObject({ outcome: "rotated", rotationId: successorId(namespace, SECRET, await uidOf(namespace), rejectedId) });
    const password = (await secretNow(namespace)).data.password!;
    expect(password).not.toBe(tested[0]);
    expect(await stage("AWSCURRENT")).toEqual({ versionId: next!.rotationId, password });
    expect((await stage("AWSPREVIOUS")).password).toBe(original);
    expect(await login(password)).toMatchObject({ status: "ok" });
  });

  it("an address that does not resolve from here is reported as unreachable, with what to set", async () => {
    const { namespace, storePath, original } = await setup("apply");
    const set = manifests(namespace, storePath);
    // No host override: the Secret's own host, cluster-example-rw, which only resolves inside the cluster.
    const { verify } = recordingVerifier({ enabled: true, sslMode: "disable", timeoutMs: 2_000, initialDelayMs: 100 });
    const [failed] = await rotate(engineFor(set, kube, { verify, rollbackOnVerifyFailure: true }));
    expect(failed).toMatchObject({ outcome: "failed", rolledBack: true, error: { type: "VerificationError" } });
    expect(failed!.error!.message).toContain('to cluster-example-rw:5432/app');
    expect(failed!.error!.message).toContain("unreachable");
    expect(failed!.error!.message).toContain("CNPG_ROTATOR_VERIFY_HOST");
    expect((await secretNow(namespace)).data.password).toBe(original);
    expect(new VerificationError("x").rolledBack).toBe(false);
  });
});
