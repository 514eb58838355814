// TEST ONLY: every server the rotate function talks to, started once per campaign on 127.0.0.1:
// etcd + kube-apiserver (with CNPG's Cluster CRD, for the alternating strategy), moto (patched to
// behave as AWS), the GCP Secret Manager emulator, Vault, lowkey-vault (Azure) and Toxiproxy.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { request } from "node:https";
import path from "node:path";
import { promisify } from "node:util";
import { renderKubeconfig, startEtcd, startKubeApiserver, startMoto, type InfraConnection, ensureBinaries } from "../infra/servers.ts";
import { startGcpSecretManager, startLowkeyVault, startVault } from "../infra/emulators/servers.ts";
import { type CnpgClusterInfo, type CnpgHarness, cnpgCrdDir, startCnpg } from "../infra/cnpg/harness.ts";
import { kubeRequest } from "../infra/kube-client.ts";
import { startToxiproxy, type Toxiproxy } from "./toxiproxy.ts";
import { writeFile } from "node:fs/promises";

const execFileAsync = promisify(execFile);

export interface CampaignServers {
  readonly kube: Pick<InfraConnection, "server" | "caPem" | "adminToken" | "caFile"> & { readonly tls: { cert: string; key: string } };
  readonly aws: string;
  /** host:port of the emulator's gRPC listener. */
  readonly gcp: string;
  readonly vault: { readonly address: string; readonly token: string };
  /** https://127.0.0.1:PORT, a purgeable vault; `caPem` its certificate. */
  readonly azure: { readonly url: string; readonly caPem: string };
  readonly toxiproxy: Toxiproxy;
  /**
   * Rejects once one of these servers ends before stop(), naming it and how it ended: the
   * campaign cannot judge a run whose server is gone, so it stops instead of reporting the
   * runs after it as violations.
   */
  readonly died: Promise<never>;
  stop(): Promise<void>;
}

export async function startCampaignServers(dir: string, log: (line: string) => void): Promise<CampaignServers> {
  await ensureBinaries();
  const stops: (() => Promise<void>)[] = [];
  let stopping = false;
  const stop = async () => {
    stopping = true;
    for (const s of stops.reverse()) await s().catch(() => {});
  };
  let reportDeath: (error: Error) => void = () => {};
  const died = new Promise<never>((_, reject) => {
    reportDeath = reject;
  });
  died.catch(() => {}); // observed by the campaign; a run without a listener must not crash on it
  const watch = (name: string, pid: number, exited: Promise<string>) => {
    log(`[faults] ${name} pid ${pid}`);
    void exited.then((how) => {
      if (stopping) return;
      const line = `${name} (pid ${pid}) ${how} at ${new Date().toISOString()}, before the campaign stopped it`;
      log(`[faults] SERVER GONE: ${line}`);
      reportDeath(new Error(line));
    });
  };
  const exitOf = (p: { child: { exitCode: number | null; signalCode: string | null }; exited: Promise<void> }) =>
    p.exited.then(() => (p.child.signalCode ? `killed by ${p.child.signalCode}` : `exited with code ${p.child.exitCode}`));
  try {
    const begin = Date.now();
    const [etcd, moto, gcp, vault, toxiproxy] = await Promise.all([
      startEtcd(dir),
      startMoto(dir),
      startGcpSecretManager(),
      startVault(),
      startToxiproxy(path.join(dir, "toxiproxy.log")),
    ]);
    stops.push(etcd.stop, moto.stop, gcp.stop, vault.stop, toxiproxy.stop);
    const [kube, lowkey] = await Promise.all([startKubeApiserver(dir, etcd.endpoint), startLowkeyVault()]);
    stops.push(lowkey.stop, kube.stop);
    watch("etcd", etcd.process.child.pid ?? -1, exitOf(etcd.process));
    watch("moto", moto.process.child.pid ?? -1, exitOf(moto.process));
    watch("kube-apiserver", kube.process.child.pid ?? -1, exitOf(kube.process));
    for (const e of [gcp, vault, lowkey]) watch(e.name, e.pid, e.exited);
    watch("toxiproxy-server", toxiproxy.pid, toxiproxy.exited);
    const azureUrl = `https://127.0.0.1:${lowkey.port}`;
    // A vault with purge allowed: the sibling protocol purges what it deletes.
    const uri = `?baseUri=${encodeURIComponent(azureUrl)}`;
    await lowkeyManagement(lowkey.vaultUrl, lowkey.caPem, "DELETE", uri);
    await lowkeyManagement(lowkey.vaultUrl, lowkey.caPem, "DELETE", `/purge${uri}`);
    await lowkeyManagement(lowkey.vaultUrl, lowkey.caPem, "POST", "", JSON.stringify({ baseUri: azureUrl, recoveryLevel: "Recoverable+Purgeable", recoverableDays: 90 }));
    const kubeconfig = path.join(dir, "admin.kubeconfig");
    await writeFile(kubeconfig, renderKubeconfig(kube, { user: "admin", token: kube.tokens.admin }), { mode: 0o600 });
    const crd = path.join(cnpgCrdDir, "postgresql.cnpg.io_clusters.yaml");
    await execFileAsync("kubectl", ["--kubeconfig", kubeconfig, "apply", "--server-side", "-f", crd]);
    await execFileAsync("kubectl", ["--kubeconfig", kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "-f", crd]);
    const pki = path.join(dir, "pki");
    log(`[faults] servers ready in ${((Date.now() - begin) / 1000).toFixed(1)}s (logs in ${dir})`);
    return {
      kube: {
        server: kube.server,
        caPem: kube.caPem,
        caFile: kube.caFile,
        adminToken: kube.tokens.admin,
        // The apiserver's own serving certificate (SAN 127.0.0.1, localhost): the fault proxies serve it too.
        tls: { cert: await readFile(path.join(pki, "apiserver.crt"), "utf8"), key: await readFile(path.join(pki, "apiserver.key"), "utf8") },
      },
      aws: moto.endpoint,
      gcp: `127.0.0.1:${gcp.grpcPort}`,
      vault: { address: vault.address, token: vault.token },
      azure: { url: azureUrl, caPem: lowkey.caPem },
      toxiproxy,
      died,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

function lowkeyManagement(vaultUrl: string, ca: string, method: string, pathAndQuery: string, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(`${vaultUrl}/management/vault${pathAndQuery}`, { method, ca, headers: body ? { "Content-Type": "application/json" } : {} }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => ((res.statusCode ?? 0) < 300 ? resolve(text) : reject(new Error(`lowkey-vault ${method} management: ${res.statusCode} ${text}`))));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** The real CNPG of the campaign's `cnpg` runs: one Cluster, one instance, in a namespace of its own. */
export interface CampaignCnpg {
  readonly harness: CnpgHarness;
  readonly namespace: string;
  /** The Cluster: its application owner `app` (Secret `<cluster>-app`) and the managed roles below. */
  readonly cluster: string;
  /** Managed role → its passwordSecret (the alternating pair). */
  readonly roles: Readonly<Record<string, string>>;
  /** The alternating strategy's consumer Secret (a plain Secret in the same namespace). */
  readonly consumer: string;
  /** Where the primary is now (a recreated pod gets a new address). */
  info(): Promise<CnpgClusterInfo>;
  stop(): Promise<void>;
}

/**
 * CNPG v1.30.0's operator and instance manager against the campaign's apiserver (test/infra/cnpg/harness.ts),
 * with one Cluster: database `app` owned by `app`, and `roles` as managed roles (login, members of
 * `app`, each with its passwordSecret, created first by postInitApplicationSQL so that they can
 * `SET role = app`, as cnpg.test.ts does). `passwords` makes the role Secrets' first passwords.
 */
export async function startCampaignCnpg(
  servers: CampaignServers,
  options: { cluster: string; roles: Readonly<Record<string, string>>; consumer: string; password: () => string },
  log: (line: string) => void,
): Promise<CampaignCnpg> {
  const begin = Date.now();
  const harness = await startCnpg(servers.kube);
  try {
    const ns = harness.namespace;
    const b64 = (v: string) => Buffer.from(v).toString("base64");
    const create = async (name: string, data: Record<string, string>, labels: Record<string, string>) => {
      const r = await kubeRequest(servers.kube, `/api/v1/namespaces/${ns}/secrets`, {
        method: "POST",
        body: { apiVersion: "v1", kind: "Secret", type: "kubernetes.io/basic-auth", metadata: { name, labels }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) },
      });
      if (r.status !== 201) throw new Error(`Secret ${ns}/${name}: HTTP ${r.status}`);
    };
    const roles = Object.keys(options.roles);
    for (const role of roles) await create(options.roles[role]!, { username: role, password: options.password() }, { "cnpg.io/reload": "true" });
    await create(options.consumer, { username: "app", password: options.password() }, {});
    const first = await harness.createCluster(ns, options.cluster, {
      bootstrap: {
        initdb: {
          database: "app",
          owner: "app",
          postInitApplicationSQL: [...roles.map((role) => `CREATE ROLE ${role}`), ...roles.map((role) => `ALTER ROLE ${role} SET role = app`)],
        },
      },
      managed: {
        roles: roles.map((role) => ({ name: role, ensure: "present", login: true, inherit: true, inRoles: ["app"], passwordSecret: { name: options.roles[role]! } })),
      },
    });
    log(`[faults] CNPG ${ns}/${options.cluster} healthy in ${((Date.now() - begin) / 1000).toFixed(1)}s (operator and instance: ${first.readyMs} ms of it for the Cluster; logs in ${harness.logDir})`);
    return {
      harness,
      namespace: ns,
      cluster: options.cluster,
      roles: options.roles,
      consumer: options.consumer,
      info: () => harness.clusterInfo(ns, options.cluster),
      stop: () => harness.stop(),
    };
  } catch (error) {
    await harness.stop();
    throw error;
  }
}
