// Downtime benchmark (issue 11): simulated applications against the real CNPG operator and its
// PostgreSQL 15 while the rotator rotates, once with the single-user strategy (as the docs' ESO
// setup does) and once with the alternating one, side by side in one run. Each application
// re-reads its Secret at a random moment once per rotation interval, and opens a new
// connection every 50 ms with what it last read; every refused login is counted, and the
// longest stretch of refusals per application is the downtime window it saw.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import pg from "pg";
import { connectCluster, type KubernetesClient } from "../lib/kubernetes/index.ts";
import { silentLogger } from "../lib/log.ts";
import { loadManifests } from "../lib/manifests/index.ts";
import { rotate } from "../lib/rotation/engine.ts";
import { storeFactory } from "../lib/rotation/stores.ts";
import { createVerifier } from "../lib/rotation/verify.ts";
import { startCnpg } from "../test/infra/cnpg/harness.ts";
import { renderKubeconfig, startTestInfra } from "../test/infra/servers.ts";

export interface DowntimeOptions {
  readonly apps?: number;
  readonly rotations?: number;
  readonly intervalMs?: number;
  readonly connectEveryMs?: number;
  readonly log: (line: string) => void;
}

export interface DowntimeRow {
  readonly strategy: "single-user" | "alternating";
  readonly apps: number;
  readonly rotations: number;
  readonly intervalMs: number;
  readonly logins: number;
  readonly failedLogins: number;
  /** The longest run of refused logins one application saw, in ms. */
  readonly longestWindowMs: number;
  /** Rotations that did not report rotated. */
  readonly failedRotations: number;
}

const ROLES = ["app_blue", "app_green"] as const;
const secretOf = (role: string) => `dt-${role.replace("app_", "")}`;

export async function benchDowntime(options: DowntimeOptions): Promise<DowntimeRow[]> {
  const apps = options.apps ?? 20;
  const rotations = options.rotations ?? 20;
  const intervalMs = options.intervalMs ?? 3_000;
  const connectEveryMs = options.connectEveryMs ?? 50;
  const infra = await startTestInfra();
  const cnpg = await startCnpg(infra);
  const kube = connectCluster({ kubeconfigYaml: renderKubeconfig(infra, { user: "admin", token: infra.adminToken }) });
  try {
    const ns = cnpg.namespace;
    for (const role of ROLES) {
      await kube.createSecret(ns, secretOf(role), { type: "kubernetes.io/basic-auth", data: { username: role, password: randomBytes(18).toString("base64url") }, labels: { "cnpg.io/reload": "true" } });
    }
    const cluster = await cnpg.createCluster(ns, "dt", {
      bootstrap: {
        initdb: { database: "app", owner: "app", postInitApplicationSQL: [...ROLES.map((r) => `CREATE ROLE ${r}`), ...ROLES.map((r) => `ALTER ROLE ${r} SET role = app`)] },
      },
      managed: { roles: ROLES.map((role) => ({ name: role, ensure: "present", login: true, inherit: true, inRoles: ["app"], passwordSecret: { name: secretOf(role) } })) },
      // 20 applications opening a connection every 50 ms, plus CNPG's own.
      postgresql: { parameters: { max_connections: "200" } },
    });
    const app = (await kube.readSecret(ns, "dt-app"))!;
    await kube.createSecret(ns, "dt-consumer", { type: "kubernetes.io/basic-auth", data: app.data });
    const verify = createVerifier(
      { enabled: true, host: cluster.host, port: 5432, sslMode: "verify-full", timeoutMs: 30_000, initialDelayMs: 50 },
      { readCa: async (n, c) => (await kube.readSecret(n, `${c}-ca`))?.data["ca.crt"] },
    );
    const rows: DowntimeRow[] = [];
    for (const strategy of ["single-user", "alternating"] as const) {
      const secretName = strategy === "alternating" ? "dt-consumer" : "dt-app";
      const storePath = join(infra.tmpDir, `downtime-${strategy}.json`);
      const manifests = loadManifests(manifestTexts(ns, strategy, secretName, storePath).map((text, i) => ({ file: `d${i}.yaml`, text })), { namespace: ns });
      const engine = { manifests, kube, log: silentLogger, createStore: storeFactory(), verify, rollbackOnVerifyFailure: true, applyTimeoutMs: 30_000 };
      await rotate(engine, { force: true }); // the first: the store seeded, the consumer on a rotated role
      options.log(`downtime: ${strategy}, ${apps} applications, ${rotations} rotations every ${intervalMs} ms`);
      rows.push(await scenario({ strategy, kube, ns, secretName, cluster, apps, rotations, intervalMs, connectEveryMs, rotateOnce: async () => (await rotate(engine, { force: true }))[0]!.outcome === "rotated" }));
      options.log(`downtime: ${strategy}: ${rows.at(-1)!.failedLogins} of ${rows.at(-1)!.logins} logins failed, longest window ${rows.at(-1)!.longestWindowMs} ms`);
    }
    return rows;
  } finally {
    await kube.close();
    await cnpg.stop();
    await infra.stop();
  }
}

function manifestTexts(ns: string, strategy: "single-user" | "alternating", secretName: string, storePath: string): string[] {
  const annotations =
    strategy === "alternating"
      ? `  annotations:\n    cnpg-rotator.io/strategy: alternating\n    cnpg-rotator.io/cluster: dt\n    cnpg-rotator.io/roles: app_blue=dt-blue, app_green=dt-green\n`
      : `  annotations:\n    cnpg-rotator.io/cluster: dt\n`;
  const user = strategy === "alternating" ? "{{ .username }}" : "app";
  return [
    `apiVersion: generators.external-secrets.io/v1alpha1\nkind: Password\nmetadata: {name: gen}\nspec: {length: 42, digits: 5, symbols: 5, symbolCharacters: "-_$@", allowRepeat: true}\n`,
    `apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: dt-${strategy}\n${annotations}spec:\n  refreshInterval: 24h\n  target:\n    name: ${secretName}\n    creationPolicy: Merge\n    template:\n      metadata: {labels: {cnpg.io/reload: "true"}}\n      data:\n        password: "{{ .password }}"\n        uri: "postgresql://${user}:{{ .password }}@dt-rw.${ns}:5432/app"\n  dataFrom: [{sourceRef: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: gen}}}]\n`,
    `apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: local}\nspec: {provider: {file: {path: ${storePath}}}}\n`,
    `apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {name: push-${strategy}}\nspec:\n  secretStoreRefs: [{name: local, kind: SecretStore}]\n  selector: {secret: {name: ${secretName}}}\n  data: [{match: {remoteRef: {remoteKey: ${secretName}}}}]\n`,
  ];
}

async function scenario(s: {
  strategy: DowntimeRow["strategy"];
  kube: KubernetesClient;
  ns: string;
  secretName: string;
  cluster: { host: string; caPem: string; tlsServerName: string };
  apps: number;
  rotations: number;
  intervalMs: number;
  connectEveryMs: number;
  rotateOnce: () => Promise<boolean>;
}): Promise<DowntimeRow> {
  let stop = false;
  let logins = 0;
  let failed = 0;
  let longest = 0;
  const read = async () => {
    const d = (await s.kube.readSecret(s.ns, s.secretName))!.data;
    return { user: d.username!, password: d.password! };
  };
  const application = async () => {
    let creds = await read();
    let failingSince: number | undefined;
    // Once per interval, at a moment of the interval chosen at random per application (its
    // phase): a re-read at most one interval after the last, which is what the strategy promises
    // to serve. (Drawing a new moment in every interval lets two reads lie almost two intervals
    // apart, long enough for the role to rotate twice: such an application can fail.)
    let nextRead = begun + Math.random() * s.intervalMs;
    while (!stop) {
      const started = Date.now();
      if (started >= nextRead) {
        creds = await read();
        nextRead += s.intervalMs;
      }
      const ok = await connect(s.cluster, creds);
      logins++;
      if (ok === "refused") {
        failed++;
        failingSince ??= started;
        longest = Math.max(longest, Date.now() - failingSince);
      } else if (ok === "ok") {
        failingSince = undefined;
      }
      await new Promise((r) => setTimeout(r, Math.max(0, s.connectEveryMs - (Date.now() - started))));
    }
  };
  const begun = Date.now();
  const running = Array.from({ length: s.apps }, application);
  let failedRotations = 0;
  for (let i = 0; i < s.rotations; i++) {
    const started = Date.now();
    if (!(await s.rotateOnce())) failedRotations++;
    await new Promise((r) => setTimeout(r, Math.max(0, s.intervalMs - (Date.now() - started))));
  }
  // One more interval: every application re-reads once after the last rotation.
  await new Promise((r) => setTimeout(r, s.intervalMs));
  stop = true;
  await Promise.all(running);
  return { strategy: s.strategy, apps: s.apps, rotations: s.rotations, intervalMs: s.intervalMs, logins, failedLogins: failed, longestWindowMs: longest, failedRotations };
}

async function connect(cluster: { host: string; caPem: string; tlsServerName: string }, creds: { user: string; password: string }): Promise<"ok" | "refused" | "error"> {
  const client = new pg.Client({
    host: cluster.host,
    port: 5432,
    user: creds.user,
    password: creds.password,
    database: "app",
    ssl: { ca: cluster.caPem, servername: cluster.tlsServerName, rejectUnauthorized: true },
    connectionTimeoutMillis: 5_000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    return "ok";
  } catch (e) {
    const code = (e as { code?: string }).code;
    return code === "28P01" || code === "28000" ? "refused" : "error";
  } finally {
    await client.end().catch(() => {});
  }
}
