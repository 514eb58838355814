// The alternating strategy end to end against the real CloudNativePG operator and instance
// manager (test/infra/cnpg/harness.ts): two managed roles take turns behind one consumer Secret,
// the engine waits on the Cluster's passwordStatus, logs in as the idle role over verify-full
// with the CA of <cluster>-ca, then switches the consumer. Checked with real logins.
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { InputError } from "../../lib/errors.ts";
import type { KubernetesClient } from "../../lib/kubernetes/index.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import type { Step } from "../../lib/rotation/rotate.ts";
import { createVerifier } from "../../lib/rotation/verify.ts";
import { type CnpgClusterInfo, type CnpgHarness, startCnpg } from "../infra/cnpg/harness.ts";
import { kubeRequest } from "../infra/kube-client.ts";
import { adminClient, capturingLogger, engineFor, fileStoreYaml, pushSecretYaml, seedYaml, seenSecrets, tempDir } from "./support.ts";

const infra = inject("infra");
const b64 = (text: string) => Buffer.from(text).toString("base64");
const ROLES = ["app_blue", "app_green"] as const;
const roleSecret = (role: string) => `alt-${role.replace("app_", "")}`;
const CONSUMER = "alt-consumer";

let cnpg: CnpgHarness;
let cluster: CnpgClusterInfo;
let kube: KubernetesClient;
let ns: string;

function manifests(storePath: string, roles = `app_blue=${roleSecret("app_blue")}, app_green=${roleSecret("app_green")}`) {
  const es = `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: alt
  namespace: ${ns}
  annotations:
    cnpg-rotator.io/strategy: alternating
    cnpg-rotator.io/cluster: alt
    cnpg-rotator.io/roles: ${roles}
spec:
  refreshInterval: 24h
  target:
    name: ${CONSUMER}
    creationPolicy: Merge
    template:
      data:
        password: "{{ .password }}"
        uri: "postgresql://{{ .username }}:{{ .password }}@alt-rw.${ns}:5432/app"
  dataFrom:
    - sourceRef:
        generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: pg-password-generator}
`;
  return loadManifests(
    [seedYaml("password-generator.yaml"), es, fileStoreYaml(storePath), pushSecretYaml("local", CONSUMER, CONSUMER)].map((text, i) => ({ file: `m${i}.yaml`, text })),
    { namespace: ns },
  );
}

function engine(storePath: string, extra: Parameters<typeof engineFor>[2] = {}, roles?: string) {
  const verify = createVerifier(
    { enabled: true, host: cluster.host, port: 5432, sslMode: "verify-full", timeoutMs: 30_000, initialDelayMs: 100 },
    { log: capturingLogger(), readCa: async (namespace, name) => (await kube.readSecret(namespace, `${name}-ca`))?.data["ca.crt"] },
  );
  return engineFor(manifests(storePath, roles), kube, { verify, rollbackOnVerifyFailure: true, applyTimeoutMs: 30_000, ...extra });
}

async function consumer() {
  const s = (await kube.readSecret(ns, CONSUMER))!;
  seenSecrets.add(s.data.password!);
  return s;
}

async function rolePassword(role: string): Promise<string> {
  const p = (await kube.readSecret(ns, roleSecret(role)))!.data.password!;
  seenSecrets.add(p);
  return p;
}

async function login(user: string, password: string, sql = "SELECT current_user AS c"): Promise<{ ok: boolean; rows?: Record<string, unknown>[]; code?: string }> {
  const client = new pg.Client({
    host: cluster.host,
    port: 5432,
    user,
    password,
    database: "app",
    ssl: { ca: cluster.caPem, servername: cluster.tlsServerName, rejectUnauthorized: true },
    connectionTimeoutMillis: 5_000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return { ok: true, rows: (await client.query(sql)).rows };
  } catch (e) {
    return { ok: false, code: (e as { code?: string }).code ?? (e as Error).message };
  } finally {
    await client.end().catch(() => {});
  }
}

beforeAll(async () => {
  cnpg = await startCnpg(infra);
  ns = cnpg.namespace;
  kube = adminClient();
  for (const role of ROLES) {
    const password = `initial-${role}-${Math.random().toString(36).slice(2)}`;
    seenSecrets.add(password);
    const res = await kubeRequest(infra, `/api/v1/namespaces/${ns}/secrets`, {
      method: "POST",
      body: {
        apiVersion: "v1",
        kind: "Secret",
        type: "kubernetes.io/basic-auth",
        metadata: { name: roleSecret(role), labels: { "cnpg.io/reload": "true" } },
        data: { username: b64(role), password: b64(password) },
      },
    });
    expect(res.status).toBe(201);
  }
  cluster = await cnpg.createCluster(ns, "alt", {
    bootstrap: {
      initdb: {
        database: "app",
        owner: "app",
        postInitApplicationSQL: [...ROLES.map((r) => `CREATE ROLE ${r}`), ...ROLES.map((r) => `ALTER ROLE ${r} SET role = app`)],
      },
    },
    managed: {
      roles: ROLES.map((role) => ({ name: role, ensure: "present", login: true, inherit: true, inRoles: ["app"], passwordSecret: { name: roleSecret(role) } })),
    },
  });
  // The consumer Secret starts as a copy of CNPG's app Secret: applications on the owner until the first switch.
  const app = (await kube.readSecret(ns, "alt-app"))!;
  seenSecrets.add(app.data.password!);
  await kube.createSecret(ns, CONSUMER, { type: "kubernetes.io/basic-auth", data: app.data });
});

afterAll(async () => {
  await kube?.close();
  await cnpg?.stop();
});

describe("alternating rotation against the real CNPG", () => {
  it("alternates blue, green, blue; the consumer always logs in, the other role keeps working one more interval, objects stay shared", async () => {
    const store = join(tempDir(), "store.json");
    const e = engine(store);
    const seen: string[] = [];
    let previous: { user: string; password: string } | undefined;
    for (let i = 0; i < 3; i++) {
      const [result] = await rotate(e, { force: true });
      expect(result, JSON.stringify(result)).toMatchObject({ outcome: "rotated" });
      const c = await consumer();
      seen.push(c.data.username!);
      expect(c.data.user).toBe(c.data.username);
      // The consumer's credentials are its role's, applied by CNPG: a login works at once.
      expect(c.data.password).toBe(await rolePassword(c.data.username!));
      expect(await login(c.data.username!, c.data.password!)).toMatchObject({ ok: true, rows: [{ c: "app" }] });
      expect(new URL(c.data.uri!).username).toBe(c.data.username);
      expect(decodeURIComponent(new URL(c.data.uri!).password)).toBe(c.data.password);
      // The role applications used until now still works: nobody who has not re-read the Secret fails.
      if (previous) expect((await login(previous.user, previous.password)).ok).toBe(true);
      previous = { user: c.data.username!, password: c.data.password! };
    }
    expect(seen).toEqual(["app_blue", "app_green", "app_blue"]);

    // Objects created through one role are owned by app and usable through the other.
    const blue = await rolePassword("app_blue");
    const green = await rolePassword("app_green");
    expect((await login("app_blue", blue, "CREATE TABLE IF NOT EXISTS alt_made_by_blue (v int); INSERT INTO alt_made_by_blue VALUES (1)")).ok).toBe(true);
    expect((await login("app_green", green, "SELECT tableowner FROM pg_tables WHERE tablename = 'alt_made_by_blue'")).rows).toEqual([{ tableowner: "app" }]);
    expect((await login("app_green", green, "INSERT INTO alt_made_by_blue VALUES (2)")).ok).toBe(true);
    expect((await login("app_blue", blue, "SELECT count(*)::int AS n FROM alt_made_by_blue")).rows).toEqual([{ n: 2 }]);
  });

  for (const step of ["stage", "merge-role", "test", "switch", "promote"] as const satisfies readonly Step[]) {
    it(`a crash after ${step} converges with one role changed`, async () => {
      const store = join(tempDir(), "store.json");
      await rotate(engine(store), { force: true }); // the store is seeded and on some role
      const before = await consumer();
      const otherBefore = ROLES.find((r) => r !== before.data.username)!;
      const [crashed] = await rotate(
        engine(store, {
          afterStep: (s) => {
            if (s === step) throw new Error(`crash after ${s}`);
          },
        }),
        { force: true },
      );
      expect(crashed!.outcome).toBe("failed");
      const [next] = await rotate(engine(store));
      expect(["resumed", "not-due"]).toContain(next!.outcome);
      const after = await consumer();
      // Exactly one role changed: the one the consumer did not name; the consumer now names it.
      expect(after.data.username).toBe(otherBefore);
      expect((await login(after.data.username!, after.data.password!)).ok).toBe(true);
      expect(await rolePassword(before.data.username!)).toBe(before.data.password);
      expect((await login(before.data.username!, before.data.password!)).ok).toBe(true);
    });
  }

  it("5 concurrent invocations change one role", async () => {
    const store = join(tempDir(), "store.json");
    await rotate(engine(store), { force: true });
    const before = await consumer();
    const idleBefore = ROLES.find((r) => r !== before.data.username)!;
    const idlePassword = await rolePassword(idleBefore);
    // Due (two days on), not forced: duplicate scheduler deliveries racing each other.
    const later = new Date(Date.now() + 2 * 24 * 3600_000);
    const results = (await Promise.all(Array.from({ length: 5 }, () => rotate(engine(store, { now: () => later }))))).flat();
    expect(results.filter((r) => r.outcome === "rotated"), JSON.stringify(results.map((r) => r.outcome))).toHaveLength(1);
    expect(results.every((r) => ["rotated", "locked", "not-due"].includes(r.outcome))).toBe(true);
    const after = await consumer();
    expect(after.data.username).toBe(idleBefore);
    expect(await rolePassword(before.data.username!)).toBe(before.data.password); // the active role untouched
    expect(await rolePassword(idleBefore)).not.toBe(idlePassword);
    expect((await login(after.data.username!, after.data.password!)).ok).toBe(true);
  });

  it("bad input is refused naming it, with nothing written: a Cluster without such roles, a missing role Secret", async () => {
    const store = join(tempDir(), "store.json");
    const before = await consumer();
    const roles = await Promise.all(ROLES.map((r) => kube.readSecret(ns, roleSecret(r))));
    const [noSuchRoles] = await rotate(engine(store, {}, `app_red=${roleSecret("app_blue")}, app_green=${roleSecret("app_green")}`), { force: true }).catch(
      (e: unknown) => [{ outcome: "thrown", error: e as Error }] as const,
    );
    expect(noSuchRoles).toMatchObject({ error: expect.any(InputError) });
    expect((noSuchRoles as { error: Error }).error.message).toMatch(/spec\.managed\.roles has no role app_red/);
    const [missing] = await rotate(engine(store, {}, `app_blue=alt-nope, app_green=${roleSecret("app_green")}`), { force: true }).catch(
      (e: unknown) => [{ outcome: "thrown", error: e as Error }] as const,
    );
    expect((missing as { error: Error }).error.message).toMatch(/alt-nope does not exist|passwordSecret\.name is ""|passwordSecret.name/);
    // Nothing moved: the consumer, both role Secrets, no Lease for the consumer left behind.
    expect((await consumer()).resourceVersion).toBe(before.resourceVersion);
    for (const [i, r] of ROLES.entries()) expect((await kube.readSecret(ns, roleSecret(r)))!.resourceVersion).toBe(roles[i]!.resourceVersion);
  });
});
