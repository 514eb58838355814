// A throwaway PostgreSQL for tests that need a real login: the Debian server binaries on the
// machine, initdb in a temp dir, listening on 127.0.0.1 only with a free port, password
// (scram-sha-256) authentication for every TCP connection, a superuser for the test's
// stand-in for CNPG. Stopped and removed by stop(), and by a watchdog when the test
// process dies without calling it. PostgreSQL refuses to run as root: as root the server
// runs as the `postgres` user (or $CNPG_ROTATOR_PG_USER).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { tryLogin } from "../../lib/postgres/index.ts";
import { freePort } from "./servers.ts";

export interface PostgresServer {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly superuser: string;
  /** A secret: register it wherever the test tracks secrets. */
  readonly superuserPassword: string;
  readonly binDir: string;
  readonly dir: string;
  readonly logFile: string;
  /** Runs one statement as the superuser on its own connection. */
  query(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  /** CREATE ROLE … LOGIN PASSWORD …, or ALTER ROLE when it exists; plus a database of that name it owns. */
  ensureLoginRole(name: string, password: string): Promise<void>;
  isRunning(): boolean;
  stop(): Promise<void>;
}

/**
 * The directory with initdb and postgres: $CNPG_ROTATOR_PG_BINDIR, else the newest
 * /usr/lib/postgresql/<version>/bin. Undefined when there is none, except under CI=true,
 * where that is an error (tests never skip there).
 */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env.CNPG_ROTATOR_PG_BINDIR;
  const candidates = fromEnv
    ? [fromEnv]
    : (existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql") : [])
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
        .map((v) => path.join("/usr/lib/postgresql", v, "bin"));
  const found = candidates.find((d) => existsSync(path.join(d, "postgres")) && existsSync(path.join(d, "initdb")));
  if (!found && process.env.CI === "true") {
    throw new Error(
      `PostgreSQL server binaries not found (looked in ${candidates.join(", ") || "/usr/lib/postgresql/*/bin"}): ` +
        "install postgresql (Debian: apt-get install postgresql) or set CNPG_ROTATOR_PG_BINDIR; CI must not skip these tests",
    );
  }
  return found;
}

/** psql from the server's bin directory, else from PATH. */
export function psqlBinary(binDir = postgresBinDir()): string {
  const local = binDir ? path.join(binDir, "psql") : undefined;
  return local && existsSync(local) ? local : "psql";
}

/** uid/gid to run the server as: ourselves, unless we are root. */
function serverIdentity(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const user = process.env.CNPG_ROTATOR_PG_USER || "postgres";
  try {
    const uid = Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim());
    if (uid === 0) throw new Error(`${user} is root`);
    return { uid, gid };
  } catch (e) {
    throw new Error(
      `running as root, PostgreSQL needs a non-root user to run as: "${user}" is not usable (${(e as Error).message}); ` +
        "create one (useradd --system postgres) or set CNPG_ROTATOR_PG_USER",
    );
  }
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Immediate shutdown of any server still up; the watchdog removes its directory.
  process.on("exit", () => {
    for (const child of live) child.kill("SIGQUIT");
  });
}

async function run(command: string, args: string[], options: { identity?: { uid: number; gid: number }; logFile: string }) {
  const fd = openSync(options.logFile, "a");
  try {
    const child = spawn(command, args, {
      stdio: ["ignore", fd, fd],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C", LC_ALL: "C" },
      ...(options.identity ?? {}),
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("exit", (c) => resolve(c));
    });
    if (code !== 0) {
      throw new Error(`${path.basename(command)} failed (exit ${code}); end of ${options.logFile}:\n${await tail(options.logFile)}`);
    }
  } finally {
    closeSync(fd);
  }
}

async function tail(file: string, lines = 40): Promise<string> {
  return (await readFile(file, "utf8").catch(() => "")).split("\n").slice(-lines).join("\n");
}

export interface StartPostgresOptions {
  /** Superuser name (default "postgres_admin"). */
  readonly superuser?: string;
  /** How long to wait for the server to accept logins (default 60 s). */
  readonly readyTimeoutMs?: number;
}

export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const binDir = postgresBinDir();
  // A missing server fails the test file that needs it, everywhere: never a skip.
  if (!binDir) {
    throw new Error(
      "PostgreSQL server binaries not found: install postgresql (Debian: apt-get install postgresql) or set CNPG_ROTATOR_PG_BINDIR",
    );
  }
  const identity = serverIdentity();
  const superuser = options.superuser ?? "postgres_admin";
  const superuserPassword = randomBytes(18).toString("base64url");

  const dir = mkdtempSync(path.join(os.tmpdir(), "cnpg-rotator-pg-"));
  if (identity) chownSync(dir, identity.uid, identity.gid);
  const dataDir = path.join(dir, "data");
  const logFile = path.join(dir, "postgres.log");
  const pwfile = path.join(dir, "pwfile");
  writeFileSync(pwfile, `${superuserPassword}\n`, { mode: 0o600 });
  if (identity) chownSync(pwfile, identity.uid, identity.gid);
  try {
    await run(
      path.join(binDir, "initdb"),
      [
        "-D",
        dataDir,
        `--username=${superuser}`,
        `--pwfile=${pwfile}`,
        "--auth-host=scram-sha-256",
        "--auth-local=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-sync",
        "--no-instructions",
      ],
      { ...(identity ? { identity } : {}), logFile },
    );
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  } finally {
    rmSync(pwfile, { force: true });
  }
  // Password logins over TCP from 127.0.0.1, nothing else (no trust, no peer).
  writeFileSync(
    path.join(dataDir, "pg_hba.conf"),
    "# TYPE  DATABASE  USER  ADDRESS        METHOD\nhost    all       all   127.0.0.1/32   scram-sha-256\n",
  );

  const port = await freePort();
  installExitHook();
  const fd = openSync(logFile, "a");
  const child = spawn(
    path.join(binDir, "postgres"),
    [
      "-D",
      dataDir,
      "-p",
      String(port),
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      `unix_socket_directories=${dir}`,
      "-c",
      "password_encryption=scram-sha-256",
      // Throwaway data: durability off makes every statement fast.
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
      // A failing ALTER ROLE … PASSWORD must not land in the server log with its literal.
      "-c",
      "log_min_error_statement=panic",
      "-c",
      "max_connections=40",
    ],
    { stdio: ["ignore", fd, fd], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C", LC_ALL: "C" }, ...(identity ?? {}) },
  );
  closeSync(fd);
  let running = child.pid !== undefined;
  // Covers what the exit hook cannot (SIGKILL of this process, a crash): its stdin is a pipe
  // from us that the kernel closes however we die; then it stops the server and removes the dir.
  const watchdog =
    child.pid === undefined
      ? undefined
      : spawn(
          "sh",
          [
            "-c",
            'cat >/dev/null; kill -INT "$1" 2>/dev/null; i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; kill -KILL "$1" 2>/dev/null; rm -rf "$2"',
            "postgres-watchdog",
            String(child.pid),
            dir,
          ],
          { stdio: ["pipe", "ignore", "ignore"] },
        );
  watchdog?.unref();
  (watchdog?.stdin as unknown as { unref(): void } | undefined)?.unref();
  live.add(child);
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  }).then(() => {
    running = false;
    live.delete(child);
  });

  const stop = async () => {
    if (running) {
      child.kill("SIGINT"); // fast shutdown: disconnects clients instead of waiting for them
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    // The server is gone, so its pid may be reused: the watchdog must not act on it.
    watchdog?.kill("SIGKILL");
    watchdog?.stdin?.destroy();
    rmSync(dir, { recursive: true, force: true });
  };

  const admin = { host: "127.0.0.1", port, user: superuser, password: superuserPassword } as const;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (!running) {
      const log = await tail(logFile);
      await stop();
      throw new Error(`postgres exited before accepting logins; end of its log:\n${log}`);
    }
    const login = await tryLogin({ ...admin, database: "postgres", ssl: "disable" }, { timeoutMs: 2_000 });
    if (login.status === "ok") break;
    if (Date.now() > deadline) {
      const log = await tail(logFile);
      await stop();
      throw new Error(`postgres: no successful login within the timeout (last: ${login.status} ${login.reason}); end of its log:\n${log}`);
    }
    await sleep(100);
  }

  const query = async (sql: string, params?: unknown[]) => {
    const client = new pg.Client({ ...admin, database: "postgres", ssl: false });
    client.on("error", () => {});
    await client.connect();
    try {
      return await client.query(sql, params);
    } finally {
      await client.end().catch(() => {});
    }
  };

  return {
    host: "127.0.0.1",
    port,
    superuser,
    superuserPassword,
    binDir,
    dir,
    logFile,
    query,
    async ensureLoginRole(name: string, password: string) {
      const role = pg.escapeIdentifier(name);
      const exists = (await query("SELECT 1 FROM pg_roles WHERE rolname = $1", [name])).rowCount === 1;
      await query(`${exists ? "ALTER" : "CREATE"} ROLE ${role} WITH LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
      const db = (await query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1;
      if (!db) await query(`CREATE DATABASE ${role} OWNER ${role}`);
    },
    isRunning: () => running,
    stop,
  };
}
