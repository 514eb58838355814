// Starts the real secret-store emulators the integration tests talk to, each on 127.0.0.1
// with free ports, in its own temp dir, logging to a file that is quoted when it fails.
// Binaries come from build.sh's cache (outside the repo); with CI=true a missing one is an
// error, elsewhere build.sh is run first. lowkey-vault's jar cannot be built here: it is found
// (and its sha256 checked) where findLowkeyJar says, and a missing one is an error everywhere.
// Children get SIGKILL when this process dies
// (setpriv --pdeathsig), so a crashed test run leaves no server behind.

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, createReadStream, existsSync, openSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import path from "node:path";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";

export const HOST = "127.0.0.1";

/** Pinned versions; build.sh and the go.mod files beside it hold the same ones. */
export const VERSIONS = {
  gcpSecretManagerEmulator: "v1.7.1",
  vault: "v1.21.0",
  lowkeyVault: "7.1.13",
} as const;

export const cacheDir = (): string =>
  process.env["CNPG_ROTATOR_CACHE"] ?? path.join(homedir(), ".cache", "cnpg-rotator");

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUILD_SH = path.join(HERE, "build.sh");

/** Env for any Google client in the test process: never probe the GCE metadata server. */
export const GOOGLE_CLIENT_ENV = { METADATA_SERVER_DETECTION: "none" } as const;

export class EmulatorError extends Error {
  override name = "EmulatorError";
}

export interface Emulator {
  /** Which server, e.g. "vault". */
  readonly name: string;
  readonly version: string;
  /** Its temp dir (data, token, certs); removed by stop(). */
  readonly dir: string;
  /** stdout+stderr of the server. */
  readonly logFile: string;
  readonly pid: number;
  /** Resolves with how the process ended ("killed by SIGKILL", "exited with code 1"). */
  readonly exited: Promise<string>;
  stop(): Promise<void>;
}

export interface GcpSecretManagerEmulator extends Emulator {
  readonly grpcPort: number;
  readonly httpPort: number;
  /** REST (grpc-gateway) base URL: `${restUrl}/projects/p/secrets`. */
  readonly restUrl: string;
  /**
   * Spread into `new SecretManagerServiceClient({ ...clientOptions, sslCreds:
   * grpc.credentials.createInsecure() })`. `universeDomain` keeps google-auth-library from
   * looking for credentials (and probing the metadata server) before each stub is made.
   */
  readonly clientOptions: { apiEndpoint: string; port: number; universeDomain: string };
}

export interface VaultServer extends Emulator {
  /** e.g. http://127.0.0.1:PORT — Vault's VAULT_ADDR. */
  readonly address: string;
  /** Root token of the dev server. */
  readonly token: string;
  /** KV v2 mounts enabled at start (the seed's `secrets` by default). */
  readonly kvV2Mounts: readonly string[];
  readonly flavor: "hashicorp-vault";
}

export interface LowkeyVault extends Emulator {
  readonly port: number;
  /** Vault URL for SecretClient / REST, e.g. https://localhost:PORT */
  readonly vaultUrl: string;
  /** PEM of the server's self-signed certificate: `tlsOptions: { ca }` for @azure clients. */
  readonly caPem: string;
  /** Its managed-identity token endpoint (plain HTTP; IDENTITY_ENDPOINT-style). */
  readonly tokenPort: number;
  readonly tokenEndpoint: string;
}

/** A port that was free a moment ago on 127.0.0.1 (bound to 0, read back, released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, HOST, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") {
        srv.close();
        reject(new EmulatorError("listening on port 0 gave no TCP address"));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

// ---- artifacts ---------------------------------------------------------------------------

const builds = new Map<string, Promise<void>>();

/** Makes sure `file` exists, running `build.sh target` first unless CI=true. */
async function ensureArtifact(file: string, target: string): Promise<void> {
  if (existsSync(file)) return;
  if (process.env["CI"] === "true") {
    throw new EmulatorError(
      `expected ${file} (build.sh target '${target}'), found nothing; under CI=true the tests ` +
        `never build it: run 'bash test/infra/emulators/build.sh ${target}' in .ci/run first`,
    );
  }
  let build = builds.get(target);
  if (!build) {
    build = runBuild(target);
    builds.set(target, build);
  }
  await build;
  if (!existsSync(file)) {
    throw new EmulatorError(`build.sh ${target} succeeded but ${file} is still missing`);
  }
}

function runBuild(target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [BUILD_SH, target], { stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      if (code === 0) resolve();
      else reject(new EmulatorError(`build.sh ${target} failed (exit ${code ?? signal}); see its output above`));
    });
  });
}

// ---- processes ---------------------------------------------------------------------------

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const child of live) child.kill("SIGKILL");
  });
}

let pdeathsig: boolean | undefined;
async function hasPdeathsig(): Promise<boolean> {
  if (pdeathsig === undefined) {
    pdeathsig = await new Promise<boolean>((resolve) => {
      const c = spawn("setpriv", ["--pdeathsig", "KILL", "--", "true"], { stdio: "ignore" });
      c.on("error", () => resolve(false));
      c.on("exit", (code) => resolve(code === 0));
    });
  }
  return pdeathsig;
}

interface Started {
  child: ChildProcess;
  /** Resolves with the exit description once the process is gone. */
  exited: Promise<string>;
  isRunning(): boolean;
}

async function launch(
  cmd: string,
  args: string[],
  opts: { cwd: string; logFile: string; env?: NodeJS.ProcessEnv },
): Promise<Started> {
  installExitHook();
  const fd = openSync(opts.logFile, "a");
  const [file, argv] = (await hasPdeathsig())
    ? ["setpriv", ["--pdeathsig", "KILL", "--", cmd, ...args]]
    : [cmd, args];
  let child: ChildProcess;
  try {
    child = spawn(file, argv, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ["ignore", fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  live.add(child);
  let running = true;
  const exited = new Promise<string>((resolve) => {
    child.on("error", (err) => {
      running = false;
      live.delete(child);
      resolve(`failed to start: ${err.message}`);
    });
    child.on("exit", (code, signal) => {
      running = false;
      live.delete(child);
      resolve(signal ? `killed by ${signal}` : `exited with code ${code}`);
    });
  });
  return { child, exited, isRunning: () => running };
}

async function stopProcess(p: Started, graceMs = 5000): Promise<void> {
  if (!p.isRunning()) return;
  p.child.kill("SIGTERM");
  const timer = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await p.exited;
  clearTimeout(timer);
}

async function logTail(logFile: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(logFile, "utf8");
    return text.split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Polls `probe` until it returns true, the process dies, or the deadline passes. */
async function waitReady(
  name: string,
  p: Started,
  logFile: string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!p.isRunning()) {
      const how = await p.exited;
      throw new EmulatorError(
        `${name} ${how} before it was ready; log ${logFile}:\n${await logTail(logFile)}`,
      );
    }
    try {
      if (await probe()) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await stopProcess(p);
  throw new EmulatorError(
    `${name} was not ready within ${timeoutMs} ms; log ${logFile}:\n${await logTail(logFile)}`,
  );
}

async function fetchStatus(url: string, init?: RequestInit): Promise<number> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.status;
}

/**
 * Starts `attempt` up to 3 times: ports are picked free but may be taken before the server
 * binds them, which shows as an early exit mentioning the address.
 */
async function withPortRetry<T>(attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (i >= 3 || !/address already in use|bind/i.test(msg)) throw err;
    }
  }
}

function makeEmulator(
  name: string,
  version: string,
  dir: string,
  logFile: string,
  p: Started,
): Emulator {
  return {
    name,
    version,
    dir,
    logFile,
    pid: p.child.pid ?? -1,
    exited: p.exited,
    async stop() {
      await stopProcess(p);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---- Google Secret Manager ---------------------------------------------------------------

/**
 * blackwell-systems/gcp-secret-manager-emulator, cmd/server-dual: gRPC on one port and its
 * grpc-gateway REST mapping on another. It listens on all interfaces (":port", not
 * configurable); its REST gateway dials the gRPC side at localhost:grpcPort.
 */
export async function startGcpSecretManager(): Promise<GcpSecretManagerEmulator> {
  const bin = path.join(cacheDir(), "bin", "gcp-secret-manager-emulator");
  await ensureArtifact(bin, "gcp");
  return withPortRetry(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "cnpg-rotator-gcpsm-"));
    const logFile = path.join(dir, "gcp-secret-manager-emulator.log");
    const grpcPort = await freePort();
    let httpPort = await freePort();
    while (httpPort === grpcPort) httpPort = await freePort();
    const p = await launch(bin, ["--grpc-port", String(grpcPort), "--http-port", String(httpPort)], {
      cwd: dir,
      logFile,
      // IAM_MODE unset = off: every call is allowed, as with a fully privileged principal.
      env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: dir },
    });
    const restUrl = `http://${HOST}:${httpPort}/v1`;
    try {
      // /readyz answers only once the gateway is serving; the gRPC socket was bound before it.
      await waitReady(
        "gcp-secret-manager-emulator",
        p,
        logFile,
        async () => (await fetchStatus(`http://${HOST}:${httpPort}/readyz`)) === 200,
        30_000,
      );
    } catch (err) {
      await stopProcess(p); // the temp dir stays, for its log
      throw err;
    }
    return {
      ...makeEmulator("gcp-secret-manager-emulator", VERSIONS.gcpSecretManagerEmulator, dir, logFile, p),
      grpcPort,
      httpPort,
      restUrl,
      clientOptions: { apiEndpoint: HOST, port: grpcPort, universeDomain: "googleapis.com" },
    };
  });
}

// ---- Vault KV v2 -------------------------------------------------------------------------

/**
 * HashiCorp Vault's dev server (in-memory, unsealed, root token given), listening on
 * 127.0.0.1. Dev mode also binds a cluster listener on the API port + 1, so both must be free.
 */
export async function startVault(
  opts: { kvV2Mounts?: readonly string[]; token?: string } = {},
): Promise<VaultServer> {
  const bin = path.join(cacheDir(), "bin", "vault");
  await ensureArtifact(bin, "vault");
  const kvV2Mounts = opts.kvV2Mounts ?? ["secrets"];
  const token = opts.token ?? `root-${randomBytes(12).toString("hex")}`;
  return withPortRetry(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "cnpg-rotator-vault-"));
    const logFile = path.join(dir, "vault.log");
    const port = await freePortPair();
    const address = `http://${HOST}:${port}`;
    const p = await launch(
      bin,
      [
        "server",
        "-dev",
        `-dev-root-token-id=${token}`,
        `-dev-listen-address=${HOST}:${port}`,
        "-dev-no-store-token",
        "-log-level=info",
      ],
      {
        cwd: dir,
        logFile,
        env: {
          PATH: process.env["PATH"] ?? "/usr/bin:/bin",
          HOME: dir,
          // The server must not read a developer's own Vault settings.
          VAULT_CONFIG_PATH: path.join(dir, "vault-cli.hcl"),
        },
      },
    );
    try {
      // sys/health: 200 once initialized, unsealed and active.
      await waitReady(
        "vault",
        p,
        logFile,
        async () => (await fetchStatus(`${address}/v1/sys/health`)) === 200,
        60_000,
      );
      for (const mount of kvV2Mounts) await enableKvV2(address, token, mount);
    } catch (err) {
      await stopProcess(p); // the temp dir stays, for its log
      throw err;
    }
    return {
      ...makeEmulator("vault", VERSIONS.vault, dir, logFile, p),
      address,
      token,
      kvV2Mounts,
      flavor: "hashicorp-vault" as const,
    };
  });
}

/** A free port whose successor is free too (Vault dev's cluster listener takes port + 1). */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    if (port < 65535 && (await isFree(port + 1))) return port;
  }
  throw new EmulatorError("found no free pair of adjacent ports on 127.0.0.1 in 20 tries");
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, HOST, () => srv.close(() => resolve(true)));
  });
}

/** Mounts a KV v2 engine at `mount` (POST /v1/sys/mounts/:mount). */
export async function enableKvV2(address: string, token: string, mount: string): Promise<void> {
  const res = await fetch(`${address}/v1/sys/mounts/${encodeURIComponent(mount)}`, {
    method: "POST",
    headers: { "X-Vault-Token": token, "Content-Type": "application/json" },
    body: JSON.stringify({ type: "kv", options: { version: "2" } }),
  });
  if (res.status !== 204 && res.status !== 200) {
    throw new EmulatorError(
      `enabling KV v2 at '${mount}': expected 204, found ${res.status} ${await res.text()}`,
    );
  }
}

// ---- Azure Key Vault (lowkey-vault) -----------------------------------------------------

/** lowkey-vault-app 7.1.13 built from its tagged source (../shared/emulators/README.md); what its jar must hash to. */
export const LOWKEY_VAULT_JAR_SHA256 = "e8b3116acb288a87d6523c98f5ee32178635cc6815d41836fd3a47f958c4a533";
const LOWKEY_JAR_NAME = `lowkey-vault-app-${VERSIONS.lowkeyVault}.jar`;
/** Its classes are Java 25 class files: Java 17 refuses them (UnsupportedClassVersionError). */
const LOWKEY_JAVA_MAJOR = 25;
const REPO_ROOT = path.resolve(HERE, "../../..");

/**
 * Where the jar is: LOWKEY_VAULT_JAR, else the cache's jars/, else ../shared/emulators/ beside the
 * repo. It is not on the Maven Central reachable here; a user builds it from the v7.1.13 tag.
 * Its sha256 must match LOWKEY_VAULT_JAR_SHA256 (a jar built elsewhere differs: the environment
 * variable of that name overrides the pin). The error says which places were looked at and what
 * each held.
 */
export async function findLowkeyJar(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const expected = env["LOWKEY_VAULT_JAR_SHA256"] || LOWKEY_VAULT_JAR_SHA256;
  const named = env["LOWKEY_VAULT_JAR"];
  const candidates = named
    ? [{ where: "LOWKEY_VAULT_JAR", file: named }]
    : [
        { where: "the cache", file: path.join(cacheDir(), "jars", LOWKEY_JAR_NAME) },
        { where: "../shared/emulators beside the repo", file: path.resolve(REPO_ROOT, "..", "shared", "emulators", LOWKEY_JAR_NAME) },
      ];
  const looked: string[] = [];
  for (const { where, file } of candidates) {
    if (!existsSync(file)) {
      looked.push(`${where} (${file}): no such file`);
      continue;
    }
    const sha = await sha256File(file);
    if (sha === expected) return file;
    looked.push(`${where} (${file}): sha256 ${sha}, expected ${expected}`);
  }
  throw new EmulatorError(
    `lowkey-vault ${VERSIONS.lowkeyVault} (the Azure Key Vault emulator) is missing: looked at ${looked.join("; ")}. ` +
      `Build lowkey-vault-app from the v${VERSIONS.lowkeyVault} tag of github.com/nagyesta/lowkey-vault ` +
      `(needs Java ${LOWKEY_JAVA_MAJOR}) and put the jar in ${path.join(cacheDir(), "jars")} or name it with LOWKEY_VAULT_JAR`,
  );
}

const hashes = new Map<string, Promise<string>>();
function sha256File(file: string): Promise<string> {
  let hash = hashes.get(file);
  if (!hash) {
    hash = new Promise((resolve, reject) => {
      const h = createHash("sha256");
      createReadStream(file)
        .on("data", (chunk) => h.update(chunk))
        .on("error", reject)
        .on("end", () => resolve(h.digest("hex")));
    });
    hashes.set(file, hash);
  }
  return hash;
}

/**
 * A Java 25+ to run the jar: the first that `java -version` says is new enough
 * of LOWKEY_VAULT_JAVA_HOME, JAVA_HOME, the JDKs in /usr/lib/jvm (newest first), and `java` on
 * PATH (most machines default to 17). The error lists each one and what it is.
 */
export async function findLowkeyJava(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const homes: { where: string; java: string }[] = [];
  for (const name of ["LOWKEY_VAULT_JAVA_HOME", "JAVA_HOME"]) {
    const home = env[name];
    if (home) homes.push({ where: `${name}=${home}`, java: path.join(home, "bin", "java") });
  }
  const jvms = await readdir("/usr/lib/jvm").catch(() => [] as string[]);
  for (const dir of jvms.sort().reverse()) homes.push({ where: `/usr/lib/jvm/${dir}`, java: path.join("/usr/lib/jvm", dir, "bin", "java") });
  homes.push({ where: "java on PATH", java: "java" });
  const looked: string[] = [];
  for (const { where, java } of homes) {
    const major = await javaMajor(java);
    if (major !== undefined && major >= LOWKEY_JAVA_MAJOR) return java;
    looked.push(`${where}: ${major === undefined ? "no java" : `Java ${major}`}`);
  }
  throw new EmulatorError(
    `lowkey-vault ${VERSIONS.lowkeyVault} needs Java ${LOWKEY_JAVA_MAJOR} or newer, found none: ${looked.join("; ")}. ` +
      `Install a JDK ${LOWKEY_JAVA_MAJOR} (e.g. Temurin) or point LOWKEY_VAULT_JAVA_HOME at one`,
  );
}

/** The major version `java -version` reports (`openjdk version "25.0.3"` → 25), or undefined. */
function javaMajor(java: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    execFile(java, ["-version"], { timeout: 20_000 }, (error, _stdout, stderr) => {
      const m = /version "(\d+)(?:\.(\d+))?/.exec(String(stderr));
      if (error || !m) return resolve(undefined);
      // Java 8 and older say "1.8.0_…".
      resolve(m[1] === "1" ? Number(m[2]) : Number(m[1]));
    });
  });
}

/**
 * lowkey-vault's Spring Boot jar, found and checked by findLowkeyJar and findLowkeyJava.
 * Flags per its README: --server.port/--server.address, and relaxed port matching so that the
 * default vault https://localhost:PORT answers on whatever port we picked. Auth is on: any
 * Bearer token passes. Its plain-HTTP token endpoint is moved off 8080 to a free port with
 * --app.token.port; it still listens on every interface: 7.1.13 builds that connector with a port
 * only (LowkeyVaultApp.createTokenConnector), and --server.address applies to the main one.
 */
export async function startLowkeyVault(): Promise<LowkeyVault> {
  const [jar, java] = await Promise.all([findLowkeyJar(), findLowkeyJava()]);
  return withPortRetry(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "cnpg-rotator-lowkey-"));
    const logFile = path.join(dir, "lowkey-vault.log");
    const port = await freePort();
    let tokenPort = await freePort();
    while (tokenPort === port) tokenPort = await freePort();
    const p = await launch(
      java,
      [
        // Start-up over peak speed: a test vault serves a handful of calls.
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Xmx512m",
        "-jar",
        jar,
        `--server.port=${port}`,
        `--server.address=${HOST}`,
        `--app.token.port=${tokenPort}`,
        "--LOWKEY_VAULT_RELAXED_PORTS=true",
      ],
      { cwd: dir, logFile },
    );
    const vaultUrl = `https://localhost:${port}`;
    let caPem = "";
    try {
      await waitReady(
        "lowkey-vault",
        p,
        logFile,
        async () => {
          caPem = await peerCertificatePem(port);
          // Key Vault answers an unauthenticated call with 401 and a Bearer challenge.
          return (await insecureStatus(port, "/secrets?api-version=7.4")) === 401;
        },
        // Spring Boot takes ~10 s alone and minutes on a loaded 2-core machine.
        240_000,
      );
    } catch (err) {
      await stopProcess(p); // the temp dir stays, for its log
      throw err;
    }
    return {
      ...makeEmulator("lowkey-vault", VERSIONS.lowkeyVault, dir, logFile, p),
      port,
      vaultUrl,
      caPem,
      tokenPort,
      tokenEndpoint: `http://${HOST}:${tokenPort}/metadata/identity/oauth2/token`,
    };
  });
}

/** The certificate a TLS server on 127.0.0.1:port presents, as PEM (trust on first use). */
function peerCertificatePem(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tlsConnect({ host: HOST, port, servername: "localhost", rejectUnauthorized: false }, () => {
      const cert = sock.getPeerCertificate();
      sock.end();
      const b64 = cert.raw.toString("base64").replace(/(.{64})/g, "$1\n");
      resolve(`-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`);
    });
    sock.on("error", reject);
    sock.setTimeout(2000, () => sock.destroy(new Error("TLS handshake timed out")));
  });
}

async function insecureStatus(port: number, pathAndQuery: string): Promise<number> {
  const https = await import("node:https");
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: HOST, port, path: pathAndQuery, servername: "localhost", rejectUnauthorized: false, timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", reject);
    req.on("timeout", () => req.destroy(new Error("timed out")));
    req.end();
  });
}

// ---- all at once -------------------------------------------------------------------------

export interface Emulators {
  gcp: GcpSecretManagerEmulator;
  vault: VaultServer;
  stop(): Promise<void>;
}

/** Starts the emulators that can be had here (GCP and Vault), one after the other. */
export async function startEmulators(): Promise<Emulators> {
  const gcp = await startGcpSecretManager();
  try {
    const vault = await startVault();
    return {
      gcp,
      vault,
      async stop() {
        await Promise.all([gcp.stop(), vault.stop()]);
      },
    };
  } catch (err) {
    await gcp.stop();
    throw err;
  }
}
