// The CNPG test harness (test/infra/cnpg/harness.ts) against the real operator and instance
// manager: what later tests rely on — a healthy Cluster, CNPG's Secrets, the status fields
// that say a password was applied, managed roles, postInitApplicationSQL — and that it
// leaves nothing behind. Everything checked here is done by CNPG itself, not by the harness.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { kubeRequest } from "../infra/kube-client.ts";
import { type CnpgClusterInfo, type CnpgHarness, startCnpg } from "../infra/cnpg/harness.ts";
import { seenSecrets } from "./support.ts";

const infra = inject("infra");
const b64 = (text: string) => Buffer.from(text).toString("base64");
const unb64 = (text: string | undefined) => Buffer.from(text ?? "", "base64").toString("utf8");
const newPassword = () => {
  const password = randomBytes(18).toString("base64url");
  seenSecrets.add(password);
  return password;
};

interface SecretObject {
  metadata: { name: string; resourceVersion: string; labels?: Record<string, string> };
  type?: string;
  data?: Record<string, string>;
}

async function getSecret(namespace: string, name: string): Promise<SecretObject> {
  const res = await kubeRequest<SecretObject>(infra, `/api/v1/namespaces/${namespace}/secrets/${name}`);
  if (res.status !== 200) throw new Error(`Secret ${namespace}/${name}: HTTP ${res.status}`);
  return res.body;
}

/** Sets `password` in a Secret with CNPG's reload label, as the rotator does; returns the new resourceVersion. */
async function writePassword(namespace: string, name: string, password: string): Promise<string> {
  const res = await kubeRequest<SecretObject>(infra, `/api/v1/namespaces/${namespace}/secrets/${name}`, {
    method: "PATCH",
    contentType: "application/merge-patch+json",
    body: { metadata: { labels: { "cnpg.io/reload": "true" } }, data: { password: b64(password) } },
  });
  if (res.status !== 200) throw new Error(`patching Secret ${namespace}/${name}: HTTP ${res.status}`);
  return res.body.metadata.resourceVersion;
}

type Login = "ok" | "refused" | `error: ${string}`;

/** One login over TLS, verify-full against the cluster's CA with `<cluster>-rw` as the server name. */
async function login(cluster: CnpgClusterInfo, user: string, password: string, sql = "SELECT 1"): Promise<{ result: Login; rows?: Record<string, unknown>[] }> {
  const client = new pg.Client({
    host: cluster.host,
    port: cluster.port,
    user,
    password,
    database: "app",
    ssl: { ca: cluster.caPem, servername: cluster.tlsServerName, rejectUnauthorized: true },
    connectionTimeoutMillis: 5_000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    const res = await client.query(sql);
    return { result: "ok", rows: res.rows };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "28P01" || code === "28000") return { result: "refused" };
    return { result: `error: ${code ?? (error as Error).message}` };
  } finally {
    await client.end().catch(() => {});
  }
}

/** Polls until the old password is refused; returns how long that took after `since`. */
async function waitRefused(cluster: CnpgClusterInfo, user: string, password: string, since: number): Promise<number> {
  for (;;) {
    const { result } = await login(cluster, user, password);
    if (result === "refused") return Date.now() - since;
    if (Date.now() - since > 30_000) throw new Error(`the old password of ${user} still works 30s after the Secret write (last: ${result})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

let cnpg: CnpgHarness;
let plain: CnpgClusterInfo;
let paired: CnpgClusterInfo;

// The two login roles of the alternating strategy, members of the application owner `app`,
// each with its passwordSecret; postInitApplicationSQL creates them first (it runs at initdb,
// before the instance manager creates managed roles) so that it can give each the one-time
// `SET role = app` that makes what they create belong to `app`.
const ROLES = ["app_blue", "app_green"] as const;
const rolePasswords = new Map<string, string>();
const secretOf = (role: string) => `pair-${role.replace("app_", "")}`;

beforeAll(async () => {
  cnpg = await startCnpg(infra);
  const ns = cnpg.namespace;
  for (const role of ROLES) {
    const password = newPassword();
    rolePasswords.set(role, password);
    const res = await kubeRequest(infra, `/api/v1/namespaces/${ns}/secrets`, {
      method: "POST",
      body: {
        apiVersion: "v1",
        kind: "Secret",
        type: "kubernetes.io/basic-auth",
        metadata: { name: secretOf(role), labels: { "cnpg.io/reload": "true" } },
        data: { username: b64(role), password: b64(password) },
      },
    });
    expect(res.status).toBe(201);
  }
  [plain, paired] = await Promise.all([
    cnpg.createCluster(ns, "plain", { enableSuperuserAccess: true }),
    cnpg.createCluster(ns, "pair", {
      bootstrap: {
        initdb: {
          database: "app",
          owner: "app",
          postInitApplicationSQL: [
            ...ROLES.map((role) => `CREATE ROLE ${role}`),
            ...ROLES.map((role) => `ALTER ROLE ${role} SET role = app`),
          ],
        },
      },
      managed: {
        roles: ROLES.map((role) => ({
          name: role,
          ensure: "present",
          login: true,
          inherit: true,
          inRoles: ["app"],
          passwordSecret: { name: secretOf(role) },
        })),
      },
    }),
  ]);
  if (plain.superuser) seenSecrets.add(plain.superuser.password);
  for (const cluster of [plain, paired]) seenSecrets.add(unb64((await getSecret(ns, cluster.appSecretName)).data?.password));
  console.error(`[cnpg.test] healthy after ${(plain.readyMs / 1000).toFixed(1)}s and ${(paired.readyMs / 1000).toFixed(1)}s (created together)`);
});

afterAll(async () => {
  await cnpg?.stop();
});

describe("the real CloudNativePG, run by the harness", () => {
  it("makes a one-instance Cluster healthy, with the Secrets CNPG creates and PostgreSQL 15 behind TLS", async () => {
    const ns = cnpg.namespace;
    const cluster = await cnpg.getCluster(ns, "plain");
    expect(cluster.status?.phase).toBe("Cluster in healthy state");
    expect(cluster.status?.readyInstances).toBe(1);
    expect(cluster.status?.currentPrimary).toBe("plain-1");

    const app = await getSecret(ns, "plain-app");
    expect(app.type).toBe("kubernetes.io/basic-auth");
    expect(unb64(app.data?.username)).toBe("app");
    expect(Object.keys(app.data ?? {})).toEqual(expect.arrayContaining(["password", "uri", "jdbc-uri", "pgpass", "host", "dbname"]));
    expect((await getSecret(ns, "plain-ca")).data?.["ca.crt"]).toBeTruthy();
    expect(unb64((await getSecret(ns, "plain-superuser")).data?.username)).toBe("postgres");
    expect(plain.superuser?.username).toBe("postgres");
    // No superuser Secret where it is not enabled (CNPG's default).
    expect((await kubeRequest(infra, `/api/v1/namespaces/${ns}/secrets/pair-superuser`)).status).toBe(404);

    // The initdb Job ran to completion and the instance pod is Ready at the address we use.
    const job = await kubeRequest<{ status?: { succeeded?: number } }>(infra, `/apis/batch/v1/namespaces/${ns}/jobs/plain-1-initdb`);
    expect(job.body.status?.succeeded).toBe(1);
    const pod = await kubeRequest<{ status?: { podIP?: string; conditions?: { type: string; status: string }[] } }>(infra, `/api/v1/namespaces/${ns}/pods/plain-1`);
    expect(pod.body.status?.podIP).toBe(plain.host);
    expect(pod.body.status?.conditions).toContainEqual(expect.objectContaining({ type: "Ready", status: "True" }));

    // What answers is the instance CNPG configured: its cluster_name, TLS with its certificate.
    const password = unb64(app.data?.password);
    const { result, rows } = await login(plain, "app", password, "SELECT current_setting('cluster_name') AS name, current_setting('server_version_num') AS v, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl");
    expect(result).toBe("ok");
    expect(rows?.[0]).toMatchObject({ name: "plain", ssl: true });
    expect(Math.floor(Number(rows?.[0]?.v) / 10_000)).toBe(15);
    // The server certificate names the Services, not the pod's address: verify-full by IP fails.
    const byIp = new pg.Client({ host: plain.host, port: 5432, user: "app", password, database: "app", ssl: { ca: plain.caPem } });
    byIp.on("error", () => {});
    await expect(byIp.connect()).rejects.toThrow(/altnames|IP/i);
    await byIp.end().catch(() => {});
  });

  it("applies a new app password written with the reload label: status.secretsResourceVersion.applicationSecretVersion follows, the old password is refused", async () => {
    const ns = cnpg.namespace;
    const oldPassword = unb64((await getSecret(ns, "plain-app")).data?.password);
    const password = newPassword();
    const written = Date.now();
    const resourceVersion = await writePassword(ns, "plain-app", password);
    await cnpg.waitForCluster(ns, "plain", "applicationSecretVersion = the Secret's resourceVersion", (c) => c.status?.secretsResourceVersion?.applicationSecretVersion === resourceVersion);
    const statusMs = Date.now() - written;
    // The operator writes secretsResourceVersion when it has seen the Secret; the instance
    // manager applies the password after that (it records nothing in the status), so right
    // now the new password may or may not work yet: this is what the test step must retry.
    const atStatus = (await login(plain, "app", password)).result;
    const refusedMs = await waitRefused(plain, "app", oldPassword, written);
    expect((await login(plain, "app", password)).result).toBe("ok");
    expect((await login(plain, "app", oldPassword)).result).toBe("refused");
    console.error(`[cnpg.test] app Secret: applicationSecretVersion updated ${statusMs} ms after the write (new password then: ${atStatus}); old password refused after ${refusedMs} ms`);
  });

  it("reports each managed role's applied passwordSecret in status.managedRolesStatus.passwordStatus[role].resourceVersion", async () => {
    const ns = cnpg.namespace;
    const initial = await cnpg.getCluster(ns, "pair");
    for (const role of ROLES) {
      const secret = await getSecret(ns, secretOf(role));
      expect(initial.status?.managedRolesStatus?.passwordStatus?.[role]?.resourceVersion).toBe(secret.metadata.resourceVersion);
      expect(initial.status?.secretsResourceVersion?.managedRoleSecretVersion?.[secretOf(role)]).toBe(secret.metadata.resourceVersion);
      expect((await login(paired, role, rolePasswords.get(role) ?? "")).result).toBe("ok");
    }
    expect(initial.status?.managedRolesStatus?.byStatus?.reconciled).toEqual(expect.arrayContaining([...ROLES]));

    // Rotate blue only.
    const oldBlue = rolePasswords.get("app_blue") ?? "";
    const greenVersion = initial.status?.managedRolesStatus?.passwordStatus?.app_green?.resourceVersion;
    const password = newPassword();
    const written = Date.now();
    const resourceVersion = await writePassword(ns, secretOf("app_blue"), password);
    await cnpg.waitForCluster(ns, "pair", "passwordStatus[app_blue].resourceVersion = the Secret's resourceVersion", (c) => c.status?.managedRolesStatus?.passwordStatus?.app_blue?.resourceVersion === resourceVersion);
    const appliedMs = Date.now() - written;
    // Once CNPG says so, the new password works at once; the old one is refused.
    expect((await login(paired, "app_blue", password)).result).toBe("ok");
    expect((await login(paired, "app_blue", oldBlue)).result).toBe("refused");
    const after = await cnpg.getCluster(ns, "pair");
    expect(after.status?.managedRolesStatus?.passwordStatus?.app_green?.resourceVersion).toBe(greenVersion);
    expect((await login(paired, "app_green", rolePasswords.get("app_green") ?? "")).result).toBe("ok");
    rolePasswords.set("app_blue", password);
    console.error(`[cnpg.test] managed role: passwordStatus updated ${appliedMs} ms after the Secret write`);
  });

  it("runs postInitApplicationSQL's ALTER ROLE … SET role = app: what either role creates belongs to app and stays usable by the other", async () => {
    const blue = rolePasswords.get("app_blue") ?? "";
    const green = rolePasswords.get("app_green") ?? "";
    const settings = await login(paired, "app_blue", blue, "SELECT session_user AS s, current_user AS c, pg_has_role('app_blue', 'app', 'MEMBER') AS member");
    expect(settings.rows?.[0]).toEqual({ s: "app_blue", c: "app", member: true });
    expect((await login(paired, "app_blue", blue, "CREATE TABLE made_by_blue (v int); INSERT INTO made_by_blue VALUES (1)")).result).toBe("ok");
    const owner = await login(paired, "app_green", green, "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_blue'");
    expect(owner.rows?.[0]).toEqual({ tableowner: "app" });
    expect((await login(paired, "app_green", green, "INSERT INTO made_by_blue VALUES (2)")).result).toBe("ok");
    expect((await login(paired, "app_blue", blue, "SELECT count(*)::int AS n FROM made_by_blue")).rows?.[0]).toEqual({ n: 2 });
  });

  it("fails CNPG's initdb when postInitApplicationSQL alters the managed roles without creating them first (they do not exist yet then)", async () => {
    const ns = cnpg.namespace;
    const spec = {
      bootstrap: { initdb: { database: "app", owner: "app", postInitApplicationSQL: ROLES.map((role) => `ALTER ROLE ${role} SET role = app`) } },
      managed: {
        roles: ROLES.map((role) => ({ name: role, ensure: "present", login: true, inherit: true, inRoles: ["app"], passwordSecret: { name: secretOf(role) } })),
      },
    };
    // The harness stops waiting as soon as CNPG marks the Cluster unrecoverable.
    await expect(cnpg.createCluster(ns, "alter-only", spec)).rejects.toThrow(/unrecoverable.*alter-only-1-initdb/);
    const job = await kubeRequest<{ status?: { failed?: number; succeeded?: number } }>(infra, `/apis/batch/v1/namespaces/${ns}/jobs/alter-only-1-initdb`);
    expect(job.body.status).toMatchObject({ failed: 1 });
    expect(job.body.status?.succeeded).toBeUndefined();
    const initLog = readFileSync(path.join(cnpg.logDir, `${ns}_alter-only-1-initdb_initdb.log`), "utf8");
    // PostgreSQL's own error, inside the instance manager's JSON log lines.
    expect(initLog).toMatch(/role \\?"app_blue\\?" does not exist/);
    await cnpg.deleteCluster(ns, "alter-only");
  });

  it("deleteCluster stops the instance and removes its sandbox; stop() leaves no process, namespace, link or temp dir", async () => {
    const ns = cnpg.namespace;
    const tag = cnpg.tag;
    await cnpg.deleteCluster(ns, "plain");
    expect((await kubeRequest(infra, `/api/v1/namespaces/${ns}/pods/plain-1`)).status).toBe(404);
    // Nothing answers at its address any more (not even a refusal: the address is gone).
    expect((await login(plain, "app", "x")).result).toMatch(/^error: /);
    // The other cluster still answers.
    expect((await login(paired, "app_green", rolePasswords.get("app_green") ?? "")).result).toBe("ok");

    const logDir = cnpg.logDir;
    const ours = () => execFileSync("ip", ["netns", "list"], { encoding: "utf8" }).split("\n").map((l) => l.split(" ")[0] ?? "").filter((n) => n.startsWith(`cnpgh-${tag}-`));
    const pids = ours().flatMap((n) => execFileSync("ip", ["netns", "pids", n], { encoding: "utf8" }).split(/\s+/).filter(Boolean).map(Number));
    expect(pids.length).toBeGreaterThan(2); // the operator, the other instance, forwarders
    await cnpg.stop();
    // Running means present and not a zombie waiting for its parent to reap it (which, on a busy
    // machine, can take a moment after the kill): give it a few seconds.
    const running = () =>
      pids.filter((pid) => {
        try {
          return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
        } catch {
          return false;
        }
      });
    for (let i = 0; i < 50 && running().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(running()).toEqual([]);
    expect(ours()).toEqual([]);
    const links = execFileSync("ip", ["-o", "link", "show"], { encoding: "utf8" });
    expect(links.split("\n").filter((l) => new RegExp(`: cnh${tag}(v\\d+)?[@:]`).test(l))).toEqual([]);
    expect(existsSync(logDir)).toBe(false);
  });
});
