// End to end: the seed's first example rotated against a real kube-apiserver,
// with the file store and with AWS Secrets Manager (moto).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { afterAll, describe, expect, inject, it, vi } from "vitest";
import { parseAllDocuments } from "yaml";
import { readJdbc, readPgpass, readUri } from "../../lib/cnpg/index.ts";
import { InputError } from "../../lib/errors.ts";
import { connectCluster, type KubernetesClient } from "../../lib/kubernetes/index.ts";
import { rotate, type StoreFactory } from "../../lib/rotation/engine.ts";
import { ANNOTATIONS, successorId, successorIds } from "../../lib/rotation/names.ts";
import { planRotations, wholeSecretJson } from "../../lib/rotation/plan.ts";
import type { RotationResult, Step } from "../../lib/rotation/rotate.ts";
import { storeFactory } from "../../lib/rotation/stores.ts";
import { resetEngine } from "../../triggers/invoke.ts";
import { kubeRequest } from "../infra/kube-client.ts";
import { issueClientCertificate, renderKubeconfig } from "../infra/servers.ts";
import {
  adminClient,
  awsRequests,
  awsStoreYaml,
  CNPG_ANNOTATIONS,
  CNPG_LABELS,
  createAppSecret,
  engineFor,
  fileStoreYaml,
  logLines,
  pushSecretYaml,
  seenSecrets,
  seedManifests,
  seedYaml,
  tempDir,
  uniqueName,
} from "./support.ts";

const infra = inject("infra");
const kube = adminClient();
const SECRET = "cluster-example-app";
/** Every password seen in this file; log-guard.ts checks none reached a log line. */
const seen = seenSecrets;

interface RawSecret {
  type: string;
  data: Record<string, string>;
  metadata: { labels?: Record<string, string>; annotations?: Record<string, string> };
}

async function raw(namespace: string, name = SECRET): Promise<{ status: number; body: RawSecret }> {
  return kubeRequest<RawSecret>(infra, `/api/v1/namespaces/${namespace}/secrets/${name}`);
}

const decode = (b64: string) => Buffer.from(b64, "base64").toString("utf8");

async function passwordOf(namespace: string): Promise<string> {
  const p = (await kube.readSecret(namespace, SECRET))!.data.password!;
  seen.add(p);
  return p;
}

interface FileStoreEntry {
  current?: { value: string; rotationId?: string; versionId: string };
  pending?: { value: string; rotationId?: string; versionId: string };
  previous?: { value: string; rotationId?: string; versionId: string };
}

/** The file store's state for a remote key, read straight from its file. */
function fileEntry(path: string, key = SECRET): FileStoreEntry | undefined {
  if (!existsSync(path)) return undefined;
  const doc = JSON.parse(readFileSync(path, "utf8")) as { secrets?: Record<string, FileStoreEntry> };
  const entry = doc.secrets?.[key];
  for (const v of [entry?.current, entry?.pending, entry?.previous]) {
    if (v) seen.add((JSON.parse(v.value) as { password: string }).password);
  }
  return entry;
}

const jsonPassword = (value: string | undefined) => (value ? (JSON.parse(value) as { password?: string }).password : undefined);

async function fileTarget(options: { reloadLabel?: boolean; createSecret?: boolean } = {}) {
  const namespace = uniqueName("rot");
  await kube.ensureNamespace(namespace);
  const storePath = join(tempDir(), "store.json");
  const manifests = seedManifests(namespace, fileStoreYaml(storePath), pushSecretYaml("local", SECRET));
  if (options.createSecret !== false) {
    const created = await createAppSecret(kube, namespace, options);
    seen.add(created.data.password!);
  }
  return { namespace, storePath, manifests };
}

describe("rotate: the seed's first example with the file store", () => {
  it("writes the new password into every derived key, correctly encoded, and nothing else", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    const before = (await raw(namespace)).body;

    const [result] = await rotate(engineFor(manifests, kube));
    expect(result).toMatchObject({ outcome: "rotated", target: `${namespace}/${SECRET}` });
    const after = (await raw(namespace)).body;
    const password = decode(after.data.password!);
    seen.add(password);
    expect(password).not.toBe(decode(before.data.password!));
    expect(password).toHaveLength(42);

    // Templated and derived keys hold the new password, each read back as a client would.
    const uri = new URL(decode(after.data.uri!));
    expect([decodeURIComponent(uri.username), decodeURIComponent(uri.password)]).toEqual(["app", password]);
    expect(readUri(decode(after.data.uri!))).toMatchObject({ user: "app", password, host: "cluster-example-rw.default" });
    for (const key of ["fqdn-uri"]) expect(readUri(decode(after.data[key]!))).toMatchObject({ user: "app", password });
    for (const key of ["jdbc-uri", "fqdn-jdbc-uri"]) {
      const jdbc = decode(after.data[key]!);
      expect(readJdbc(jdbc)).toMatchObject({ user: "app", password });
      expect(new URLSearchParams(jdbc.slice(jdbc.indexOf("?") + 1)).get("password")).toBe(password);
    }
    expect(readPgpass(decode(after.data.pgpass!))).toMatchObject({ host: "cluster-example-rw", user: "app", password });
    expect(readUri(decode(after.data["fqdn-uri"]!)).host).toBe(`cluster-example-rw.${namespace}.svc.cluster.local`);

    // Everything else is byte for byte what CNPG wrote.
    for (const key of ["username", "user", "host", "port", "dbname"]) expect(after.data[key]).toBe(before.data[key]);
    expect(Object.keys(after.data).sort()).toEqual(Object.keys(before.data).sort());
    expect(after.type).toBe("kubernetes.io/basic-auth");
    expect(after.metadata.labels).toEqual({ ...CNPG_LABELS, "cnpg.io/reload": "true" });
    for (const [k, v] of Object.entries(CNPG_ANNOTATIONS)) expect(after.metadata.annotations![k]).toBe(v);
    expect(after.metadata.annotations![ANNOTATIONS.rotationId]).toBe(result!.rotationId);
    expect([...result!.changedKeys!].sort()).toEqual(["fqdn-jdbc-uri", "fqdn-uri", "jdbc-uri", "password", "pgpass", "uri"]);

    // The seed's own check, through kubectl.
    const viaKubectl = execFileSync(
      "kubectl",
      ["--kubeconfig", infra.kubeconfigPath, "-n", namespace, "get", "secret", SECRET, "-o", "jsonpath={.data.password}"],
      { encoding: "utf8" },
    );
    expect(decode(viaKubectl)).toBe(password);
    const label = execFileSync(
      "kubectl",
      ["--kubeconfig", infra.kubeconfigPath, "-n", namespace, "get", "secret", SECRET, "-o", "jsonpath={.metadata.labels.cnpg\\.io/reload}"],
      { encoding: "utf8" },
    );
    expect(label).toBe("true");

    // The store: current is the whole Secret as it is now, previous as it was.
    const entry = fileEntry(storePath)!;
    expect(JSON.parse(entry.current!.value)).toEqual(Object.fromEntries(Object.entries(after.data).map(([k, v]) => [k, decode(v)])));
    expect(entry.current!.rotationId).toBe(result!.rotationId);
    expect(jsonPassword(entry.previous?.value)).toBe(decode(before.data.password!));
    expect(entry.pending).toBeUndefined();
  });

  it("refuses a missing Secret under Merge and writes nothing anywhere", async () => {
    const { namespace, storePath, manifests } = await fileTarget({ createSecret: false });
    const [result] = await rotate(engineFor(manifests, kube));
    expect(result).toMatchObject({ outcome: "failed", error: { type: "SecretMissingError" } });
    expect(result!.error!.message).toContain(`Secret ${namespace}/${SECRET} does not exist`);
    expect((await raw(namespace)).status).toBe(404);
    const lease = await kubeRequest(infra, `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`);
    expect((lease.body as { items: unknown[] }).items).toEqual([]);
    expect(fileEntry(storePath)).toBeUndefined();
  });

  it("the same scheduled event twice rotates once", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    const engine = engineFor(manifests, kube);
    const [first] = await rotate(engine);
    const password = await passwordOf(namespace);
    const [second] = await rotate(engine);
    expect(first!.outcome).toBe("rotated");
    expect(second).toMatchObject({ outcome: "not-due", rotationId: first!.rotationId, reason: "not due yet" });
    expect(await passwordOf(namespace)).toBe(password);
    expect(jsonPassword(fileEntry(storePath)!.current!.value)).toBe(password);
  });

  it("5 concurrent invocations on one target make exactly one new password", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    const original = await passwordOf(namespace);
    const results = (await Promise.all(Array.from({ length: 5 }, () => rotate(engineFor(manifests, kube))))).flat();
    const outcomes = results.map((r) => r.outcome);
    expect(outcomes.filter((o) => o === "rotated")).toHaveLength(1);
    expect(outcomes.every((o) => ["rotated", "locked", "not-due"].includes(o))).toBe(true);
    const password = await passwordOf(namespace);
    expect(password).not.toBe(original);
    const entry = fileEntry(storePath)!;
    expect(jsonPassword(entry.current!.value)).toBe(password);
    expect(jsonPassword(entry.previous!.value)).toBe(original);
  });

  for (const step of ["stage", "merge", "test", "promote"] as const satisfies readonly Step[]) {
    it(`converges after a crash after ${step}, with the same password and no second one`, async () => {
      const { namespace, storePath, manifests } = await fileTarget();
      const original = await passwordOf(namespace);
      const crash = (s: Step) => {
        if (s === step) throw new Error(`simulated crash after ${s}`);
      };
      const [crashed] = await rotate(engineFor(manifests, kube, { afterStep: crash }));
      expect(crashed).toMatchObject({ outcome: "failed", error: { message: `simulated crash after ${step}` } });
      const staged = fileEntry(storePath)!;
      const stagedPassword = jsonPassword((staged.pending ?? staged.current)!.value)!;
      expect(stagedPassword).not.toBe(original);
      if (step === "stage") expect(await passwordOf(namespace)).toBe(original); // the Secret did not change yet
      if (step !== "stage" && step !== "promote") expect(await passwordOf(namespace)).toBe(stagedPassword);

      const [next] = await rotate(engineFor(manifests, kube));
      // After promote there is nothing left to do; before it, the run resumes the same rotation.
      expect(next!.outcome).toBe(step === "promote" ? "not-due" : "resumed");
      const password = await passwordOf(namespace);
      expect(password).toBe(stagedPassword);
      const entry = fileEntry(storePath)!;
      expect(jsonPassword(entry.current!.value)).toBe(password);
      expect(jsonPassword(entry.previous!.value)).toBe(original);
      expect(entry.pending).toBeUndefined();
      expect((await kube.readSecret(namespace, SECRET))!.annotations[ANNOTATIONS.rotationId]).toBe(next!.rotationId);

      const [again] = await rotate(engineFor(manifests, kube));
      expect(again!.outcome).toBe("not-due");
    });
  }

  it("a concurrent change to another key between read and write survives (409 path)", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    let other: KubernetesClient | undefined = adminClient();
    const [result] = await rotate(
      engineFor(manifests, kube, {
        afterStep: async (s) => {
          if (s !== "stage" || !other) return;
          // Another writer changes the Secret after the engine read it and before it merges.
          await other.updateSecret(namespace, SECRET, () => ({ data: { "app-note": "written meanwhile" } }));
          other = undefined;
        },
      }),
    );
    expect(result).toMatchObject({ outcome: "rotated", conflicts: 1 });
    const secret = (await kube.readSecret(namespace, SECRET))!;
    seen.add(secret.data.password!);
    expect(secret.data["app-note"]).toBe("written meanwhile");
    expect(readUri(secret.data.uri!).password).toBe(secret.data.password);
    // The store carries the Secret as it finally is, the other writer's key included.
    const current = JSON.parse(fileEntry(storePath)!.current!.value) as Record<string, string>;
    expect(current["app-note"]).toBe("written meanwhile");
    expect(current.password).toBe(secret.data.password);
  });

  it("a run whose Lease other runs held just before goes on from the Secret as it is when it takes the Lease", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    expect((await rotate(engineFor(manifests, kube)))[0]!.outcome).toBe("rotated");
    // Just before this run looks at its Lease, two forced runs rotate the target in turn.
    let others = 2;
    const late = new Proxy(kube, {
      get(target, prop) {
        if (prop === "acquireLease") {
          return async (...args: Parameters<KubernetesClient["acquireLease"]>) => {
            for (; others > 0; others--) expect((await rotate(engineFor(manifests, kube), { force: true }))[0]!.outcome).toBe("rotated");
            return target.acquireLease(...args);
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const [result] = await rotate(engineFor(manifests, late), { force: true });
    const password = await passwordOf(namespace);
    // Decided on the Secret it first read, the run would publish that Secret's password over the newest rotation's.
    expect(jsonPassword(fileEntry(storePath)!.current!.value)).toBe(password);
    expect(result).toMatchObject({ outcome: "rotated", fingerprint: expect.any(String) });
    expect((await kube.readSecret(namespace, SECRET))!.annotations[ANNOTATIONS.rotationId]).toBe(result!.rotationId);
  });

  it("a run that read the Secret before other runs rotated it writes nothing: its Lease write loses to theirs", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    expect((await rotate(engineFor(manifests, kube)))[0]!.outcome).toBe("rotated");
    // Between this run's read of the Secret (after its look at the Lease) and its write of the
    // Lease, two forced runs rotate the target in turn: what it read is stale by then.
    let others = 2;
    let reads = 0;
    const late = new Proxy(kube, {
      get(target, prop) {
        if (prop === "readSecret") {
          return async (...args: Parameters<KubernetesClient["readSecret"]>) => {
            const read = await target.readSecret(...args);
            if (args[1] === SECRET && reads++ === 0) {
              for (; others > 0; others--) expect((await rotate(engineFor(manifests, kube), { force: true }))[0]!.outcome).toBe("rotated");
            }
            return read;
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const before = await kube.readSecret(namespace, SECRET);
    const [result] = await rotate(engineFor(manifests, late), { force: true });
    expect(others).toBe(0);
    const after = (await kube.readSecret(namespace, SECRET))!;
    // Decided on the Secret it read, the run would rotate the first rotation's successor id again
    // or publish that Secret's password over the newest rotation's.
    expect(result).toMatchObject({ outcome: "locked" });
    expect(after.annotations[ANNOTATIONS.rotationId]).not.toBe(before!.annotations[ANNOTATIONS.rotationId]);
    expect(jsonPassword(fileEntry(storePath)!.current!.value)).toBe(after.data.password);
    // The next run finds the Lease free and nothing to do.
    expect((await rotate(engineFor(manifests, kube)))[0]).toMatchObject({ outcome: "not-due", rotationId: after.annotations[ANNOTATIONS.rotationId] });
  });

  it("dry run reports what would change and writes nothing", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    const before = (await raw(namespace)).body;
    const [result] = await rotate(engineFor(manifests, kube), { dryRun: true });
    expect(result).toMatchObject({ outcome: "dry-run", reason: "would rotate (never rotated)" });
    expect(result!.changedKeys).toEqual(["password", "pgpass", "jdbc-uri", "uri", "fqdn-uri", "fqdn-jdbc-uri"]);
    expect((await raw(namespace)).body).toEqual(before);
    expect(fileEntry(storePath)).toBeUndefined();
  });
});

describe("rotate: ids of releases before the Secret's uid was part of them", () => {
  it("a rotation staged under the old derivation resumes with its password", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    const secret = (await kube.readSecret(namespace, SECRET))!;
    // What an earlier release staged before it crashed: the id it derived without the uid.
    const [current, legacy] = successorIds(namespace, SECRET, secret.uid, undefined);
    const staged = `legacy-staged-${randomBytes(12).toString("hex")}`;
    seen.add(staged);
    const [target] = planRotations(manifests);
    const store = await storeFactory()(target!.publications[0]!.store, { kube });
    await store.push(SECRET, wholeSecretJson(secret.data));
    await store.stage(SECRET, wholeSecretJson({ ...secret.data, password: staged }), legacy, await store.observe(SECRET));

    const [result] = await rotate(engineFor(manifests, kube));
    // Staged everywhere already: what is left of it is the merge.
    expect(result).toMatchObject({ outcome: "resumed", resumedAt: "merge", rotationId: legacy });
    expect(result!.rotationId).not.toBe(current);
    expect(await passwordOf(namespace)).toBe(staged);
    expect(jsonPassword(fileEntry(storePath)!.current!.value)).toBe(staged);
    // The next rotation derives from it with the uid.
    const [next] = await rotate(engineFor(manifests, kube), { force: true });
    expect(next!.rotationId).toBe(successorId(namespace, SECRET, secret.uid, legacy));
    await passwordOf(namespace);
  });
});

describe("rotate: AWS Secrets Manager (moto)", () => {
  const sm = new SecretsManagerClient({ region: "us-east-1" });
  const value = async (id: string, stage: string) =>
    (await sm.send(new GetSecretValueCommand({ SecretId: id, VersionStage: stage }))).SecretString!;

  it("AWSCURRENT holds the Secret's password, the old one is AWSPREVIOUS", async () => {
    const namespace = uniqueName("aws");
    const remoteKey = uniqueName("cluster-example-app");
    await kube.ensureNamespace(namespace);
    const original = (await createAppSecret(kube, namespace)).data.password!;
    seen.add(original);
    const manifests = seedManifests(namespace, awsStoreYaml(), pushSecretYaml("aws-backend", remoteKey));
    const [result] = await rotate(engineFor(manifests, kube));
    expect(result).toMatchObject({ outcome: "rotated", stores: [{ provider: "aws", remoteKey }] });
    const password = await passwordOf(namespace);
    expect(jsonPassword(await value(remoteKey, "AWSCURRENT"))).toBe(password);
    expect(jsonPassword(await value(remoteKey, "AWSPREVIOUS"))).toBe(original);
    const versions = await sm.send(new ListSecretVersionIdsCommand({ SecretId: remoteKey }));
    const pending = versions.Versions!.filter((v) => v.VersionStages?.includes("AWSPENDING"));
    expect(pending).toEqual([]);
    const current = versions.Versions!.find((v) => v.VersionStages?.includes("AWSCURRENT"))!;
    expect(current.VersionId).toBe(result!.rotationId);
  });

  it("a scheduled rotation sends at most 5 AWS requests and 10 in all (the protocol's minimum is 5 + 5: the stage's fence is one DescribeSecret, the Secret is read once, between the Lease's GET and its write)", async () => {
    const namespace = uniqueName("aws");
    const remoteKey = uniqueName("cluster-example-app");
    await kube.ensureNamespace(namespace);
    seen.add((await createAppSecret(kube, namespace)).data.password!);
    const manifests = seedManifests(namespace, awsStoreYaml(), pushSecretYaml("aws-backend", remoteKey));
    // The first rotation also creates the remote secret; the next, once due, is the steady state.
    const [first] = await rotate(engineFor(manifests, kube));
    expect(first!.outcome).toBe("rotated");
    await passwordOf(namespace);

    const counted = adminClient();
    const later = new Date(Date.now() + 2 * 24 * 3600_000);
    const kubeBefore = counted.requestCount;
    const { result: [result], ops } = await awsRequests(() => rotate(engineFor(manifests, counted, { now: () => later })));
    const kubeRequests = counted.requestCount - kubeBefore;
    expect(result).toMatchObject({ outcome: "rotated", stores: [{ provider: "aws", remoteKey }] });
    const password = await passwordOf(namespace);
    expect(jsonPassword(await value(remoteKey, "AWSCURRENT"))).toBe(password);
    expect(ops.length, ops.join(", ")).toBeLessThanOrEqual(5);
    expect(kubeRequests, `${kubeRequests} Kubernetes`).toBeLessThanOrEqual(5);
    expect(ops.length + kubeRequests, `${ops.join(", ")} + ${kubeRequests} Kubernetes`).toBeLessThanOrEqual(10);
    // No value is read back: the state comes from DescribeSecret, the values are the ones written.
    expect(ops).not.toContain("GetSecretValue");
    await counted.close();
  });

  it("a Secret deleted and created again (a restored cluster) rotates under new ids, never replaying the old object's tokens", async () => {
    const namespace = uniqueName("aws");
    const remoteKey = uniqueName("cluster-example-app");
    await kube.ensureNamespace(namespace);
    seen.add((await createAppSecret(kube, namespace)).data.password!);
    const manifests = seedManifests(namespace, awsStoreYaml(), pushSecretYaml("aws-backend", remoteKey));
    const later = new Date(Date.now() + 2 * 24 * 3600_000);
    const [one] = await rotate(engineFor(manifests, kube));
    const [two] = await rotate(engineFor(manifests, kube, { now: () => later }));
    expect([one!.outcome, two!.outcome]).toEqual(["rotated", "rotated"]);
    await passwordOf(namespace);

    await kube.deleteSecret(namespace, SECRET);
    seen.add((await createAppSecret(kube, namespace)).data.password!);
    const [again] = await rotate(engineFor(manifests, kube));
    expect(again).toMatchObject({ outcome: "rotated" });
    expect([one!.rotationId, two!.rotationId]).not.toContain(again!.rotationId);
    // The rotation's own version (its ClientRequestToken) holds this Secret's new password, and is current.
    const password = await passwordOf(namespace);
    const own = await sm.send(new GetSecretValueCommand({ SecretId: remoteKey, VersionId: again!.rotationId }));
    expect(jsonPassword(own.SecretString)).toBe(password);
    expect(jsonPassword(await value(remoteKey, "AWSCURRENT"))).toBe(password);
    const versions = await sm.send(new ListSecretVersionIdsCommand({ SecretId: remoteKey }));
    expect(versions.Versions!.filter((v) => v.VersionStages?.includes("AWSCURRENT")).map((v) => v.VersionId)).toEqual([again!.rotationId]);
  });

  it("refuses a remote secret without our tag and leaves it and the Secret untouched", async () => {
    const namespace = uniqueName("aws");
    const remoteKey = uniqueName("foreign");
    await kube.ensureNamespace(namespace);
    const original = (await createAppSecret(kube, namespace)).data.password!;
    seen.add(original);
    await sm.send(new CreateSecretCommand({ Name: remoteKey, SecretString: '{"password":"theirs"}' }));
    const manifests = seedManifests(namespace, awsStoreYaml(), pushSecretYaml("aws-backend", remoteKey));
    const [result] = await rotate(engineFor(manifests, kube));
    expect(result).toMatchObject({ outcome: "failed", error: { type: "OwnershipError" } });
    expect(result!.error!.message).toContain(remoteKey);
    expect(await value(remoteKey, "AWSCURRENT")).toBe('{"password":"theirs"}');
    const versions = await sm.send(new ListSecretVersionIdsCommand({ SecretId: remoteKey }));
    expect(versions.Versions).toHaveLength(1);
    expect(await passwordOf(namespace)).toBe(original);
  });
});


interface RawLease {
  metadata: { resourceVersion: string };
  spec: { holderIdentity?: string; acquireTime?: string; renewTime?: string; leaseTransitions?: number; leaseDurationSeconds?: number };
}

/** The target's Lease as the API server has it (status 404 when there is none). */
function leaseOf(namespace: string): Promise<{ status: number; body: RawLease }> {
  return kubeRequest<RawLease>(infra, `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/cnpg-rotator-${SECRET}`);
}

/** The real store factory, with stage refusing the value as bad input, as a store refusing a name or a size does. */
const refusingStores: StoreFactory = async (store, context) => {
  const real = await storeFactory()(store, context);
  return new Proxy(real, {
    get(target, key) {
      if (key === "stage") return () => Promise.reject(new InputError("the store refuses this value (test)"));
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
};

describe("rotate: exit 2 writes nothing, the Lease included", () => {
  it("a template the Secret's data refuses (its user differs from the URI's) is refused before the Lease: no Lease, Secret and store untouched", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    await kube.updateSecret(namespace, SECRET, () => ({ data: { username: "bob" } }));
    const before = (await raw(namespace)).body;
    const error: Error = await rotate(engineFor(manifests, kube)).catch((e) => e);
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toMatch(/user differs/);
    expect((await leaseOf(namespace)).status).toBe(404);
    expect((await raw(namespace)).body).toEqual(before);
    expect(fileEntry(storePath)).toBeUndefined();
  });

  it("a store that cannot be built (the seed's Vault store without its token Secret) is refused before the Lease", async () => {
    const namespace = uniqueName("rot");
    await kube.ensureNamespace(namespace);
    seen.add((await createAppSecret(kube, namespace)).data.password!);
    const vaultStore = seedYaml("vault-secret-store.yaml").split("\n---\n")[0]!;
    const manifests = seedManifests(namespace, vaultStore, pushSecretYaml("vault-backend", SECRET));
    await expect(rotate(engineFor(manifests, kube))).rejects.toThrow(/tokenSecretRef: Secret .*\/vault-token not found/);
    expect((await leaseOf(namespace)).status).toBe(404);
  });

  it("a Lease left by an earlier run is not moved by a refused run, to its resourceVersion", async () => {
    const { namespace, manifests } = await fileTarget();
    expect((await rotate(engineFor(manifests, kube)))[0]!.outcome).toBe("rotated");
    await passwordOf(namespace);
    const lease = await leaseOf(namespace);
    expect(lease.status).toBe(200);
    await kube.updateSecret(namespace, SECRET, () => ({ data: { username: "bob" } }));
    await expect(rotate(engineFor(manifests, kube), { force: true })).rejects.toThrow(/user differs/);
    expect((await leaseOf(namespace)).body).toEqual(lease.body);
  });

  it("bad input found only under the Lease puts the Lease back as found: deleted if the run created it, its spec as it was if not", async () => {
    const { namespace, manifests } = await fileTarget();
    const refusing = engineFor(manifests, kube, { createStore: refusingStores });
    await expect(rotate(refusing)).rejects.toThrow(/the store refuses this value/);
    expect((await leaseOf(namespace)).status).toBe(404);

    expect((await rotate(engineFor(manifests, kube)))[0]!.outcome).toBe("rotated");
    await passwordOf(namespace);
    const lease = (await leaseOf(namespace)).body;
    await expect(rotate(refusing, { force: true })).rejects.toThrow(/the store refuses this value/);
    expect((await leaseOf(namespace)).body.spec).toEqual(lease.spec);
    // And the next run takes it as usual.
    expect((await rotate(engineFor(manifests, kube), { force: true }))[0]!.outcome).toBe("rotated");
    await passwordOf(namespace);
  });
});

describe("rotate: RBAC as shipped in deploy/rbac.yaml", () => {
  async function applyRbac(namespace: string, drop?: { resource: string; verb: string }) {
    const docs = parseAllDocuments(readFileSync(join(import.meta.dirname, "../../deploy/rbac.yaml"), "utf8")).map(
      (d) => d.toJS() as { kind: string; metadata: { namespace?: string }; rules?: { resources: string[]; verbs: string[] }[] },
    );
    for (const doc of docs.filter(Boolean)) {
      doc.metadata.namespace = namespace;
      if (doc.kind === "Role" && drop) {
        for (const rule of doc.rules ?? []) {
          if (rule.resources.includes(drop.resource)) rule.verbs = rule.verbs.filter((v) => v !== drop.verb);
        }
      }
      const plural = doc.kind === "Role" ? "roles" : "rolebindings";
      const r = await kubeRequest(infra, `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/${plural}`, {
        method: "POST",
        body: doc,
      });
      expect(r.status).toBe(201);
    }
  }

  async function asRotator(): Promise<KubernetesClient> {
    const cert = await issueClientCertificate(infra, "cnpg-rotator");
    return connectCluster({ kubeconfigYaml: renderKubeconfig(infra, { user: "cnpg-rotator", clientCertificate: cert }) });
  }

  it("works with exactly the shipped Role", async () => {
    const { namespace, manifests } = await fileTarget();
    await applyRbac(namespace);
    const [result] = await rotate(engineFor(manifests, await asRotator()));
    expect(result!.outcome).toBe("rotated");
    await passwordOf(namespace);
  });

  it("a run refused under the Lease deletes the Lease it created, or without the verb delete releases it", async () => {
    const shipped = await fileTarget();
    await applyRbac(shipped.namespace);
    await expect(rotate(engineFor(shipped.manifests, await asRotator(), { createStore: refusingStores }))).rejects.toThrow(InputError);
    expect((await leaseOf(shipped.namespace)).status).toBe(404);

    const older = await fileTarget();
    await applyRbac(older.namespace, { resource: "leases", verb: "delete" });
    await expect(rotate(engineFor(older.manifests, await asRotator(), { createStore: refusingStores }))).rejects.toThrow(InputError);
    const lease = await leaseOf(older.namespace);
    expect(lease.status).toBe(200);
    expect(lease.body.spec.holderIdentity).toBeUndefined();
  });

  it("with less, fails naming the missing permission and changes nothing", async () => {
    const { namespace, storePath, manifests } = await fileTarget();
    const original = await passwordOf(namespace);
    await applyRbac(namespace, { resource: "secrets", verb: "patch" });
    const [result] = await rotate(engineFor(manifests, await asRotator()));
    expect(result).toMatchObject({ outcome: "failed", error: { type: "PermissionError" } });
    expect(result!.error!.message).toMatch(/cannot patch secrets "cluster-example-app".*grant verb patch on secrets/);
    expect(await passwordOf(namespace)).toBe(original);
    // Staged but never merged: the store's current value is still the password the database has.
    expect(jsonPassword(fileEntry(storePath)!.current!.value)).toBe(original);
  });
});

describe("rotate: the AWS Lambda handler", () => {
  it("rotates on a scheduled event, then reports not-due; returns fingerprints, never values", async () => {
    const { namespace, storePath } = await fileTarget();
    const dir = tempDir();
    for (const f of ["password-generator.yaml", "external-secret.yaml"]) writeFileSync(join(dir, f), seedYaml(f));
    writeFileSync(join(dir, "store.yaml"), fileStoreYaml(storePath));
    writeFileSync(join(dir, "push.yaml"), pushSecretYaml("local", SECRET));
    vi.stubEnv("CNPG_ROTATOR_MANIFESTS", dir);
    vi.stubEnv("CNPG_ROTATOR_NAMESPACE", namespace);
    vi.stubEnv("CNPG_ROTATOR_KUBECONFIG", readFileSync(infra.kubeconfigPath, "utf8"));
    resetEngine();
    const { handler } = await import("../../functions/aws/rotate.ts");
    const scheduled = {
      version: "0",
      id: "5f6e7d8c-1a2b-3c4d-5e6f-7a8b9c0d1e2f",
      "detail-type": "Scheduled Event",
      source: "aws.events",
      account: "123456789012",
      time: new Date().toISOString(),
      region: "us-east-1",
      resources: ["arn:aws:events:us-east-1:123456789012:rule/cnpg-rotator"],
      detail: {},
    };
    const first = await handler(scheduled);
    const second = await handler(scheduled);
    vi.unstubAllEnvs();
    resetEngine();
    expect(first).toMatchObject({ ok: true, trigger: "schedule", results: [{ outcome: "rotated" }] });
    expect(second).toMatchObject({ ok: true, trigger: "schedule", results: [{ outcome: "not-due" }] });
    const password = await passwordOf(namespace);
    const text = JSON.stringify([first, second]);
    expect(text).not.toContain(password);
    expect((first.results[0] as RotationResult).fingerprint).toMatch(/^sha256:[0-9a-f]{16}$/);

    const bad = await handler({ target: "Not A Target" });
    expect(bad).toMatchObject({ ok: false, error: { type: "InputError" } });
  });
});

afterAll(() => {
  // The guard (log-guard.ts) can only catch a leak if there were lines and passwords to compare.
  if (seen.size > 10) expect(logLines.filter((l) => l.includes('"msg":"rotation finished"')).length).toBeGreaterThan(5);
});
