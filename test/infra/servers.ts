// Starts the real servers the integration tests talk to: etcd + kube-apiserver (set up the
// way controller-runtime's envtest does: static tokens, RBAC, serving cert from our own CA)
// and moto's server mode as AWS Secrets Manager (through test/infra/moto/server.py, which patches
// it to behave as AWS does where moto does not). Everything binds 127.0.0.1 on free ports
// and lives in one temp dir; binaries come from test/infra/setup.sh's cache.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { appendFileSync, closeSync, existsSync, openSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { stringify as toYaml } from "yaml";

const execFileAsync = promisify(execFile);

const infraDir = import.meta.dirname;

/** Where test/infra/setup.sh puts binaries and the moto venv (same default as the scripts). */
export const cacheDir =
  process.env.CNPG_ROTATOR_CACHE || path.join(os.homedir(), ".cache", "cnpg-rotator");

export const binaries = {
  etcd: path.join(cacheDir, "bin", "etcd"),
  kubeApiserver: path.join(cacheDir, "bin", "kube-apiserver"),
  motoServer: path.join(cacheDir, "moto-venv", "bin", "moto_server"),
  /** The venv's Python, which runs moto through test/infra/moto/server.py (moto patched to behave as AWS does). */
  motoPython: path.join(cacheDir, "moto-venv", "bin", "python"),
} as const;

/** Users of the static token file. admin is in system:masters; the others start with no rights. */
export const staticUsers = ["admin", "rotator", "limited"] as const;
export type StaticUser = (typeof staticUsers)[number];

/** Everything a test needs to reach the servers; plain data, so it can cross `provide`/`inject`. */
export interface InfraConnection {
  /** https://127.0.0.1:PORT of kube-apiserver. */
  server: string;
  /** PEM of the CA that signed the apiserver's serving cert (and accepts client certs). */
  caPem: string;
  caFile: string;
  /** Kubeconfig with the admin token as its current context. */
  kubeconfigPath: string;
  adminToken: string;
  /** Bearer tokens of the static users (admin included). */
  tokens: Record<StaticUser, string>;
  /** http://127.0.0.1:PORT of moto. */
  awsEndpoint: string;
  etcdEndpoint: string;
  /** Temp dir holding data, certs, kubeconfigs and the servers' logs (*.log). */
  tmpDir: string;
}

export interface TestInfra extends InfraConnection {
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------
// Binaries

/**
 * Makes sure the cached binaries exist. Under CI=true a missing one is an error (the CI
 * script runs setup.sh first; tests must never skip). Elsewhere setup.sh is run, which is
 * quick when the cache is current and rebuilds it when the pins changed.
 */
export async function ensureBinaries(): Promise<void> {
  const missing = Object.values(binaries).filter((file) => !existsSync(file));
  if (process.env.CI === "true") {
    if (missing.length > 0) {
      throw new Error(
        `test servers are not installed: missing ${missing.join(", ")}; ` +
          "run test/infra/setup.sh before the integration tests (CI must not skip them)",
      );
    }
    return;
  }
  console.error("[infra] running test/infra/setup.sh (quick when cached)...");
  await new Promise<void>((resolve, reject) => {
    const child = spawn("bash", [path.join(infraDir, "setup.sh")], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    child.on("error", reject);
    child.on("exit", (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`test/infra/setup.sh failed (exit ${code ?? signal})`)),
    );
  });
  const stillMissing = Object.values(binaries).filter((file) => !existsSync(file));
  if (stillMissing.length > 0) {
    throw new Error(`test/infra/setup.sh ran but ${stillMissing.join(", ")} is still missing`);
  }
}

// ---------------------------------------------------------------------------------------
// Processes

/** Children still running, killed synchronously if this process exits without stopping them. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of liveChildren) child.kill("SIGKILL");
  });
}

export interface ManagedProcess {
  readonly name: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (or failed to spawn). */
  readonly exited: Promise<void>;
  isRunning(): boolean;
  stop(): Promise<void>;
}

function launch(
  name: string,
  command: string,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): ManagedProcess {
  installExitHook();
  const fd = openSync(logFile, "a");
  const child = spawn(command, args, { stdio: ["ignore", fd, fd], env, detached: false });
  closeSync(fd);
  let running = child.pid !== undefined;
  // The exit hook misses SIGKILL and hard crashes of this process; the watchdog does not:
  // its stdin is a pipe from us, which the kernel closes however we die.
  const watchdog =
    child.pid === undefined
      ? undefined
      : spawn(
          "sh",
          [
            "-c",
            'cat >/dev/null; kill -TERM "$1" 2>/dev/null; sleep 5; kill -KILL "$1" 2>/dev/null',
            `${name}-watchdog`,
            String(child.pid),
          ],
          { stdio: ["pipe", "ignore", "ignore"] },
        );
  if (watchdog) {
    watchdog.unref();
    (watchdog.stdin as unknown as { unref(): void }).unref();
    liveChildren.add(child);
  }
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", (error) => {
      // Synchronous, so the message is in the log before anyone reads its tail.
      appendFileSync(logFile, `failed to spawn ${command}: ${error.message}\n`);
      resolve();
    });
  }).then(() => {
    running = false;
    liveChildren.delete(child);
    // Once the child is gone its pid may be reused: the watchdog must not outlive it.
    watchdog?.kill("SIGKILL");
  });
  return {
    name,
    logFile,
    child,
    exited,
    isRunning: () => running,
    async stop() {
      if (!running) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

async function logTail(file: string, lines = 60): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.split("\n").slice(-lines).join("\n");
}

/**
 * Polls `check` until it returns true. Fails early if the process exits, and with the end
 * of its log on timeout, so a broken start says why.
 */
async function waitReady(
  proc: ManagedProcess,
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.isRunning()) {
      throw new Error(
        `${proc.name} exited before ${what}; end of ${proc.logFile}:\n${await logTail(proc.logFile)}`,
      );
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(
        `${proc.name}: no ${what} within ${timeoutMs / 1000}s; end of ${proc.logFile}:\n${await logTail(proc.logFile)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** When each port was handed out: a port is not handed out again within PORT_QUIET_MS. */
const handedOutPorts = new Map<number, number>();
/** Long past any freePort()-to-listen gap (a server slow to start on a loaded machine included). */
const PORT_QUIET_MS = 10 * 60_000;
const PORT_ATTEMPTS = 1_000;

/**
 * A port the kernel just reported free on 127.0.0.1, not handed out by this process in the last
 * ten minutes. (Not "never twice": Linux's bind(0) draws from about 7,000 ports of its ephemeral
 * range, so a fault campaign's ~8 ports per run used them all up near run 890 and this spun
 * until the heap ran out.)
 */
export async function freePort(): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        server.close(() =>
          typeof address === "object" && address
            ? resolve(address.port)
            : reject(new Error("no port")),
        );
      });
    });
    // The Map is in hand-out order: the ports past their quiet time are at its start.
    const now = Date.now();
    for (const [old, at] of handedOutPorts) {
      if (now - at <= PORT_QUIET_MS) break;
      handedOutPorts.delete(old);
    }
    if (!handedOutPorts.has(port)) {
      handedOutPorts.set(port, now);
      return port;
    }
    if (attempt >= PORT_ATTEMPTS) {
      throw new Error(`no free port on 127.0.0.1 after ${PORT_ATTEMPTS} tries: the kernel offered only ports this process handed out in the last ${PORT_QUIET_MS / 60_000} min (${handedOutPorts.size} of them)`);
    }
  }
}

/**
 * Another process may grab a port between freePort() and the server binding it; starting
 * again on new ports is cheaper than making that impossible.
 */
async function retryOnPortClash<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (attempt >= 3 || !/address already in use/i.test(message)) throw error;
    }
  }
}

// ---------------------------------------------------------------------------------------
// etcd

export interface EtcdServer {
  endpoint: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

export function startEtcd(dir: string): Promise<EtcdServer> {
  return retryOnPortClash(async () => {
    const clientPort = await freePort();
    const peerPort = await freePort();
    const endpoint = `http://127.0.0.1:${clientPort}`;
    const peer = `http://127.0.0.1:${peerPort}`;
    const dataDir = path.join(dir, `etcd-data-${clientPort}`);
    const proc = launch(
      "etcd",
      binaries.etcd,
      [
        "--name=test",
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=${peer}`,
        `--initial-advertise-peer-urls=${peer}`,
        `--initial-cluster=test=${peer}`,
        // Throwaway data: skipping fsync makes every apiserver write much faster.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
      ],
      path.join(dir, "etcd.log"),
    );
    await waitReady(
      proc,
      "healthy /health",
      async () => {
        const response = await fetch(`${endpoint}/health`);
        return response.ok && ((await response.json()) as { health?: string }).health === "true";
      },
      30_000,
    );
    return { endpoint, process: proc, stop: () => proc.stop() };
  });
}

// ---------------------------------------------------------------------------------------
// PKI (openssl: node:crypto cannot issue X.509 certificates)

const opensslConfig = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
`;

const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function openssl(cwd: string, args: string[]): Promise<void> {
  try {
    await execFileAsync("openssl", args, { cwd });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`openssl ${args[0]} failed: ${stderr || String(error)}`);
  }
}

async function issueCertificate(
  pkiDir: string,
  name: string,
  subject: string,
  extensions: "server_ext" | "client_ext",
): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = path.join(pkiDir, `${name}.key`);
  const certFile = path.join(pkiDir, `${name}.crt`);
  const csrFile = path.join(pkiDir, `${name}.csr`);
  await openssl(pkiDir, ["req", "-new", "-config", "openssl.cnf", ...ecKey]
    .concat(["-keyout", keyFile, "-out", csrFile, "-subj", subject]));
  await openssl(pkiDir, [
    "x509", "-req", "-in", csrFile, "-CA", "ca.crt", "-CAkey", "ca.key",
    "-set_serial", `0x${randomBytes(12).toString("hex")}`, "-days", "7",
    "-extfile", "openssl.cnf", "-extensions", extensions, "-out", certFile,
  ]);
  return { certFile, keyFile };
}

interface Pki {
  dir: string;
  caFile: string;
  serving: { certFile: string; keyFile: string };
  serviceAccountPublicKey: string;
  serviceAccountPrivateKey: string;
}

async function makePki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "openssl.cnf"), opensslConfig);
  await openssl(dir, [
    "req", "-x509", "-config", "openssl.cnf", "-extensions", "ca_ext", ...ecKey,
    "-keyout", "ca.key", "-out", "ca.crt", "-days", "7", "-subj", "/CN=cnpg-rotator-test-ca",
  ]);
  const serving = await issueCertificate(dir, "apiserver", "/CN=kube-apiserver", "server_ext");
  // Service account tokens (TokenRequest) are signed with this key.
  const keys = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const serviceAccountPublicKey = path.join(dir, "sa.pub");
  const serviceAccountPrivateKey = path.join(dir, "sa.key");
  await writeFile(serviceAccountPublicKey, keys.publicKey.export({ type: "spki", format: "pem" }));
  await writeFile(serviceAccountPrivateKey, keys.privateKey.export({ type: "pkcs8", format: "pem" }), {
    mode: 0o600,
  });
  return {
    dir,
    caFile: path.join(dir, "ca.crt"),
    serving,
    serviceAccountPublicKey,
    serviceAccountPrivateKey,
  };
}

/**
 * Issues a client certificate the apiserver accepts (its --client-ca-file is the test CA):
 * CN is the user name, each O a group.
 */
export async function issueClientCertificate(
  conn: Pick<InfraConnection, "tmpDir">,
  user: string,
  groups: string[] = [],
): Promise<{ certPem: string; keyPem: string }> {
  if (!/^[\w.:@-]+$/.test(user) || groups.some((g) => !/^[\w.:@-]+$/.test(g))) {
    throw new Error(`client certificate names must match [\\w.:@-]+; got user ${user}, groups ${groups.join(",")}`);
  }
  const pkiDir = path.join(conn.tmpDir, "pki");
  const subject = `/CN=${user}${groups.map((g) => `/O=${g}`).join("")}`;
  const name = `client-${user}-${randomBytes(4).toString("hex")}`;
  const { certFile, keyFile } = await issueCertificate(pkiDir, name, subject, "client_ext");
  return { certPem: await readFile(certFile, "utf8"), keyPem: await readFile(keyFile, "utf8") };
}

// ---------------------------------------------------------------------------------------
// kube-apiserver

export interface KubeApiserver {
  server: string;
  caPem: string;
  caFile: string;
  tokens: Record<StaticUser, string>;
  process: ManagedProcess;
  stop(): Promise<void>;
}

/** GET over TLS verified against `caPem`; resolves to the status code. */
export function httpsStatus(url: string, caPem: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ca: caPem, headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.setTimeout(5_000, () => req.destroy(new Error("timeout")));
    req.end();
  });
}

export async function startKubeApiserver(dir: string, etcdEndpoint: string): Promise<KubeApiserver> {
  const pki = await makePki(path.join(dir, "pki"));
  const caPem = await readFile(pki.caFile, "utf8");
  const tokens = Object.fromEntries(
    staticUsers.map((user) => [user, randomBytes(24).toString("hex")]),
  ) as Record<StaticUser, string>;
  // token,user,uid,"groups": only admin gets a group; the others need RBAC grants.
  const tokenFile = path.join(dir, "tokens.csv");
  await writeFile(
    tokenFile,
    staticUsers
      .map((user) => `${tokens[user]},${user},${user}-uid${user === "admin" ? ',"system:masters"' : ""}\n`)
      .join(""),
    { mode: 0o600 },
  );

  return retryOnPortClash(async () => {
    const port = await freePort();
    const server = `https://127.0.0.1:${port}`;
    const proc = launch(
      "kube-apiserver",
      binaries.kubeApiserver,
      [
        `--etcd-servers=${etcdEndpoint}`,
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        `--secure-port=${port}`,
        `--cert-dir=${path.join(dir, "apiserver-certs")}`,
        `--tls-cert-file=${pki.serving.certFile}`,
        `--tls-private-key-file=${pki.serving.keyFile}`,
        `--client-ca-file=${pki.caFile}`,
        `--token-auth-file=${tokenFile}`,
        "--authorization-mode=RBAC",
        `--service-account-issuer=${server}`,
        `--service-account-key-file=${pki.serviceAccountPublicKey}`,
        `--service-account-signing-key-file=${pki.serviceAccountPrivateKey}`,
        "--service-cluster-ip-range=10.0.0.0/24",
        "--allow-privileged=true",
        // No controller-manager creates the "default" ServiceAccounts this plugin demands.
        "--disable-admission-plugins=ServiceAccount",
        "--profiling=false",
      ],
      path.join(dir, "kube-apiserver.log"),
    );
    const admin = tokens.admin;
    await waitReady(proc, "ready /readyz", async () => (await httpsStatus(`${server}/readyz`, caPem, admin)) === 200, 120_000);
    // /readyz covers the RBAC bootstrap hook, but tests rely on these objects: check them.
    for (const url of [
      "/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin",
      "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:discovery",
      "/api/v1/namespaces/default",
    ]) {
      await waitReady(proc, `${url}`, async () => (await httpsStatus(`${server}${url}`, caPem, admin)) === 200, 30_000);
    }
    return { server, caPem, caFile: pki.caFile, tokens, process: proc, stop: () => proc.stop() };
  });
}

// ---------------------------------------------------------------------------------------
// Kubeconfig

export interface KubeconfigOptions {
  /** Name of the user entry (and of the file by default). */
  user: string;
  token?: string;
  clientCertificate?: { certPem: string; keyPem: string };
  namespace?: string;
  /** Where to write it; default `<tmpDir>/kubeconfig-<user>.yaml`. */
  file?: string;
}

const b64 = (text: string) => Buffer.from(text).toString("base64");

/** A kubeconfig (YAML) for the test cluster, verifying TLS against the test CA. */
export function renderKubeconfig(
  conn: Pick<InfraConnection, "server" | "caPem">,
  options: Omit<KubeconfigOptions, "file">,
): string {
  if (!options.token === !options.clientCertificate) {
    throw new Error("a kubeconfig needs exactly one of token or clientCertificate");
  }
  const user: Record<string, string> = options.token
    ? { token: options.token }
    : {
        "client-certificate-data": b64(options.clientCertificate?.certPem ?? ""),
        "client-key-data": b64(options.clientCertificate?.keyPem ?? ""),
      };
  const context = `${options.user}@cnpg-rotator-test`;
  return toYaml({
    apiVersion: "v1",
    kind: "Config",
    clusters: [
      {
        name: "cnpg-rotator-test",
        cluster: { server: conn.server, "certificate-authority-data": b64(conn.caPem) },
      },
    ],
    users: [{ name: options.user, user }],
    contexts: [
      {
        name: context,
        context: {
          cluster: "cnpg-rotator-test",
          user: options.user,
          ...(options.namespace ? { namespace: options.namespace } : {}),
        },
      },
    ],
    "current-context": context,
    preferences: {},
  });
}

export async function writeKubeconfig(
  conn: Pick<InfraConnection, "server" | "caPem" | "tmpDir">,
  options: KubeconfigOptions,
): Promise<string> {
  const file = options.file ?? path.join(conn.tmpDir, `kubeconfig-${options.user}.yaml`);
  await writeFile(file, renderKubeconfig(conn, options), { mode: 0o600 });
  return file;
}

// ---------------------------------------------------------------------------------------
// moto

export interface MotoServer {
  endpoint: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

export function startMoto(dir: string): Promise<MotoServer> {
  return retryOnPortClash(async () => {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const proc = launch(
      "moto",
      binaries.motoPython,
      [path.join(infraDir, "moto", "server.py"), "-H", "127.0.0.1", "-p", String(port)],
      path.join(dir, "moto.log"),
      { ...process.env, PYTHONUNBUFFERED: "1" },
    );
    // Any HTTP answer means it serves; /moto-api/ is moto's own dashboard endpoint.
    await waitReady(proc, "an HTTP answer", async () => (await fetch(`${endpoint}/moto-api/`)).status > 0, 60_000);
    return { endpoint, process: proc, stop: () => proc.stop() };
  });
}

// ---------------------------------------------------------------------------------------
// Azurite's queue service (npm devDependency azurite): Azure Queue Storage for the fleet's Azure path

export interface AzuriteQueue {
  /** A connection string for Azurite's well-known development account (public, documented by Microsoft). */
  connectionString: string;
  endpoint: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

const AZURITE_QUEUE = path.join(infraDir, "..", "..", "node_modules", ".bin", "azurite-queue");
// Azurite's documented development account and key (the same in every Azurite; not a secret).
const AZURITE_ACCOUNT = "devstoreaccount1";
const AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/** azurite-queue on 127.0.0.1, in memory. A missing install is an error, never a skip (it comes with `npm ci`). */
export function startAzuriteQueue(dir: string): Promise<AzuriteQueue> {
  if (!existsSync(AZURITE_QUEUE)) throw new Error(`azurite-queue not found at ${AZURITE_QUEUE}: run npm ci (azurite is a devDependency)`);
  return retryOnPortClash(async () => {
    const port = await freePort();
    const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
    const proc = launch(
      "azurite-queue",
      process.execPath,
      [AZURITE_QUEUE, "--queueHost", "127.0.0.1", "--queuePort", String(port), "--inMemoryPersistence", "--disableTelemetry", "--silent", "--skipApiVersionCheck"],
      path.join(dir, "azurite-queue.log"),
    );
    await waitReady(proc, "an HTTP answer", async () => (await fetch(`${endpoint}?comp=list`)).status > 0, 60_000);
    const connectionString = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};QueueEndpoint=${endpoint};`;
    return { connectionString, endpoint, process: proc, stop: () => proc.stop() };
  });
}

// ---------------------------------------------------------------------------------------
// All together

const tmpPrefix = "cnpg-rotator-infra-";

/**
 * A test process killed with SIGKILL cannot remove its temp dir (etcd preallocates 64 MB of
 * WAL there), so each run removes the dirs whose owner process is gone.
 */
async function removeOrphanedTmpDirs(): Promise<void> {
  const entries = await readdir(os.tmpdir()).catch(() => []);
  for (const entry of entries.filter((name) => name.startsWith(tmpPrefix))) {
    const dir = path.join(os.tmpdir(), entry);
    const owner = Number(await readFile(path.join(dir, "owner.pid"), "utf8").catch(() => ""));
    if (!Number.isInteger(owner) || owner <= 0 || isAlive(owner)) continue;
    await rm(dir, { recursive: true, force: true }).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive but not ours.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Starts etcd, kube-apiserver and moto in a new temp dir and writes the admin kubeconfig.
 * The temp dir is removed by stop() unless CNPG_ROTATOR_KEEP_TMP is set (to read logs).
 */
export async function startTestInfra(): Promise<TestInfra> {
  await ensureBinaries();
  await removeOrphanedTmpDirs();
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), tmpPrefix));
  await writeFile(path.join(tmpDir, "owner.pid"), String(process.pid));
  const started: { stop(): Promise<void> }[] = [];
  let stopped = false;
  const removeTmp = () => {
    if (!process.env.CNPG_ROTATOR_KEEP_TMP) rmSync(tmpDir, { recursive: true, force: true });
  };
  // If the test process dies without calling stop(), still do not leave data behind; the
  // children's kill hook goes first so nothing writes into the dir being removed.
  installExitHook();
  const onExit = () => removeTmp();
  process.on("exit", onExit);
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Apiserver before etcd, so it does not spend its shutdown retrying a dead etcd.
    for (const server of started.reverse()) await server.stop();
    process.off("exit", onExit);
    removeTmp();
  };
  try {
    const begin = Date.now();
    const [etcd, moto] = await Promise.all([startEtcd(tmpDir), startMoto(tmpDir)]);
    started.push(moto, etcd);
    const kube = await startKubeApiserver(tmpDir, etcd.endpoint);
    started.push(kube);
    const connection: Omit<InfraConnection, "kubeconfigPath"> = {
      server: kube.server,
      caPem: kube.caPem,
      caFile: kube.caFile,
      adminToken: kube.tokens.admin,
      tokens: kube.tokens,
      awsEndpoint: moto.endpoint,
      etcdEndpoint: etcd.endpoint,
      tmpDir,
    };
    const kubeconfigPath = await writeKubeconfig(connection, { user: "admin", token: kube.tokens.admin });
    console.error(
      `[infra] kube-apiserver ${kube.server}, moto ${moto.endpoint} ready in ${((Date.now() - begin) / 1000).toFixed(1)}s (logs in ${tmpDir})`,
    );
    return { ...connection, kubeconfigPath, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
