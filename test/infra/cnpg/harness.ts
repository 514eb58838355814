// TEST ONLY: the real CloudNativePG (operator and instance manager, v1.30.0, built by
// test/infra/build-cnpg.sh) against the suite's kube-apiserver, without a kubelet. The
// harness does the kubelet's part and nothing else (README.md beside this file):
//
// - the operator (`cnpg-manager controller`, admin kubeconfig, WEBHOOK_CERT_DIR with a
//   self-signed cert, no webhook configuration registered in the apiserver) runs in a
//   network namespace of its own, watching only this harness's namespaces, so several test
//   files can each run one against the same apiserver;
// - every Pod the operator creates, and the pod template of every Job (there is no job
//   controller), runs in a sandbox: its own network namespace on a bridge (one private /24
//   per harness; .1 is the bridge in the root namespace, .2 the operator, .3… the pods), its
//   own mount/PID/UTS/IPC namespaces with a root built from the machine's /usr and /etc plus
//   the pod's volumes (sandbox.sh), and the container commands run there as the machine's
//   `postgres` user with exactly the command and environment the operator wrote (plus what
//   a kubelet and the image add: PATH to PostgreSQL's binaries, HOSTNAME, HOME,
//   KUBERNETES_SERVICE_HOST/PORT) and a token of the pod's ServiceAccount at
//   /var/run/secrets/kubernetes.io/serviceaccount;
// - the apiserver listens on 127.0.0.1 only: inside each namespace forward.ts listens on
//   127.0.0.1:443 and hands connections over a unix socket to the harness, which connects
//   them to the apiserver (TLS passes through; its certificate has a 127.0.0.1 SAN);
// - Job status Complete/Failed from the init command's exit code; Pod status (phase, podIP,
//   container statuses, Ready from the container's readiness probe, i.e. the instance
//   manager's /readyz); a Pod being deleted gets SIGTERM, then SIGKILL after its grace
//   period, and is then removed; deleteCluster also does the garbage collector's part.
// - stop() and process exit remove every process, namespace, veth, bridge and temp dir; a
//   watchdog does it if the test process is killed; start removes leftovers of dead runs.
//
// CNPG's own signals that a password was applied (api/v1 types at v1.30.0, cluster_types.go):
// - App owner / superuser Secrets: `status.secretsResourceVersion` (SecretsResourceVersion):
//   `.applicationSecretVersion`, `.superuserSecretVersion`, `.replicationSecretVersion`,
//   `.caSecretVersion`, `.serverSecretVersion`, …, and `.managedRoleSecretVersion` (a map:
//   Secret name → resourceVersion, for the Secrets of `spec.managed.roles[].passwordSecret`).
// - Managed roles: `status.managedRolesStatus` (ManagedRoles): `.byStatus` (map of
//   "reconciled" | "not-managed" | "pending-reconciliation" | "reserved" → role names),
//   `.cannotReconcile` (role name → errors) and `.passwordStatus` (role name → PasswordState
//   `{ transactionID: int64, resourceVersion: string }`), where `resourceVersion` is the
//   resourceVersion of the role's passwordSecret that the instance manager last applied.
// - Health: `status.phase == "Cluster in healthy state"`, `status.readyInstances`, the
//   `Ready` condition in `status.conditions`, `status.currentPrimary` (a Pod name).
// - Roles in the spec: `spec.managed.roles[]` (RoleConfiguration): `name`, `ensure`
//   ("present" | "absent"), `passwordSecret: { name }` (a kubernetes.io/basic-auth Secret
//   with `username` and `password`), `login`, `inherit`, `inRoles`, `connectionLimit`,
//   `validUntil`, `disablePassword`, `superuser`, `createdb`, `createrole`, `replication`,
//   `bypassrls`, `comment`.
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { chmod, chown, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect, createServer, type Server } from "node:net";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { stringify as toYaml } from "yaml";
import { kubeRequest } from "../kube-client.ts";
import { postgresBinDir } from "../postgres.ts";
import { cacheDir, type InfraConnection } from "../servers.ts";

const execFileAsync = promisify(execFile);
const here = import.meta.dirname;

/** The CNPG version test/infra/cnpg/go.mod pins (and build-cnpg.sh checks). */
export const CNPG_VERSION = "1.30.0";
export const cnpgManagerBinary = path.join(cacheDir, "bin", "cnpg-manager");
export const cnpgCrdDir = path.join(cacheDir, "cnpg-crds");

/** Network namespaces and temp dirs of a harness are named `cnpgh-<tag>-…`. */
const PREFIX = "cnpgh";
/** Its bridge and veths `cnh<tag>` and `cnh<tag>v<n>` (interface names have at most 15 characters). */
const LINK_PREFIX = "cnh";
/** Harnesses started by this process so far: the tag is this process's pid in base 36 and one letter a–t. */
let harnessCount = 0;
/** The pid of the process that made a tag, or undefined when it is not one. */
function tagOwner(tag: string): number | undefined {
  const match = /^([0-9a-z]+)[a-t]$/.exec(tag);
  return match?.[1] ? Number.parseInt(match[1], 36) : undefined;
}
/** The /16 the harness takes a /24 of per run, inside network namespaces it creates. */
const SUBNET_BASE = "10.213";
const API_PORT_IN_NAMESPACE = 443;
export const PHASE_HEALTHY = "Cluster in healthy state";

// ---------------------------------------------------------------------------------------
// Requirements

/** What this machine lacks to run the harness (empty when nothing). */
export function missingRequirements(): string[] {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (network and mount namespaces need it)");
  for (const tool of ["ip", "nsenter", "unshare", "setpriv", "chroot", "mount", "openssl", "kubectl"]) {
    if (!onPath(tool)) missing.push(`the \`${tool}\` command`);
  }
  const binDir = postgresBinDir();
  if (!binDir) missing.push("PostgreSQL server binaries (/usr/lib/postgresql/<major>/bin)");
  if (!userIds("postgres")) missing.push("a `postgres` user to run PostgreSQL as");
  return missing;
}

function onPath(tool: string): boolean {
  return (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin")
    .split(":")
    .concat(["/usr/sbin", "/sbin"])
    .some((dir) => existsSync(path.join(dir, tool)));
}

function userIds(user: string): { uid: number; gid: number } | undefined {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${user}:`));
  if (!line) return undefined;
  const [, , uid, gid] = line.split(":");
  return uid && gid && Number(uid) !== 0 ? { uid: Number(uid), gid: Number(gid) } : undefined;
}

/**
 * Makes sure the binary, the CRDs and the machine's capabilities are there. Under CI=true a
 * missing binary is an error (.ci/run builds it first); elsewhere build-cnpg.sh runs (slow
 * the first time, quick when current). A missing capability is always an error.
 */
export async function ensureCnpg(): Promise<void> {
  const missing = missingRequirements();
  if (missing.length > 0) {
    throw new Error(`the CNPG test harness cannot run here: missing ${missing.join("; ")}`);
  }
  const have = () => existsSync(cnpgManagerBinary) && existsSync(path.join(cnpgCrdDir, "postgresql.cnpg.io_clusters.yaml"));
  if (process.env.CI === "true") {
    if (!have()) {
      throw new Error(
        `CloudNativePG is not built: missing ${cnpgManagerBinary} or ${cnpgCrdDir}; ` +
          "run test/infra/setup.sh (or test/infra/build-cnpg.sh) before the integration tests (CI must not skip them)",
      );
    }
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn("bash", [path.join(here, "..", "build-cnpg.sh")], { stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`test/infra/build-cnpg.sh failed (exit ${code})`))));
  });
  if (!have()) throw new Error("test/infra/build-cnpg.sh ran but the CNPG binary or CRDs are still missing");
}

// ---------------------------------------------------------------------------------------
// Processes: every child is killed when this process exits, and a watchdog removes the
// run's namespaces, links and temp dir if this process dies without stop().

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of liveChildren) child.kill("SIGKILL");
  });
}

interface Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  running(): boolean;
}

/** Registers a child for the exit hook and in `owned` (the harness's own set). */
function track(child: ChildProcess, owned: Set<ChildProcess>): Proc {
  installExitHook();
  let running = child.pid !== undefined;
  if (running) {
    liveChildren.add(child);
    owned.add(child);
  }
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? (signal ? 128 : null)));
    child.once("error", () => resolve(null));
  }).then((code) => {
    running = false;
    liveChildren.delete(child);
    owned.delete(child);
    return code;
  });
  return { child, exited, running: () => running };
}

async function run(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { timeout: 60_000 });
    return stdout;
  } catch (error) {
    const stderr = ((error as { stderr?: string }).stderr ?? "").trim();
    throw new Error(`${command} ${args.join(" ")} failed: ${stderr || (error as Error).message}`);
  }
}

/** Direct children of a process (the fork nsenter/unshare make). */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes namespaces, links and temp dirs of harness runs whose process is gone. */
async function removeLeftovers(): Promise<void> {
  const tags = new Set<string>();
  const netns = await run("ip", ["netns", "list"]).catch(() => "");
  for (const match of netns.matchAll(new RegExp(`^${PREFIX}-([0-9a-z]+)-`, "gm"))) tags.add(match[1] ?? "");
  const links = await run("ip", ["-o", "link", "show"]).catch(() => "");
  for (const match of links.matchAll(new RegExp(`^\\d+: ${LINK_PREFIX}([0-9a-z]*[a-t])(?:v\\d+)?[@:]`, "gm"))) tags.add(match[1] ?? "");
  for (const entry of readdirSync(os.tmpdir())) {
    const match = new RegExp(`^${PREFIX}-([0-9a-z]+)-`).exec(entry);
    if (match?.[1]) tags.add(match[1]);
  }
  for (const tag of tags) {
    const owner = tagOwner(tag);
    if (owner === undefined || isAlive(owner)) continue;
    const dirs = readdirSync(os.tmpdir()).filter((e) => e.startsWith(`${PREFIX}-${tag}-`));
    await run("sh", [path.join(here, "cleanup.sh"), tag]).catch(() => "");
    for (const dir of dirs) rmSync(path.join(os.tmpdir(), dir), { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// Kubernetes objects (only the fields the harness reads)

interface ObjectMeta {
  name: string;
  namespace?: string;
  uid: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  deletionTimestamp?: string;
  ownerReferences?: { uid: string; kind: string; name: string }[];
  finalizers?: string[];
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string; optional?: boolean };
    configMapKeyRef?: { name: string; key: string; optional?: boolean };
    fieldRef?: { fieldPath: string };
  };
}

interface Probe {
  httpGet?: { path?: string; port: number | string; scheme?: string };
  periodSeconds?: number;
  timeoutSeconds?: number;
}

interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  envFrom?: { secretRef?: { name: string }; configMapRef?: { name: string }; prefix?: string }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe;
  startupProbe?: Probe;
  workingDir?: string;
}

interface Volume {
  name: string;
  persistentVolumeClaim?: { claimName: string };
  emptyDir?: Record<string, unknown>;
  secret?: { secretName: string; items?: { key: string; path: string }[] };
  configMap?: { name: string; items?: { key: string; path: string }[] };
  [other: string]: unknown;
}

interface PodSpec {
  nodeName?: string;
  hostname?: string;
  serviceAccountName?: string;
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
  restartPolicy?: string;
  terminationGracePeriodSeconds?: number;
}

interface Pod {
  metadata: ObjectMeta;
  spec: PodSpec;
  status?: { phase?: string };
}

interface Job {
  metadata: ObjectMeta;
  spec: { template: { metadata?: { labels?: Record<string, string> }; spec: PodSpec } };
  status?: { completionTime?: string; conditions?: { type: string; status: string }[] };
}

interface List<T> {
  items: T[];
}

/** A Cluster as read back: the spec and status fields the harness and its tests use. */
export interface ClusterObject {
  metadata: ObjectMeta;
  spec: Record<string, unknown> & { instances?: number };
  status?: {
    phase?: string;
    phaseReason?: string;
    readyInstances?: number;
    instances?: number;
    currentPrimary?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    secretsResourceVersion?: {
      applicationSecretVersion?: string;
      superuserSecretVersion?: string;
      managedRoleSecretVersion?: Record<string, string>;
      [key: string]: unknown;
    };
    managedRolesStatus?: {
      byStatus?: Record<string, string[]>;
      cannotReconcile?: Record<string, string[]>;
      passwordStatus?: Record<string, { transactionID?: number; resourceVersion?: string }>;
    };
    [key: string]: unknown;
  };
}

interface Secret {
  metadata: ObjectMeta;
  data?: Record<string, string>;
}

const b64decode = (value: string) => Buffer.from(value, "base64").toString("utf8");

// ---------------------------------------------------------------------------------------
// The harness

export interface StartCnpgOptions {
  /**
   * Namespaces the operator watches and the harness runs pods in (created when missing).
   * Default: one new namespace, `cnpg-<random>`.
   */
  readonly namespaces?: readonly string[];
  /** How long to wait for the operator to come up (default 60 s). */
  readonly startTimeoutMs?: number;
}

export interface CnpgClusterInfo {
  readonly namespace: string;
  readonly name: string;
  /** The primary's address, reachable from the test process (the root network namespace). */
  readonly host: string;
  readonly port: 5432;
  /** PEM of the cluster's CA (`<cluster>-ca`, key ca.crt), which signed the server certificate. */
  readonly caPem: string;
  /**
   * A name the server certificate covers (`<cluster>-rw`): its SANs are the Services' DNS
   * names, never the pod's address, so verify-full connects to `host` with this as the TLS
   * server name.
   */
  readonly tlsServerName: string;
  /** `<cluster>-app` (CNPG's Secret for the application owner). */
  readonly appSecretName: string;
  /** Present when spec.enableSuperuserAccess is true. A secret: register it where the test tracks secrets. */
  readonly superuser?: { readonly username: string; readonly password: string };
  /** Time from the create to a healthy status (0 when read by clusterInfo). */
  readonly readyMs: number;
}

export interface CnpgHarness {
  /** Names this harness's network namespaces (`cnpgh-<tag>-…`) and links (`cnh<tag>…`). */
  readonly tag: string;
  /** The namespaces this operator watches; the first is the default for tests. */
  readonly namespaces: readonly string[];
  readonly namespace: string;
  readonly operatorNamespace: string;
  /** Logs of the operator and of every container (operator.log, <ns>_<pod>_<container>.log). */
  readonly logDir: string;
  /**
   * Creates a Cluster (`spec` is merged over a one-instance, 1Gi, PostgreSQL-<machine
   * major> default) and waits until it is healthy with all instances ready.
   */
  createCluster(namespace: string, name: string, spec?: Record<string, unknown>, options?: { timeoutMs?: number }): Promise<CnpgClusterInfo>;
  getCluster(namespace: string, name: string): Promise<ClusterObject>;
  /**
   * Where the Cluster's primary is now (readyMs 0). A pod the operator recreates (a restart,
   * a rollout) gets a new sandbox and a new address: read it again after such a change.
   */
  clusterInfo(namespace: string, name: string): Promise<CnpgClusterInfo>;
  /** Polls the Cluster until `check` holds; on timeout says `what` did not happen and shows the status. */
  waitForCluster(
    namespace: string,
    name: string,
    what: string,
    check: (cluster: ClusterObject) => boolean,
    options?: { timeoutMs?: number; intervalMs?: number },
  ): Promise<ClusterObject>;
  /** Deletes the Cluster and, as the garbage collector would, everything it owns; waits until its pods are gone. */
  deleteCluster(namespace: string, name: string): Promise<void>;
  stop(): Promise<void>;
}

type Conn = Pick<InfraConnection, "server" | "caPem" | "adminToken" | "caFile">;

export async function startCnpg(infra: Conn, options: StartCnpgOptions = {}): Promise<CnpgHarness> {
  await ensureCnpg();
  await removeLeftovers();
  const harness = new Harness(infra, options);
  try {
    await harness.start(options.startTimeoutMs ?? 60_000);
  } catch (error) {
    await harness.stop();
    throw error;
  }
  return harness.api();
}

interface Sandbox {
  readonly netns: string;
  readonly veth: string;
  readonly ip: string;
  readonly dir: string;
  readonly unshare: Proc;
  readonly forwarder: Proc;
  /** PID (root namespace) of the sandbox's PID 1, which containers join. */
  readonly pid1: number;
}

interface PodRun {
  readonly key: string;
  readonly uid: string;
  readonly kind: "pod" | "job";
  readonly namespace: string;
  readonly name: string;
  /** The Cluster it belongs to (label cnpg.io/cluster). */
  readonly cluster: string;
  sandbox?: Sandbox;
  main?: Proc;
  stopping: boolean;
  done: Promise<void>;
  ready: boolean;
  started: boolean;
  restartCount: number;
}

class Harness {
  readonly tag: string;
  /** Every process this harness started and that still runs. */
  private readonly children = new Set<ChildProcess>();
  readonly namespaces: string[];
  readonly operatorNamespace: string;
  tmpDir = "";
  logDir = "";
  private subnet = "";
  private bridge = "";
  private nextHost = 3;
  private nextVeth = 0;
  private apiSocket = "";
  private apiProxy: Server | undefined;
  private operator: Proc | undefined;
  private operatorSandbox: Omit<Sandbox, "unshare" | "pid1" | "dir"> | undefined;
  private watchdog: ChildProcess | undefined;
  private readonly runs = new Map<string, PodRun>();
  private loop: Promise<void> | undefined;
  private stopped = false;
  private readonly nodeName: string;
  private readonly postgresUser: { uid: number; gid: number };
  private readonly pgBinDir: string;
  private pgVersion = "";
  private readonly apiPort: number;
  private onExit: (() => void) | undefined;
  private readonly infra: Conn;

  constructor(infra: Conn, options: StartCnpgOptions) {
    this.infra = infra;
    if (harnessCount >= 20) throw new Error("startCnpg: at most 20 harnesses per process");
    this.tag = `${process.pid.toString(36)}${String.fromCharCode(97 + harnessCount++)}`;
    const suffix = randomBytes(3).toString("hex");
    this.namespaces = [...(options.namespaces ?? [`cnpg-${suffix}`])];
    if (this.namespaces.length === 0) throw new Error("startCnpg: namespaces must not be empty");
    this.operatorNamespace = `cnpg-system-${suffix}`;
    this.nodeName = `${PREFIX}-${this.tag}-${suffix}`;
    this.postgresUser = userIds("postgres") as { uid: number; gid: number };
    this.pgBinDir = postgresBinDir() as string;
    this.apiPort = Number(new URL(infra.server).port);
  }

  api(): CnpgHarness {
    return {
      tag: this.tag,
      namespaces: this.namespaces,
      namespace: this.namespaces[0] as string,
      operatorNamespace: this.operatorNamespace,
      logDir: this.logDir,
      createCluster: (ns, name, spec, options) => this.createCluster(ns, name, spec ?? {}, options?.timeoutMs ?? 180_000),
      getCluster: (ns, name) => this.getCluster(ns, name),
      clusterInfo: (ns, name) => this.clusterInfo(ns, name),
      waitForCluster: (ns, name, what, check, options) =>
        this.waitForCluster(ns, name, what, check, options?.timeoutMs ?? 60_000, options?.intervalMs ?? 100),
      deleteCluster: (ns, name) => this.deleteCluster(ns, name),
      stop: () => this.stop(),
    };
  }

  // -- start / stop ---------------------------------------------------------------------

  async start(timeoutMs: number): Promise<void> {
    const begin = Date.now();
    this.tmpDir = await mkdtemp(path.join(os.tmpdir(), `${PREFIX}-${this.tag}-`));
    await chmod(this.tmpDir, 0o755);
    this.logDir = path.join(this.tmpDir, "logs");
    await mkdir(this.logDir);
    this.startWatchdog();
    this.onExit = () => {
      // Synchronous last resort; the watchdog does the same if even this does not run.
      for (const child of this.children) child.kill("SIGKILL");
      try {
        execFileSync("sh", [path.join(here, "cleanup.sh"), this.tag, this.removableTmp()], { stdio: "ignore", timeout: 20_000 });
      } catch {}
    };
    process.on("exit", this.onExit);

    const version = await run(path.join(this.pgBinDir, "postgres"), ["--version"]);
    this.pgVersion = /(\d+(?:\.\d+)?)/.exec(version)?.[1] ?? "";
    if (!this.pgVersion) throw new Error(`cannot read the PostgreSQL version from: ${version.trim()}`);

    await Promise.all([this.installCrds(), this.prepareNamespaces(), this.createNode()]);
    await this.startApiProxy();
    await this.createNetwork();
    await this.startOperator(timeoutMs - (Date.now() - begin));
    this.loop = this.kubeletLoop();
    console.error(
      `[cnpg] operator ${CNPG_VERSION} up in ${((Date.now() - begin) / 1000).toFixed(1)}s (namespaces ${this.namespaces.join(", ")}, network ${this.subnet}0/24, logs in ${this.logDir})`,
    );
  }

  /** The temp dir, unless CNPG_ROTATOR_KEEP_TMP asks to keep it (to read the logs). */
  private removableTmp(): string {
    if (process.env.CNPG_ROTATOR_KEEP_TMP) return "";
    return this.tmpDir;
  }

  private startWatchdog(): void {
    // Its stdin is a pipe from us, closed by the kernel however this process dies.
    const watchdog = spawn(
      "sh",
      ["-c", 'cat >/dev/null; sh "$1" "$2" "$3"', "cnpg-watchdog", path.join(here, "cleanup.sh"), this.tag, this.removableTmp()],
      { stdio: ["pipe", "ignore", "ignore"], detached: true },
    );
    watchdog.unref();
    (watchdog.stdin as unknown as { unref(): void }).unref();
    this.watchdog = watchdog;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.loop?.catch(() => {});
    await Promise.all([...this.runs.values()].map((r) => this.teardown(r, 2_000)));
    if (this.operator?.running()) {
      this.operator.child.kill("SIGTERM");
      const timer = setTimeout(() => this.operator?.child.kill("SIGKILL"), 5_000);
      await this.operator.exited;
      clearTimeout(timer);
    }
    for (const child of this.children) child.kill("SIGKILL");
    await new Promise<void>((resolve) => (this.apiProxy ? this.apiProxy.close(() => resolve()) : resolve()));
    await this.kube(`/api/v1/nodes/${this.nodeName}`, { method: "DELETE" }).catch(() => {});
    if (this.tmpDir) await run("sh", [path.join(here, "cleanup.sh"), this.tag, this.removableTmp()]).catch(() => "");
    if (this.onExit) process.off("exit", this.onExit);
    this.watchdog?.kill("SIGKILL");
    this.watchdog?.stdin?.destroy();
  }

  // -- cluster-level objects ---------------------------------------------------------------

  private kube<T = unknown>(apiPath: string, options: Parameters<typeof kubeRequest>[2] = {}) {
    return kubeRequest<T>(this.infra, apiPath, options);
  }

  private async installCrds(): Promise<void> {
    // Server-side apply: idempotent, and concurrent harnesses converge instead of conflicting.
    // (The clusters CRD is too large for a client-side apply's last-applied annotation.)
    const kubeconfig = path.join(this.tmpDir, "admin.kubeconfig");
    await writeFile(kubeconfig, this.kubeconfig(this.infra.server), { mode: 0o600 });
    await run("kubectl", ["--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "--field-manager=cnpg-harness", "-f", cnpgCrdDir]);
    await run("kubectl", ["--kubeconfig", kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "-f", cnpgCrdDir]);
  }

  private async prepareNamespaces(): Promise<void> {
    for (const ns of [...this.namespaces, this.operatorNamespace]) {
      const created = await this.kube("/api/v1/namespaces", { method: "POST", body: { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } } });
      if (created.status !== 201 && created.status !== 409) throw new Error(`creating namespace ${ns}: HTTP ${created.status}`);
    }
  }

  private async createNode(): Promise<void> {
    // What a kubelet registers; the operator lists Nodes and reads the pods' nodeName.
    const created = await this.kube("/api/v1/nodes", {
      method: "POST",
      body: { apiVersion: "v1", kind: "Node", metadata: { name: this.nodeName, labels: { "kubernetes.io/hostname": this.nodeName } } },
    });
    if (created.status !== 201) throw new Error(`creating Node ${this.nodeName}: HTTP ${created.status}`);
    const now = new Date().toISOString();
    await this.kube(`/api/v1/nodes/${this.nodeName}/status`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: {
        status: {
          conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "cnpg harness", lastHeartbeatTime: now, lastTransitionTime: now }],
          addresses: [{ type: "Hostname", address: this.nodeName }],
        },
      },
    });
  }

  private kubeconfig(server: string): string {
    return toYaml({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "test", cluster: { server, "certificate-authority-data": Buffer.from(this.infra.caPem).toString("base64") } }],
      users: [{ name: "admin", user: { token: this.infra.adminToken } }],
      contexts: [{ name: "admin", context: { cluster: "test", user: "admin" } }],
      "current-context": "admin",
    });
  }

  private async startApiProxy(): Promise<void> {
    this.apiSocket = path.join(this.tmpDir, "apiserver.sock");
    const server = createServer((client) => {
      const upstream = connect(this.apiPort, "127.0.0.1");
      client.pipe(upstream).pipe(client);
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on("error", close);
      upstream.on("error", close);
      client.on("close", close);
      upstream.on("close", close);
    });
    server.unref();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.apiSocket, () => resolve());
    });
    await chmod(this.apiSocket, 0o666);
    this.apiProxy = server;
  }

  // -- network -----------------------------------------------------------------------------

  private async createNetwork(): Promise<void> {
    this.bridge = `${LINK_PREFIX}${this.tag}`;
    const used = () => run("sh", ["-c", "ip -o -4 addr show; ip -4 route show table all"]).catch(() => "");
    const start = process.pid % 200;
    for (let i = 0; i < 254; i++) {
      const x = ((start + i) % 254) + 1;
      const prefix = `${SUBNET_BASE}.${x}.`;
      if ((await used()).includes(prefix)) continue;
      await run("ip", ["link", "add", this.bridge, "type", "bridge"]);
      await run("ip", ["addr", "add", `${prefix}1/24`, "dev", this.bridge]);
      await run("ip", ["link", "set", this.bridge, "up"]);
      // Another run may have picked the same /24 at the same moment: then try the next one.
      const clash = (await run("ip", ["-o", "-4", "addr", "show"])).split("\n").filter((l) => l.includes(` ${prefix}`) && !l.includes(` ${this.bridge} `));
      if (clash.length === 0) {
        this.subnet = prefix;
        return;
      }
      await run("ip", ["link", "delete", this.bridge]);
    }
    throw new Error(`no free /24 in ${SUBNET_BASE}.0.0/16 for the harness network`);
  }

  /** A network namespace on the bridge with its own address and an apiserver forwarder on 127.0.0.1:443. */
  private async createNetns(label: string, host: number): Promise<Omit<Sandbox, "unshare" | "pid1" | "dir">> {
    if (host > 254) throw new Error("the harness network is out of addresses (250 sandboxes per run)");
    const netns = `${PREFIX}-${this.tag}-${label}`;
    const veth = `${LINK_PREFIX}${this.tag}v${this.nextVeth++}`;
    const ip = `${this.subnet}${host}`;
    await run("ip", ["netns", "add", netns]);
    await run("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns]);
    await run("ip", ["link", "set", veth, "master", this.bridge, "up"]);
    await run("ip", ["-n", netns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
    await run("ip", ["-n", netns, "link", "set", "eth0", "up"]);
    await run("ip", ["-n", netns, "link", "set", "lo", "up"]);
    // No default route: nothing in the namespace can reach anything but this bridge.
    const forwarder = track(
      spawn("nsenter", [`--net=/run/netns/${netns}`, "--", process.execPath, path.join(here, "forward.ts"), "127.0.0.1", String(API_PORT_IN_NAMESPACE), this.apiSocket], {
        stdio: ["pipe", "pipe", "pipe"],
      }),
      this.children,
    );
    await waitForLine(forwarder, "listening", `apiserver forwarder in ${netns}`, 15_000);
    return { netns, veth, ip, forwarder };
  }

  private async removeNetns(sandbox: { netns: string; veth: string; forwarder: Proc }): Promise<void> {
    sandbox.forwarder.child.kill("SIGKILL");
    await sandbox.forwarder.exited;
    const pids = (await run("ip", ["netns", "pids", sandbox.netns]).catch(() => "")).split(/\s+/).filter(Boolean);
    for (const pid of pids) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
    await run("ip", ["netns", "delete", sandbox.netns]).catch(() => "");
    await run("ip", ["link", "delete", sandbox.veth]).catch(() => "");
  }

  // -- operator ----------------------------------------------------------------------------

  private async startOperator(timeoutMs: number): Promise<void> {
    const dir = path.join(this.tmpDir, "operator");
    const certDir = path.join(dir, "webhook-certs");
    const pluginDir = path.join(dir, "plugins");
    await mkdir(certDir, { recursive: true });
    await mkdir(pluginDir, { recursive: true });
    // The operator image ships its binary as operator/manager_<GOARCH> beside the working
    // directory; the operator records its hash per architecture in the Cluster status.
    await mkdir(path.join(dir, "operator"));
    const goArch = ({ x64: "amd64", arm64: "arm64", ppc64: "ppc64le", s390x: "s390x" } as Record<string, string>)[process.arch] ?? process.arch;
    await symlink(cnpgManagerBinary, path.join(dir, "operator", `manager_${goArch}`));
    // WEBHOOK_CERT_DIR makes the operator use these (names as OLM provides them) instead of
    // creating its own PKI and patching webhook configurations, none of which exist here.
    const service = `cnpg-webhook-service.${this.operatorNamespace}.svc`;
    await run("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
      "-subj", `/CN=${service}`, "-addext", `subjectAltName=DNS:${service}`,
      "-keyout", path.join(certDir, "apiserver.key"), "-out", path.join(certDir, "apiserver.crt"),
    ]);
    const kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(kubeconfig, this.kubeconfig(`https://127.0.0.1:${API_PORT_IN_NAMESPACE}`), { mode: 0o600 });

    this.operatorSandbox = await this.createNetns("op", 2);
    const logFile = path.join(this.logDir, "operator.log");
    const fd = openSync(logFile, "a");
    this.operator = track(
      spawn(
        "nsenter",
        [
          `--net=/run/netns/${this.operatorSandbox.netns}`,
          "--",
          cnpgManagerBinary,
          "controller",
          "--leader-elect=false",
          "--metrics-bind-address=127.0.0.1:8080",
          "--max-concurrent-reconciles=4",
        ],
        {
          cwd: dir,
          stdio: ["ignore", fd, fd],
          env: {
            PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
            HOME: dir,
            KUBECONFIG: kubeconfig,
            OPERATOR_NAMESPACE: this.operatorNamespace,
            WATCH_NAMESPACE: this.namespaces.join(","),
            WEBHOOK_CERT_DIR: certDir,
            PLUGIN_SOCKET_DIR: pluginDir,
          },
        },
      ),
      this.children,
    );
    closeSync(fd);
    // Up once it logs that its controllers started (it has no probe reachable from here
    // other than the webhook port inside its namespace).
    const deadline = Date.now() + Math.max(timeoutMs, 10_000);
    for (;;) {
      const log = await readFile(logFile, "utf8").catch(() => "");
      if (/"Starting workers".*"controller":"cluster"/.test(log)) return;
      if (!this.operator.running()) throw new Error(`the CNPG operator exited at start; end of ${logFile}:\n${tail(log)}`);
      if (Date.now() > deadline) throw new Error(`the CNPG operator did not start its cluster controller in time; end of ${logFile}:\n${tail(log)}`);
      await sleep(200);
    }
  }

  // -- clusters ----------------------------------------------------------------------------

  private checkNamespace(namespace: string): void {
    if (!this.namespaces.includes(namespace)) {
      throw new Error(`namespace ${namespace} is not watched by this harness (it watches ${this.namespaces.join(", ")}): pass it to startCnpg({ namespaces })`);
    }
  }

  private clusterPath(namespace: string, name = ""): string {
    return `/apis/postgresql.cnpg.io/v1/namespaces/${encodeURIComponent(namespace)}/clusters${name ? `/${encodeURIComponent(name)}` : ""}`;
  }

  async getCluster(namespace: string, name: string): Promise<ClusterObject> {
    const response = await this.kube<ClusterObject>(this.clusterPath(namespace, name));
    if (response.status !== 200) throw new Error(`reading Cluster ${namespace}/${name}: HTTP ${response.status}`);
    return response.body;
  }

  async waitForCluster(
    namespace: string,
    name: string,
    what: string,
    check: (cluster: ClusterObject) => boolean,
    timeoutMs: number,
    intervalMs: number,
  ): Promise<ClusterObject> {
    const deadline = Date.now() + timeoutMs;
    let last: ClusterObject | undefined;
    for (;;) {
      last = await this.getCluster(namespace, name).catch(() => last);
      if (last && check(last)) return last;
      if (Date.now() > deadline) {
        throw new Error(
          `Cluster ${namespace}/${name}: ${what} did not happen within ${timeoutMs / 1000}s; status: ${JSON.stringify(summarizeStatus(last))}` +
            `\n${await this.diagnostics()}`,
        );
      }
      await sleep(intervalMs);
    }
  }

  private async createCluster(namespace: string, name: string, spec: Record<string, unknown>, timeoutMs: number): Promise<CnpgClusterInfo> {
    this.checkNamespace(namespace);
    const body = {
      apiVersion: "postgresql.cnpg.io/v1",
      kind: "Cluster",
      metadata: { name, namespace },
      spec: {
        instances: 1,
        // The harness runs the machine's PostgreSQL whatever the image; the operator reads the
        // major version from this tag, so it names the version that really runs.
        imageName: `ghcr.io/cloudnative-pg/postgresql:${this.pgVersion}`,
        storage: { size: "1Gi" },
        ...spec,
      },
    };
    const begin = Date.now();
    const created = await this.kube(this.clusterPath(namespace), { method: "POST", body });
    if (created.status !== 201) {
      throw new Error(`creating Cluster ${namespace}/${name}: HTTP ${created.status} ${JSON.stringify((created.body as { message?: string }).message ?? "")}`);
    }
    const cluster = await this.waitForCluster(namespace, name, "healthy with every instance ready", isHealthy, timeoutMs, 200);
    return this.clusterInfo(namespace, name, cluster, Date.now() - begin);
  }

  async clusterInfo(namespace: string, name: string, known?: ClusterObject, readyMs = 0): Promise<CnpgClusterInfo> {
    const cluster = known ?? (await this.getCluster(namespace, name));
    const primary = cluster.status?.currentPrimary ?? "";
    const pod = await this.kube<{ status?: { podIP?: string } }>(`/api/v1/namespaces/${namespace}/pods/${encodeURIComponent(primary)}`);
    const host = pod.body.status?.podIP;
    if (!primary || pod.status !== 200 || !host) throw new Error(`Cluster ${namespace}/${name}: no primary pod with an address (currentPrimary ${primary || "unset"})`);
    const ca = await this.readSecret(namespace, `${name}-ca`);
    const caPem = b64decode(ca?.data?.["ca.crt"] ?? "");
    if (!caPem) throw new Error(`Cluster ${namespace}/${name}: Secret ${name}-ca has no ca.crt`);
    let superuser: CnpgClusterInfo["superuser"];
    if (cluster.spec.enableSuperuserAccess === true) {
      const secret = await this.readSecret(namespace, `${name}-superuser`);
      if (secret?.data?.username && secret.data.password) {
        superuser = { username: b64decode(secret.data.username), password: b64decode(secret.data.password) };
      }
    }
    return {
      namespace,
      name,
      host,
      port: 5432,
      caPem,
      tlsServerName: `${name}-rw`,
      appSecretName: `${name}-app`,
      ...(superuser ? { superuser } : {}),
      readyMs,
    };
  }

  private async readSecret(namespace: string, name: string): Promise<Secret | undefined> {
    const response = await this.kube<Secret>(`/api/v1/namespaces/${namespace}/secrets/${encodeURIComponent(name)}`);
    return response.status === 200 ? response.body : undefined;
  }

  async deleteCluster(namespace: string, name: string): Promise<void> {
    this.checkNamespace(namespace);
    const cluster = await this.kube<ClusterObject>(this.clusterPath(namespace, name));
    if (cluster.status === 404) return;
    const uid = cluster.body.metadata.uid;
    await this.kube(this.clusterPath(namespace, name), { method: "DELETE" });
    // No kube-controller-manager: do the garbage collector's part for what the Cluster owns.
    const kinds = [
      "/api/v1/namespaces/NS/pods",
      "/apis/batch/v1/namespaces/NS/jobs",
      "/api/v1/namespaces/NS/services",
      "/api/v1/namespaces/NS/secrets",
      "/api/v1/namespaces/NS/configmaps",
      "/api/v1/namespaces/NS/serviceaccounts",
      "/apis/rbac.authorization.k8s.io/v1/namespaces/NS/roles",
      "/apis/rbac.authorization.k8s.io/v1/namespaces/NS/rolebindings",
      "/apis/policy/v1/namespaces/NS/poddisruptionbudgets",
      "/api/v1/namespaces/NS/persistentvolumeclaims",
    ].map((p) => p.replace("NS", encodeURIComponent(namespace)));
    const owned = async (kind: string) => {
      const list = await this.kube<List<{ metadata: ObjectMeta }>>(kind);
      return (list.body.items ?? []).filter((item) => item.metadata.ownerReferences?.some((ref) => ref.uid === uid));
    };
    const remove = async (kind: string) => {
      for (const item of await owned(kind)) await this.kube(`${kind}/${encodeURIComponent(item.metadata.name)}`, { method: "DELETE" });
    };
    const deadline = Date.now() + 60_000;
    const until = async (what: string, done: () => Promise<boolean>) => {
      while (!(await done())) {
        if (Date.now() > deadline) throw new Error(`Cluster ${namespace}/${name}: ${what} within 60s`);
        await sleep(200);
      }
    };
    const [podsPath, jobsPath] = kinds as [string, string];
    const pvcsPath = kinds.at(-1) as string;
    // Pods first, and wait for them: the instance manager needs its ServiceAccount, Role and
    // Secrets while it shuts down (WAL archiving, releasing its lease).
    await remove(podsPath);
    await remove(jobsPath);
    const runsLeft = () => [...this.runs.values()].filter((r) => r.namespace === namespace && r.cluster === name);
    await until("its pods did not go away", async () => (await owned(podsPath)).length === 0 && runsLeft().length === 0);
    for (const kind of kinds.slice(2)) await remove(kind);
    // The pvc-protection controller's part: a claim no pod uses loses its finalizer.
    for (const pvc of await owned(pvcsPath)) {
      await this.kube(`${pvcsPath}/${encodeURIComponent(pvc.metadata.name)}`, {
        method: "PATCH",
        contentType: "application/merge-patch+json",
        body: { metadata: { finalizers: null } },
      });
      rmSync(this.pvcDir(namespace, pvc.metadata.name), { recursive: true, force: true });
    }
    await until("its PersistentVolumeClaims did not go away", async () => (await owned(pvcsPath)).length === 0);
  }

  private async diagnostics(): Promise<string> {
    const operatorLog = await readFile(path.join(this.logDir, "operator.log"), "utf8").catch(() => "");
    const parts = [`end of operator.log:\n${tail(operatorLog, 15)}`];
    for (const file of readdirSync(this.logDir).filter((f) => f !== "operator.log")) {
      parts.push(`end of ${file}:\n${tail(await readFile(path.join(this.logDir, file), "utf8").catch(() => ""), 10)}`);
    }
    return parts.join("\n");
  }

  // -- the kubelet's part --------------------------------------------------------------------

  private async kubeletLoop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.syncOnce();
      } catch (error) {
        if (!this.stopped) console.error(`[cnpg] kubelet sync failed (retrying): ${(error as Error).message}`);
      }
      await sleep(150);
    }
  }

  private async syncOnce(): Promise<void> {
    const seen = new Set<string>();
    for (const ns of this.namespaces) {
      const [jobs, pods] = await Promise.all([
        this.kube<List<Job>>(`/apis/batch/v1/namespaces/${ns}/jobs?labelSelector=cnpg.io%2Fcluster`),
        this.kube<List<Pod>>(`/api/v1/namespaces/${ns}/pods?labelSelector=cnpg.io%2Fcluster`),
      ]);
      for (const job of jobs.body.items ?? []) {
        const key = `job/${job.metadata.uid}`;
        seen.add(key);
        const existing = this.runs.get(key);
        const finished = job.status?.completionTime || job.status?.conditions?.some((c) => c.type === "Failed" && c.status === "True");
        if (job.metadata.deletionTimestamp) {
          if (existing) void this.teardown(existing, 5_000);
          continue;
        }
        if (!existing && !finished && !this.stopped) this.startJob(job);
      }
      for (const pod of pods.body.items ?? []) {
        const key = `pod/${pod.metadata.uid}`;
        seen.add(key);
        const existing = this.runs.get(key);
        if (pod.metadata.deletionTimestamp) {
          if (existing) {
            if (!existing.stopping) void this.deletePod(existing, pod);
          } else {
            // Never started (or already stopped): confirm the deletion as a kubelet would.
            await this.kube(`/api/v1/namespaces/${ns}/pods/${pod.metadata.name}`, {
              method: "DELETE",
              body: { kind: "DeleteOptions", apiVersion: "v1", gracePeriodSeconds: 0, preconditions: { uid: pod.metadata.uid } },
            });
          }
          continue;
        }
        const terminal = pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed";
        if (!existing && !terminal && !this.stopped) this.startPod(pod);
      }
    }
    // Objects gone from the API (force-deleted, or their namespace): stop what runs for them.
    for (const [key, r] of this.runs) if (!seen.has(key) && !r.stopping) void this.teardown(r, 5_000);
  }

  private newRun(kind: "pod" | "job", meta: ObjectMeta): PodRun {
    const r: PodRun = {
      key: `${kind}/${meta.uid}`,
      uid: meta.uid,
      kind,
      namespace: meta.namespace ?? "",
      name: meta.name,
      cluster: meta.labels?.["cnpg.io/cluster"] ?? "",
      stopping: false,
      done: Promise.resolve(),
      ready: false,
      started: false,
      restartCount: 0,
    };
    this.runs.set(r.key, r);
    return r;
  }

  private startJob(job: Job): void {
    const r = this.newRun("job", job.metadata);
    const jobPath = `/apis/batch/v1/namespaces/${r.namespace}/jobs/${r.name}/status`;
    const patchStatus = (status: Record<string, unknown>) =>
      this.kube(jobPath, { method: "PATCH", contentType: "application/merge-patch+json", body: { status } });
    r.done = (async () => {
      const startTime = new Date().toISOString();
      let exitCode: number | null = null;
      try {
        await patchStatus({ startTime, active: 1, ready: 0 });
        // The job controller would create a pod named after the Job; the harness runs its template directly.
        const spec = job.spec.template.spec;
        r.sandbox = await this.createSandbox(r, spec, { name: r.name, uid: undefined });
        exitCode = await this.runContainers(r, spec, { podName: r.name, podIP: r.sandbox.ip });
      } catch (error) {
        if (!r.stopping) console.error(`[cnpg] job ${r.namespace}/${r.name}: ${(error as Error).message}`);
      }
      await this.destroySandbox(r);
      if (r.stopping || this.stopped) return;
      const now = new Date().toISOString();
      const result =
        exitCode === 0
          ? {
              active: 0,
              ready: 0,
              succeeded: 1,
              completionTime: now,
              conditions: [
                { type: "SuccessCriteriaMet", status: "True", reason: "CompletionsReached", message: "Reached expected number of succeeded pods", lastProbeTime: now, lastTransitionTime: now },
                { type: "Complete", status: "True", reason: "CompletionsReached", message: "Reached expected number of succeeded pods", lastProbeTime: now, lastTransitionTime: now },
              ],
            }
          : {
              active: 0,
              ready: 0,
              failed: 1,
              conditions: [
                { type: "FailureTarget", status: "True", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit", lastProbeTime: now, lastTransitionTime: now },
                { type: "Failed", status: "True", reason: "BackoffLimitExceeded", message: "Job has reached the specified backoff limit", lastProbeTime: now, lastTransitionTime: now },
              ],
            };
      const patched = await patchStatus(result);
      if (patched.status !== 200) console.error(`[cnpg] job ${r.namespace}/${r.name}: status update HTTP ${patched.status}: ${JSON.stringify(patched.body).slice(0, 400)}`);
    })().finally(() => this.runs.delete(r.key));
  }

  private startPod(pod: Pod): void {
    const r = this.newRun("pod", pod.metadata);
    const podPath = `/api/v1/namespaces/${r.namespace}/pods/${r.name}`;
    r.done = (async () => {
      try {
        if (!pod.spec.nodeName) {
          // The scheduler's part: bind the pod to the harness's node.
          const bound = await this.kube(`${podPath}/binding`, {
            method: "POST",
            body: { apiVersion: "v1", kind: "Binding", metadata: { name: r.name, uid: r.uid }, target: { apiVersion: "v1", kind: "Node", name: this.nodeName } },
          });
          if (bound.status !== 201) throw new Error(`binding to node: HTTP ${bound.status}`);
        }
        const startTime = new Date().toISOString();
        r.sandbox = await this.createSandbox(r, pod.spec, { name: r.name, uid: r.uid });
        const ip = r.sandbox.ip;
        const containers = pod.spec.containers;
        const statusFor = (phase: string, state: Record<string, unknown>) => {
          const now = new Date().toISOString();
          const cond = (type: string, ok: boolean) => ({ type, status: ok ? "True" : "False", lastProbeTime: null, lastTransitionTime: now });
          return {
            status: {
              phase,
              hostIP: `${this.subnet}1`,
              hostIPs: [{ ip: `${this.subnet}1` }],
              podIP: ip,
              podIPs: [{ ip }],
              startTime,
              qosClass: "BestEffort",
              conditions: [
                cond("PodReadyToStartContainers", true),
                cond("Initialized", phase !== "Pending"),
                cond("Ready", r.ready),
                cond("ContainersReady", r.ready),
                cond("PodScheduled", true),
              ],
              initContainerStatuses: (pod.spec.initContainers ?? []).map((c) => ({
                name: c.name,
                image: c.image ?? "",
                imageID: "",
                ready: phase !== "Pending",
                restartCount: 0,
                started: false,
                state: phase === "Pending" ? { running: { startedAt: startTime } } : { terminated: { exitCode: 0, reason: "Completed", startedAt: startTime, finishedAt: startTime } },
              })),
              containerStatuses: containers.map((c) => ({
                name: c.name,
                image: c.image ?? "",
                imageID: "",
                ready: r.ready,
                restartCount: r.restartCount,
                started: r.started,
                state: phase === "Pending" ? { waiting: { reason: "PodInitializing" } } : state,
              })),
            },
          };
        };
        const patch = async (phase: string, state: Record<string, unknown>) => {
          const res = await this.kube(`${podPath}/status`, { method: "PATCH", contentType: "application/merge-patch+json", body: statusFor(phase, state) });
          if (res.status !== 200 && !r.stopping) console.error(`[cnpg] pod ${r.namespace}/${r.name}: status update HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 400)}`);
        };
        await patch("Pending", {});
        for (const init of pod.spec.initContainers ?? []) {
          const code = await this.runContainer(r, pod.spec, init, { podName: r.name, podIP: ip });
          if (code !== 0) throw new Error(`init container ${init.name} exited with ${code}`);
        }
        const main = containers[0] as Container;
        if (containers.length !== 1) throw new Error(`pods with ${containers.length} containers are not emulated (one expected)`);
        // restartPolicy Always: a container that exits while its pod is not being deleted is started again.
        while (!r.stopping && !this.stopped) {
          const runningSince = new Date().toISOString();
          r.started = false;
          r.ready = false;
          const exit = this.runContainer(r, pod.spec, main, { podName: r.name, podIP: ip });
          await patch("Running", { running: { startedAt: runningSince } });
          const probing = this.probe(r, main, ip, () => patch("Running", { running: { startedAt: runningSince } }));
          const code = await exit;
          r.ready = false;
          await probing;
          if (r.stopping || this.stopped) break;
          r.restartCount++;
          console.error(`[cnpg] pod ${r.namespace}/${r.name}: container ${main.name} exited with ${code}; restarting`);
          await patch("Running", { waiting: { reason: "CrashLoopBackOff" } });
          await sleep(1_000);
        }
      } catch (error) {
        if (!r.stopping && !this.stopped) {
          console.error(`[cnpg] pod ${r.namespace}/${r.name}: ${(error as Error).message}`);
          await this.kube(`${podPath}/status`, {
            method: "PATCH",
            contentType: "application/merge-patch+json",
            body: { status: { phase: "Failed", reason: "HarnessError", message: (error as Error).message.slice(0, 300) } },
          });
        }
      }
      await this.destroySandbox(r);
    })().finally(() => this.runs.delete(r.key));
  }

  /** The startup probe, then the readiness probe, of the pod's container, until it exits. */
  private async probe(r: PodRun, container: Container, ip: string, onChange: () => Promise<void>): Promise<void> {
    const main = r.main;
    const probeOnce = async (probe: Probe | undefined) => {
      const get = probe?.httpGet;
      if (!get) return true;
      const port = typeof get.port === "number" ? get.port : (container.ports?.find((p) => p.name === get.port)?.containerPort ?? Number(get.port));
      return httpProbe(`${(get.scheme ?? "HTTP").toLowerCase()}://${ip}:${port}${get.path ?? "/"}`, (probe?.timeoutSeconds ?? 1) * 1_000);
    };
    // Probes run every 0.5 s, faster than the specs' periods, so tests do not wait on them.
    while (main?.running() && !r.stopping) {
      if (!r.started) {
        if (await probeOnce(container.startupProbe)) {
          r.started = true;
          await onChange();
        }
      } else {
        const ready = await probeOnce(container.readinessProbe);
        if (ready !== r.ready && main.running() && !r.stopping) {
          r.ready = ready;
          await onChange();
        }
      }
      await sleep(500);
    }
  }

  private async deletePod(r: PodRun, pod: Pod): Promise<void> {
    await this.teardown(r, Math.min((pod.spec.terminationGracePeriodSeconds ?? 30) * 1_000, 30_000));
    await this.kube(`/api/v1/namespaces/${r.namespace}/pods/${r.name}`, {
      method: "DELETE",
      body: { kind: "DeleteOptions", apiVersion: "v1", gracePeriodSeconds: 0, preconditions: { uid: r.uid } },
    });
  }

  /** SIGTERM to the running container, SIGKILL to the whole sandbox after `graceMs`. */
  private async teardown(r: PodRun, graceMs: number): Promise<void> {
    if (!r.stopping) {
      r.stopping = true;
      const main = r.main;
      if (main?.running()) {
        const inner = childrenOf(main.child.pid ?? -1);
        for (const pid of inner) process.kill(pid, "SIGTERM");
        await Promise.race([main.exited, sleep(graceMs)]);
      }
      if (r.sandbox?.unshare.running()) r.sandbox.unshare.child.kill("SIGKILL");
    }
    await r.done;
  }

  // -- sandboxes and containers -------------------------------------------------------------

  private pvcDir(namespace: string, claim: string): string {
    return path.join(this.tmpDir, "pvc", `${namespace}_${claim}`);
  }

  private async createSandbox(r: PodRun, spec: PodSpec, pod: { name: string; uid: string | undefined }): Promise<Sandbox> {
    const dir = path.join(this.tmpDir, "pods", `${r.namespace}_${r.name}_${r.uid.slice(0, 8)}`);
    await mkdir(path.join(dir, "root"), { recursive: true });
    const { uid, gid } = this.postgresUser;

    // Volumes, as a kubelet materializes them.
    const volumeDirs = new Map<string, string>();
    for (const volume of spec.volumes ?? []) {
      if (volume.persistentVolumeClaim) {
        const target = this.pvcDir(r.namespace, volume.persistentVolumeClaim.claimName);
        await mkdir(target, { recursive: true });
        await chown(target, uid, gid);
        await chmod(target, 0o750);
        volumeDirs.set(volume.name, target);
      } else if (volume.emptyDir) {
        const target = path.join(dir, "volumes", volume.name);
        await mkdir(target, { recursive: true });
        await chmod(target, 0o777);
        volumeDirs.set(volume.name, target);
      } else if (volume.secret || volume.configMap) {
        const target = path.join(dir, "volumes", volume.name);
        await mkdir(target, { recursive: true });
        const data = volume.secret
          ? ((await this.readSecret(r.namespace, volume.secret.secretName))?.data ?? undefined)
          : (await this.kube<{ data?: Record<string, string> }>(`/api/v1/namespaces/${r.namespace}/configmaps/${volume.configMap?.name}`)).body.data;
        if (!data) throw new Error(`volume ${volume.name}: its ${volume.secret ? "Secret" : "ConfigMap"} does not exist`);
        const items = (volume.secret?.items ?? volume.configMap?.items) ?? Object.keys(data).map((key) => ({ key, path: key }));
        for (const item of items) {
          const value = data[item.key];
          if (value === undefined) throw new Error(`volume ${volume.name}: key ${item.key} is missing`);
          const file = safeJoin(target, item.path);
          await mkdir(path.dirname(file), { recursive: true });
          await writeFile(file, volume.secret ? Buffer.from(value, "base64") : value, { mode: 0o644 });
        }
        volumeDirs.set(volume.name, target);
      } else {
        const type = Object.keys(volume).find((k) => k !== "name");
        throw new Error(`volume ${volume.name} of type ${type} is not emulated by the harness`);
      }
    }

    // The ServiceAccount token a projected volume would give (bound to the Pod when there is one).
    const saDir = path.join(dir, "serviceaccount");
    await mkdir(saDir, { recursive: true });
    await this.writeServiceAccount(saDir, r.namespace, spec.serviceAccountName ?? "default", pod);

    // Mounts of the main container; init containers must not need others.
    const main = spec.containers[0] as Container;
    const mountsOf = (c: Container) =>
      (c.volumeMounts ?? []).map((m) => {
        const source = volumeDirs.get(m.name);
        if (!source) throw new Error(`container ${c.name} mounts unknown volume ${m.name}`);
        if (!path.isAbsolute(m.mountPath) || m.mountPath.split("/").includes("..")) throw new Error(`bad mountPath ${m.mountPath}`);
        return `${m.subPath ? safeJoin(source, m.subPath) : source}\t${inRoot(m.mountPath)}\t${m.readOnly ? "ro" : "rw"}`;
      });
    const mounts = mountsOf(main);
    for (const init of spec.initContainers ?? []) {
      const extra = mountsOf(init).filter((m) => !mounts.includes(m));
      if (extra.length > 0) throw new Error(`init container ${init.name} mounts volumes the main container does not; not emulated`);
    }
    mounts.push(`${saDir}\t${inRoot("/var/run/secrets/kubernetes.io/serviceaccount")}\tro`);
    // The operator image holds the manager at /manager (the bootstrap init container copies it to /controller).
    mounts.push(`${cnpgManagerBinary}\t/manager\tro`);
    mounts.sort((a, b) => (a.split("\t")[1] as string).split("/").length - (b.split("\t")[1] as string).split("/").length);
    const mountsFile = path.join(dir, "mounts");
    await writeFile(mountsFile, `${mounts.join("\n")}\n`);

    const net = await this.createNetns(String(this.nextHost), this.nextHost++);
    const unshare = track(
      spawn(
        "nsenter",
        [
          `--net=/run/netns/${net.netns}`,
          "--",
          "unshare",
          "--mount",
          "--uts",
          "--ipc",
          "--pid",
          "--fork",
          "--kill-child",
          "--propagation",
          "private",
          "--",
          "/bin/sh",
          path.join(here, "sandbox.sh"),
          path.join(dir, "root"),
          mountsFile,
          spec.hostname ?? r.name,
        ],
        { stdio: ["ignore", "pipe", "pipe"], env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } },
      ),
      this.children,
    );
    const sandbox: Sandbox = { ...net, dir, unshare, pid1: 0 };
    r.sandbox = sandbox;
    await waitForLine(unshare, "ready", `sandbox of ${r.namespace}/${r.name}`, 15_000);
    const pid1 = childrenOf(unshare.child.pid ?? -1)[0];
    if (!pid1) throw new Error(`sandbox of ${r.namespace}/${r.name} has no PID 1`);
    r.sandbox = { ...sandbox, pid1 };
    return r.sandbox;
  }

  private async writeServiceAccount(saDir: string, namespace: string, account: string, pod: { name: string; uid: string | undefined }) {
    const token = await this.kube<{ status?: { token?: string } }>(`/api/v1/namespaces/${namespace}/serviceaccounts/${encodeURIComponent(account)}/token`, {
      method: "POST",
      body: {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        // Long enough for any test run, so the harness never has to rotate it as a kubelet would.
        spec: { expirationSeconds: 24 * 3600, ...(pod.uid ? { boundObjectRef: { kind: "Pod", apiVersion: "v1", name: pod.name, uid: pod.uid } } : {}) },
      },
    });
    if (token.status !== 201 || !token.body.status?.token) throw new Error(`TokenRequest for ServiceAccount ${namespace}/${account}: HTTP ${token.status}`);
    await writeFile(path.join(saDir, "token"), token.body.status.token, { mode: 0o644 });
    await writeFile(path.join(saDir, "ca.crt"), this.infra.caPem, { mode: 0o644 });
    await writeFile(path.join(saDir, "namespace"), namespace, { mode: 0o644 });
  }

  private async destroySandbox(r: PodRun): Promise<void> {
    const sandbox = r.sandbox;
    if (!sandbox) return;
    if (sandbox.unshare.running()) sandbox.unshare.child.kill("SIGKILL");
    await sandbox.unshare.exited;
    await this.removeNetns(sandbox);
    await rm(sandbox.dir, { recursive: true, force: true }).catch(() => {});
  }

  /** Init containers in order, then the (one) main container; resolves to the main's exit code. */
  private async runContainers(r: PodRun, spec: PodSpec, pod: { podName: string; podIP: string }): Promise<number | null> {
    for (const init of spec.initContainers ?? []) {
      const code = await this.runContainer(r, spec, init, pod);
      if (code !== 0) throw new Error(`init container ${init.name} exited with ${code}`);
    }
    if (spec.containers.length !== 1) throw new Error(`pods with ${spec.containers.length} containers are not emulated (one expected)`);
    return this.runContainer(r, spec, spec.containers[0] as Container, pod);
  }

  /** Runs one container's command in the sandbox as `postgres` with the container's environment. */
  private async runContainer(r: PodRun, spec: PodSpec, container: Container, pod: { podName: string; podIP: string }): Promise<number | null> {
    const sandbox = r.sandbox;
    if (!sandbox) throw new Error("no sandbox");
    const command = [...(container.command ?? []), ...(container.args ?? [])];
    if (command.length === 0) throw new Error(`container ${container.name} has no command (image entrypoints are not emulated)`);
    const env = await this.containerEnv(r.namespace, container, pod);
    const logFile = path.join(this.logDir, `${r.namespace}_${r.name}_${container.name}.log`);
    const fd = openSync(logFile, "a");
    const { uid, gid } = this.postgresUser;
    const proc = track(
      spawn(
        "nsenter",
        [
          `--target=${sandbox.pid1}`,
          "--mount",
          "--uts",
          "--ipc",
          "--net",
          "--pid",
          "--root",
          container.workingDir ? `--wd=${container.workingDir}` : "--wd",
          "--",
          "/usr/bin/setpriv",
          `--reuid=${uid}`,
          `--regid=${gid}`,
          "--init-groups",
          "--no-new-privs",
          "--",
          ...command,
        ],
        { stdio: ["ignore", fd, fd], env },
      ),
      this.children,
    );
    closeSync(fd);
    if (spec.containers.includes(container)) r.main = proc;
    return proc.exited;
  }

  private async containerEnv(namespace: string, container: Container, pod: { podName: string; podIP: string }): Promise<Record<string, string>> {
    const secrets = new Map<string, Record<string, string> | undefined>();
    const configMaps = new Map<string, Record<string, string> | undefined>();
    const secret = async (name: string) => {
      if (!secrets.has(name)) secrets.set(name, (await this.readSecret(namespace, name))?.data);
      return secrets.get(name);
    };
    const configMap = async (name: string) => {
      if (!configMaps.has(name)) {
        const res = await this.kube<{ data?: Record<string, string> }>(`/api/v1/namespaces/${namespace}/configmaps/${encodeURIComponent(name)}`);
        configMaps.set(name, res.status === 200 ? (res.body.data ?? {}) : undefined);
      }
      return configMaps.get(name);
    };
    // What the image and the runtime give every container of CNPG's PostgreSQL image: PATH to
    // the server binaries, HOME of the user, HOSTNAME; then the Service variables a kubelet adds.
    const env: Record<string, string> = {
      PATH: `${this.pgBinDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      HOSTNAME: pod.podName,
      HOME: "/var/lib/postgresql",
      KUBERNETES_SERVICE_HOST: "127.0.0.1",
      KUBERNETES_SERVICE_PORT: String(API_PORT_IN_NAMESPACE),
      KUBERNETES_SERVICE_PORT_HTTPS: String(API_PORT_IN_NAMESPACE),
    };
    for (const from of container.envFrom ?? []) {
      const data = from.secretRef ? await secret(from.secretRef.name) : from.configMapRef ? await configMap(from.configMapRef.name) : undefined;
      if (!data) throw new Error(`container ${container.name}: envFrom source not found`);
      for (const [key, value] of Object.entries(data)) env[`${from.prefix ?? ""}${key}`] = from.secretRef ? b64decode(value) : value;
    }
    for (const variable of container.env ?? []) {
      if (variable.value !== undefined || !variable.valueFrom) {
        env[variable.name] = variable.value ?? "";
        continue;
      }
      const { secretKeyRef, configMapKeyRef, fieldRef } = variable.valueFrom;
      let value: string | undefined;
      if (secretKeyRef) {
        const raw = (await secret(secretKeyRef.name))?.[secretKeyRef.key];
        value = raw === undefined ? undefined : b64decode(raw);
        if (value === undefined && !secretKeyRef.optional) throw new Error(`container ${container.name}: env ${variable.name}: Secret ${secretKeyRef.name} key ${secretKeyRef.key} not found`);
      } else if (configMapKeyRef) {
        value = (await configMap(configMapKeyRef.name))?.[configMapKeyRef.key];
        if (value === undefined && !configMapKeyRef.optional) throw new Error(`container ${container.name}: env ${variable.name}: ConfigMap ${configMapKeyRef.name} key ${configMapKeyRef.key} not found`);
      } else if (fieldRef) {
        const fields: Record<string, string> = { "metadata.name": pod.podName, "metadata.namespace": namespace, "status.podIP": pod.podIP, "spec.nodeName": this.nodeName };
        value = fields[fieldRef.fieldPath];
        if (value === undefined) throw new Error(`container ${container.name}: env ${variable.name}: fieldRef ${fieldRef.fieldPath} is not emulated`);
      } else {
        throw new Error(`container ${container.name}: env ${variable.name}: this valueFrom is not emulated`);
      }
      if (value !== undefined) env[variable.name] = value;
    }
    return env;
  }
}

// ---------------------------------------------------------------------------------------
// Small helpers

export function isHealthy(cluster: ClusterObject): boolean {
  const status = cluster.status;
  return (
    status?.phase === PHASE_HEALTHY &&
    (status.readyInstances ?? 0) === (cluster.spec.instances ?? 1) &&
    status.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true
  );
}

/** The status without anything secret-looking, for error messages. */
function summarizeStatus(cluster: ClusterObject | undefined): unknown {
  const s = cluster?.status;
  if (!s) return undefined;
  return {
    phase: s.phase,
    phaseReason: s.phaseReason,
    readyInstances: s.readyInstances,
    currentPrimary: s.currentPrimary,
    conditions: s.conditions?.map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason})` : ""}`),
    secretsResourceVersion: s.secretsResourceVersion,
    managedRolesStatus: s.managedRolesStatus,
  };
}

/** /var/run is a symlink to /run in the sandbox: mount targets are given under /run. */
function inRoot(mountPath: string): string {
  return mountPath === "/var/run" || mountPath.startsWith("/var/run/") ? mountPath.slice(4) : mountPath;
}

function safeJoin(base: string, relative: string): string {
  const joined = path.resolve(base, relative);
  if (joined !== base && !joined.startsWith(`${base}/`)) throw new Error(`path ${relative} escapes its volume`);
  return joined;
}

/** Log lines PostgreSQL may have written with a statement's text are withheld: it could hold a password. */
function tail(text: string, lines = 30): string {
  return text
    .split("\n")
    .slice(-lines)
    .map((line) => (/password/i.test(line) && /'|statement/i.test(line) ? "[line withheld: it may quote a password]" : line))
    .map((line) => (line.length > 600 ? `${line.slice(0, 600)}…` : line))
    .join("\n");
}

async function waitForLine(proc: Proc, line: string, what: string, timeoutMs: number): Promise<void> {
  const stdout = proc.child.stdout;
  const stderr = proc.child.stderr;
  let errors = "";
  stderr?.on("data", (chunk: Buffer) => {
    errors = (errors + chunk.toString()).slice(-2_000);
  });
  await new Promise<void>((resolve, reject) => {
    let buffer = "";
    const timer = setTimeout(() => reject(new Error(`${what}: not ${line} within ${timeoutMs / 1000}s; stderr: ${errors}`)), timeoutMs);
    stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      if (buffer.split("\n").includes(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void proc.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ${line}; stderr: ${errors}`));
    });
  });
}

function httpProbe(url: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = url.startsWith("https:") ? httpsRequest : httpRequest;
    // A kubelet does not verify the certificate of an HTTPS probe either.
    const req = request(url, { rejectUnauthorized: false, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(false));
    req.end();
  });
}
