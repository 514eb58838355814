// One login to PostgreSQL with a given user and password — connect, `SELECT current_user`,
// close — as a rotation's test step does (SPEC §5.4). The password goes to the
// pg client and nowhere else: results and their reasons never carry it.
import { isIP } from "node:net";
import { type ConnectionOptions, checkServerIdentity, type PeerCertificate } from "node:tls";
import type pg from "pg";

type Pg = typeof pg;
let loaded: Promise<Pg> | undefined;
// Loaded on the first login: only verified rotations log in, so other cold starts skip pg.
function loadPg(): Promise<Pg> {
  loaded ??= import("pg").then((m) => m.default);
  return loaded;
}

/** How to use TLS, as libpq's sslmode names it (the subset that means something here). */
export const SSL_MODES = ["disable", "require", "verify-full"] as const;
export type SslMode = (typeof SSL_MODES)[number];

export interface LoginParams {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /**
   * disable (default): plain TCP; require: TLS, certificate not checked (what CNPG's
   * self-signed server certificate allows without its CA); verify-full: TLS checked
   * against `sslRootCert` (else Node's CAs) and the host name.
   */
  readonly ssl?: SslMode;
  /** PEM of the CA for verify-full (CNPG's `<cluster>-ca` Secret, key ca.crt). */
  readonly sslRootCert?: string;
  /**
   * verify-full: the name the server certificate must carry, when `host` is only an address to
   * reach it by (the function runs outside the cluster; CNPG's certificate names `<cluster>-rw`).
   */
  readonly tlsServerName?: string;
}

/**
 * What one attempt found. `auth-failed`: a server answered and refused these
 * credentials (SQLSTATE 28P01, 28000). `unreachable`: no server gave a usable
 * answer — refused, unresolvable, timed out, shutting down or starting up
 * (worth retrying). `error`: a server answered with something retrying will not
 * fix (the database does not exist, TLS refused). `reason` never holds the password.
 */
export type LoginResult =
  | {
      readonly status: "ok";
      readonly elapsedMs: number;
      /** The role the session runs as once logged in: the owner when `ALTER ROLE … SET role = <owner>` applies. */
      readonly currentUser?: string;
    }
  | {
      readonly status: "auth-failed" | "unreachable" | "error";
      readonly elapsedMs: number;
      /** SQLSTATE of a server error, or the Node error code (ECONNREFUSED, ENOTFOUND …). */
      readonly code?: string;
      readonly reason: string;
    };

export type LoginStatus = LoginResult["status"];

export interface LoginOptions {
  /** Upper bound for connecting, authenticating and `SELECT current_user` together. */
  readonly timeoutMs: number;
}

/** Logs in once and reports how it went; never throws for a failed login, always closes the connection. */
export async function tryLogin(params: LoginParams, options: LoginOptions): Promise<LoginResult> {
  const pg = await loadPg();
  const started = Date.now();
  const timeoutMs = Math.max(1, Math.floor(options.timeoutMs));
  const client = new pg.Client({
    host: params.host,
    port: params.port,
    user: params.user,
    password: params.password,
    database: params.database,
    ssl: sslOptions(params),
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
    application_name: "cnpg-rotator-verify",
  });
  // After connect, pg reports a dropped connection as an 'error' event: without a
  // listener that would crash the process. The outcome comes from the promises below.
  client.on("error", () => {});
  // A server asking for the password in cleartext gets nothing: the connection ends before
  // pg would answer it (SCRAM and, if a server insists, MD5 never send the password itself).
  const refusing = client as unknown as { _handleAuthCleartextPassword: () => void; connection: { stream: { destroy(e: Error): void } } };
  refusing._handleAuthCleartextPassword = () => refusing.connection.stream.destroy(new CleartextRefused());
  let timer: NodeJS.Timeout | undefined;
  try {
    const attempt = (async () => {
      await client.connect();
      const result = await client.query<{ current_user: string }>("SELECT current_user");
      return result.rows[0]?.current_user;
    })();
    // connectionTimeoutMillis does not cover every stall (e.g. a server that never answers
    // the startup packet after TLS): a deadline for the whole attempt does.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AttemptTimeout()), timeoutMs + 250);
    });
    attempt.catch(() => {}); // settled by the race; a late rejection is not unhandled
    const currentUser = await Promise.race([attempt, deadline]);
    return { status: "ok", elapsedMs: Date.now() - started, ...(currentUser ? { currentUser } : {}) };
  } catch (e) {
    return { ...classify(pg, e, params.password), elapsedMs: Date.now() - started };
  } finally {
    clearTimeout(timer);
    await close(client);
  }
}

class CleartextRefused extends Error {
  override name = "CleartextRefused";
  readonly code = "CLEARTEXT_REFUSED";
  constructor() {
    super("the server asked for the password in cleartext; refused (configure scram-sha-256 in pg_hba, as CNPG does)");
  }
}

class AttemptTimeout extends Error {
  override name = "AttemptTimeout";
  constructor() {
    super("no answer within the attempt's timeout");
  }
}

function sslOptions(params: LoginParams): false | ConnectionOptions {
  switch (params.ssl ?? "disable") {
    case "disable":
      return false;
    case "require":
      return { rejectUnauthorized: false };
    case "verify-full": {
      // pg passes the host as servername, so Node checks the certificate names it — or names
      // tlsServerName, when the host is only the address the function reaches the server at.
      const name = params.tlsServerName;
      return {
        rejectUnauthorized: true,
        ...(params.sslRootCert ? { ca: params.sslRootCert } : {}),
        ...(name ? { servername: isIP(name) ? undefined : name, checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(name, cert) } : {}),
      };
    }
  }
}

/** end() waits for the server's goodbye; a server that never says it must not hold us. */
async function close(client: pg.Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.end().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 1_000);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
}

// SQLSTATEs meaning "no server to talk to right now": admin/crash shutdown, starting up,
// too many connections, connection exceptions (class 08).
const TRANSIENT_SQLSTATES = new Set(["57P01", "57P02", "57P03", "53300"]);
const AUTH_SQLSTATES = new Set(["28P01", "28000"]);
// Node network errors: worth another try.
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EPIPE",
]);

function classify(pg: Pg, e: unknown, password: string): Omit<Extract<LoginResult, { reason: string }>, "elapsedMs"> {
  const error = e instanceof Error ? e : new Error(String(e));
  const code = (error as { code?: unknown }).code;
  const reason = redact(error.message || error.name, password);
  if (error instanceof pg.DatabaseError && typeof code === "string") {
    if (AUTH_SQLSTATES.has(code)) return { status: "auth-failed", code, reason };
    if (TRANSIENT_SQLSTATES.has(code) || code.startsWith("08")) return { status: "unreachable", code, reason };
    return { status: "error", code, reason };
  }
  if (typeof code === "string" && NETWORK_CODES.has(code)) return { status: "unreachable", code, reason };
  if (typeof code === "string" && /CERT|SSL|TLS|CLEARTEXT/.test(code)) return { status: "error", code, reason };
  if (/does not support SSL/i.test(error.message)) return { status: "error", reason };
  // Anything else (the connection dropped, the attempt timed out): a later try may succeed.
  return { status: "unreachable", ...(typeof code === "string" ? { code } : {}), reason };
}

/** Belt and braces: pg's messages do not quote passwords, but a reason must never carry one. */
function redact(message: string, password: string): string {
  // Very short strings would garble ordinary words; real passwords are long.
  if (password.length < 6) return message;
  let out = message;
  for (const form of new Set([password, encodeURIComponent(password)])) out = out.split(form).join("[redacted]");
  return out;
}
