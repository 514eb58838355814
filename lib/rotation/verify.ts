// The test step of a rotation (SPEC §5.4): after the merge, log in with the
// Secret's new username and password until CNPG has applied them to the role,
// or give up after a timeout with a VerificationError, so the rotation is
// reported failed and never promoted. The function runs outside the cluster,
// where `<cluster>-rw` does not resolve, so the address can be overridden per
// deployment (environment) or per target (ExternalSecret annotations).
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { readUri } from "../cnpg/index.ts";
import { InputError, VerificationError } from "../errors.ts";
import type { SecretObject } from "../kubernetes/index.ts";
import { type Logger, silentLogger } from "../log.ts";
import { type ExternalSecret, formatDuration, parseDuration } from "../manifests/index.ts";
import { type LoginParams, type LoginResult, SSL_MODES, type SslMode, tryLogin } from "../postgres/index.ts";
import { type RotationTarget, targetName } from "./plan.ts";
import { fingerprint } from "./render.ts";
import type { Verifier } from "./act.ts";
import { ANNOTATION_PREFIX, ANNOTATIONS } from "./names.ts";

/** Per-target settings, read from the ExternalSecret's metadata.annotations; they win over the environment. */
export const VERIFY_ANNOTATIONS = {
  /** "true" / "false": verify this target, whatever CNPG_ROTATOR_VERIFY says. */
  verify: `${ANNOTATION_PREFIX}verify`,
  /** Host (name or IP) to log in to instead of the Secret's `host`. */
  host: `${ANNOTATION_PREFIX}verify-host`,
  /** Port to log in to instead of the Secret's `port`. */
  port: `${ANNOTATION_PREFIX}verify-port`,
  /** disable | require | verify-full. */
  sslMode: `${ANNOTATION_PREFIX}verify-sslmode`,
} as const;

export interface VerifyConfig {
  /** Verify every target whose ExternalSecret does not say otherwise (default false). */
  readonly enabled?: boolean;
  /** Host for every target without a verify-host annotation (default: the Secret's `host`). */
  readonly host?: string;
  /** Port for every target without a verify-port annotation (default: the Secret's `port`). */
  readonly port?: number;
  /** Default "require": CNPG always serves TLS, and this login crosses a network. */
  readonly sslMode?: SslMode;
  /** PEM of the CA for verify-full. */
  readonly sslRootCert?: string;
  /** How long CNPG gets to apply the new password (default 120 s). */
  readonly timeoutMs?: number;
  /** Bound of one login attempt (default 5 s). */
  readonly attemptTimeoutMs?: number;
  /** First pause between attempts, doubled after each up to maxDelayMs (defaults 250 ms, 5 s). */
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
}

export const VERIFY_DEFAULTS = {
  sslMode: "verify-full",
  timeoutMs: 120_000,
  attemptTimeoutMs: 5_000,
  initialDelayMs: 250,
  maxDelayMs: 5_000,
} as const satisfies VerifyConfig;

export type { Verifier };

export interface VerifierOptions {
  readonly log?: Logger;
  /** CNPG's CA for a Cluster (`ca.crt` of its `<cluster>-ca` Secret), for verify-full without CNPG_ROTATOR_VERIFY_SSLROOTCERT. */
  readonly readCa?: (namespace: string, cluster: string) => Promise<string | undefined>;
  /** The login to use (tests substitute their own). */
  readonly login?: (params: LoginParams, options: { timeoutMs: number }) => Promise<LoginResult>;
}

/** What verification does for one target: whether it runs, and where it logs in. */
export interface TargetVerifySettings {
  readonly enabled: boolean;
  readonly host?: string;
  readonly port?: number;
  readonly sslMode: SslMode;
}

/** The settings of one target: its annotations over `config`. A bad annotation is an InputError naming it. */
export function verifySettingsFor(es: ExternalSecret, config: VerifyConfig = {}): TargetVerifySettings {
  const a = es.metadata.annotations;
  const where = `ExternalSecret ${es.metadata.namespace}/${es.metadata.name}: annotation`;
  const enabled = a[VERIFY_ANNOTATIONS.verify];
  const host = a[VERIFY_ANNOTATIONS.host];
  const port = a[VERIFY_ANNOTATIONS.port];
  const sslMode = a[VERIFY_ANNOTATIONS.sslMode];
  if (host !== undefined) checkHost(`${where} ${VERIFY_ANNOTATIONS.host}`, host);
  const resolvedHost = host ?? config.host;
  const resolvedPort = port !== undefined ? parsePort(`${where} ${VERIFY_ANNOTATIONS.port}`, port) : config.port;
  return {
    enabled: enabled !== undefined ? parseBoolean(`${where} ${VERIFY_ANNOTATIONS.verify}`, enabled) : config.enabled === true,
    ...(resolvedHost !== undefined ? { host: resolvedHost } : {}),
    ...(resolvedPort !== undefined ? { port: resolvedPort } : {}),
    sslMode:
      sslMode !== undefined
        ? parseSslMode(`${where} ${VERIFY_ANNOTATIONS.sslMode}`, sslMode)
        : (config.sslMode ?? VERIFY_DEFAULTS.sslMode),
  };
}

/**
 * A RotationDeps.verify: resolves where to log in, then tries the Secret's
 * username and password with growing pauses until one login succeeds or the
 * timeout passes. Only ever logs fingerprints, hosts and statuses.
 */
export function createVerifier(config: VerifyConfig = {}, options_: VerifierOptions = {}): Verifier {
  const log = options_.log ?? silentLogger;
  const login = options_.login ?? tryLogin;
  const timeoutMs = config.timeoutMs ?? VERIFY_DEFAULTS.timeoutMs;
  const attemptTimeoutMs = config.attemptTimeoutMs ?? VERIFY_DEFAULTS.attemptTimeoutMs;
  const maxDelayMs = config.maxDelayMs ?? VERIFY_DEFAULTS.maxDelayMs;

  const verify = async (secret: SecretObject, target: RotationTarget, options: { beforeLogin?: () => Promise<void> } = {}): Promise<void> => {
    const name = targetName(target);
    const rotationId = secret.annotations[ANNOTATIONS.rotationId];
    const settings = verifySettingsFor(target.externalSecret, config);
    const tlog = log.child({ target: name, ...(rotationId ? { rotationId } : {}) });
    if (!settings.enabled) {
      tlog.debug({}, "verification is off for this target");
      return;
    }
    const rootCert = settings.sslMode === "verify-full" ? (config.sslRootCert ?? (await clusterCa(secret, target, options_.readCa, rotationId))) : undefined;
    const params = loginParams(secret, settings, rootCert, name, rotationId);
    // CNPG's own signal first (its Cluster status), where it can be read; the logins below retry regardless.
    await options.beforeLogin?.();
    const where = `${params.host}:${params.port}/${params.database}`;
    const fp = fingerprint(params.password);
    const started = Date.now();
    const deadline = started + timeoutMs;
    let delay = config.initialDelayMs ?? VERIFY_DEFAULTS.initialDelayMs;
    let attempts = 0;
    for (;;) {
      attempts++;
      // The last attempt may run a little past the deadline rather than be cut to nothing.
      const budget = Math.min(attemptTimeoutMs, Math.max(deadline - Date.now(), 500));
      const result = await login(params, { timeoutMs: budget });
      if (result.status === "ok") {
        tlog.info(
          { where, user: params.user, fingerprint: fp, attempts, elapsedMs: Date.now() - started },
          "logged in with the new password",
        );
        return;
      }
      const detail = { status: result.status, ...(result.code ? { code: result.code } : {}), reason: result.reason };
      const timedOut = Date.now() + 10 >= deadline;
      if (result.status === "error" || timedOut) {
        tlog.warn({ where, user: params.user, fingerprint: fp, attempts, ...detail }, "verification failed");
        throw new VerificationError(
          `${rotationId ? `rotation ${rotationId} of ` : ""}${name}: could not log in as "${params.user}" to ${where} ` +
            `with the new password (${fp}) ${result.status === "error" ? "" : `within ${formatDuration(timeoutMs)} `}` +
            `(${attempts} attempt${attempts === 1 ? "" : "s"}; last: ${result.status}${result.code ? ` ${result.code}` : ""}: ` +
            `${result.reason}). ${hint(result.status)} The new password was not promoted.`,
          { ...(rotationId ? { rotationId } : {}), lastStatus: result.status, attempts },
        );
      }
      tlog.debug({ where, attempts, ...detail }, "new password not accepted yet; retrying");
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
      delay = Math.min(delay * 2, maxDelayMs);
    }
  };
  // One login, no retries, for `status`: which role a session runs as (SET role) — or undefined
  // when verification is off for the target.
  const probe = async (secret: SecretObject, target: RotationTarget): Promise<LoginResult | undefined> => {
    const settings = verifySettingsFor(target.externalSecret, config);
    if (!settings.enabled) return undefined;
    const rootCert = settings.sslMode === "verify-full" ? (config.sslRootCert ?? (await clusterCa(secret, target, options_.readCa, undefined))) : undefined;
    return login(loginParams(secret, settings, rootCert, targetName(target), undefined), { timeoutMs: attemptTimeoutMs });
  };
  return Object.assign(verify, { probe });
}

/**
 * verify-full's CA: `ca.crt` of the Cluster's `<cluster>-ca` Secret, the Cluster named by the
 * ExternalSecret (cnpg-rotator.io/cluster) or the Secret's `cnpg.io/cluster` label.
 */
async function clusterCa(
  secret: SecretObject,
  target: RotationTarget,
  readCa: VerifierOptions["readCa"],
  rotationId: string | undefined,
): Promise<string> {
  const cluster = target.strategy.cluster ?? secret.labels["cnpg.io/cluster"];
  const ca = cluster && readCa ? await readCa(secret.namespace, cluster) : undefined;
  if (ca) return ca;
  throw new VerificationError(
    `${targetName(target)}: verify-full needs the CA of CNPG's server certificate: ` +
      (cluster
        ? `Secret ${secret.namespace}/${cluster}-ca has no ca.crt the function can read (grant get on it, see deploy/rbac.yaml)`
        : `the Secret has no cnpg.io/cluster label and the ExternalSecret no cnpg-rotator.io/cluster annotation naming the Cluster`) +
      `; or set CNPG_ROTATOR_VERIFY_SSLROOTCERT, or choose ${VERIFY_ANNOTATIONS.sslMode}: require (TLS without checking the server). The new password was not promoted.`,
    { ...(rotationId ? { rotationId } : {}), lastStatus: "error" },
  );
}

function hint(status: LoginResult["status"]): string {
  switch (status) {
    case "auth-failed":
      return "CNPG has not applied it to the role (is the cluster healthy, does the Secret carry cnpg.io/reload: \"true\"?).";
    case "unreachable":
      return (
        `No server answered at that address from here: point CNPG_ROTATOR_VERIFY_HOST/_PORT or the ExternalSecret's ` +
        `${VERIFY_ANNOTATIONS.host}/${VERIFY_ANNOTATIONS.port} annotations at an address this function can reach.`
      );
    default:
      return `Check the database name and TLS settings (CNPG_ROTATOR_VERIFY_SSLMODE, ${VERIFY_ANNOTATIONS.sslMode}).`;
  }
}

/**
 * Username and password from the merged Secret; host and port from the
 * settings, else the Secret's keys, else its `uri`; database from `dbname`,
 * else the `uri`, else the user name (libpq's default).
 */
function loginParams(
  secret: SecretObject,
  settings: TargetVerifySettings,
  sslRootCert: string | undefined,
  name: string,
  rotationId: string | undefined,
): LoginParams {
  const d = secret.data;
  let fromUri: ReturnType<typeof readUri> | undefined;
  if (d.uri !== undefined) {
    try {
      fromUri = readUri(d.uri, "uri");
    } catch {
      // Only a fallback: the keys below usually say it all.
    }
  }
  const fail = (what: string) =>
    new VerificationError(`${name}: cannot verify the new password: ${what}`, {
      ...(rotationId ? { rotationId } : {}),
      lastStatus: "error",
    });
  const user = d.username ?? d.user ?? fromUri?.user;
  const password = d.password;
  if (!user) throw fail("the Secret has no username (keys username, user or uri)");
  if (password === undefined || password === "") throw fail("the Secret has no password key");
  const host = settings.host ?? d.host ?? fromUri?.host;
  if (!host) throw fail(`no host to log in to: the Secret has no host key; set CNPG_ROTATOR_VERIFY_HOST or ${VERIFY_ANNOTATIONS.host}`);
  let port = settings.port;
  if (port === undefined) {
    const raw = d.port ?? fromUri?.port;
    port = raw === undefined ? 5432 : Number(raw);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw fail(`the Secret's port is not a port number; set CNPG_ROTATOR_VERIFY_PORT or ${VERIFY_ANNOTATIONS.port}`);
    }
  }
  return {
    host,
    port,
    user,
    password,
    database: d.dbname ?? fromUri?.dbname ?? user,
    ssl: settings.sslMode,
    ...(sslRootCert ? { sslRootCert } : {}),
    // Reached at an address of its own (outside the cluster): the certificate still names the Secret's host.
    ...(settings.host !== undefined && d.host && d.host !== host ? { tlsServerName: d.host } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Configuration from the environment (context.ts).

export interface VerificationSetup {
  /** Present when at least one target is verified. */
  readonly verify?: Verifier;
  /** Whether a failed verification rolls the Secret back (CNPG_ROTATOR_ROLLBACK_ON_VERIFY_FAILURE, default true). */
  readonly rollbackOnFailure: boolean;
}

/**
 * Reads CNPG_ROTATOR_VERIFY* and CNPG_ROTATOR_ROLLBACK_ON_VERIFY_FAILURE and
 * checks every ExternalSecret's verify annotations, so a bad value is an
 * InputError before any run writes anything (SPEC §5.7).
 */
export function verificationFromEnvironment(
  env: NodeJS.ProcessEnv,
  externalSecrets: readonly ExternalSecret[],
  overrides: { enabled?: boolean; rollbackOnFailure?: boolean; log?: Logger; readCa?: VerifierOptions["readCa"] } = {},
): VerificationSetup {
  const v = (name: string) => {
    const value = env[name];
    return value === undefined || value.trim() === "" ? undefined : value.trim();
  };
  const enabled = overrides.enabled ?? bool(env, "CNPG_ROTATOR_VERIFY") ?? false;
  const host = v("CNPG_ROTATOR_VERIFY_HOST");
  if (host !== undefined) checkHost("CNPG_ROTATOR_VERIFY_HOST", host);
  const port = v("CNPG_ROTATOR_VERIFY_PORT");
  const sslMode = v("CNPG_ROTATOR_VERIFY_SSLMODE");
  const rootCert = v("CNPG_ROTATOR_VERIFY_SSLROOTCERT");
  const config: VerifyConfig = {
    enabled,
    ...(host !== undefined ? { host } : {}),
    ...(port !== undefined ? { port: parsePort("CNPG_ROTATOR_VERIFY_PORT", port) } : {}),
    ...(sslMode !== undefined ? { sslMode: parseSslMode("CNPG_ROTATOR_VERIFY_SSLMODE", sslMode) } : {}),
    ...(rootCert !== undefined ? { sslRootCert: readRootCert(rootCert) } : {}),
    ...durationVar(env, "CNPG_ROTATOR_VERIFY_TIMEOUT", "timeoutMs"),
    ...durationVar(env, "CNPG_ROTATOR_VERIFY_ATTEMPT_TIMEOUT", "attemptTimeoutMs"),
  };
  const settings = externalSecrets.map((es) => verifySettingsFor(es, config));
  const rollbackOnFailure = overrides.rollbackOnFailure ?? bool(env, "CNPG_ROTATOR_ROLLBACK_ON_VERIFY_FAILURE") ?? true;
  if (!settings.some((s) => s.enabled)) return { rollbackOnFailure };
  return {
    verify: createVerifier(config, { ...(overrides.log ? { log: overrides.log } : {}), ...(overrides.readCa ? { readCa: overrides.readCa } : {}) }),
    rollbackOnFailure,
  };
}

function bool(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const value = env[name]?.trim();
  return value === undefined || value === "" ? undefined : parseBoolean(name, value);
}

function parseBoolean(what: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === "true" || v === "1") return true;
  if (v === "false" || v === "0") return false;
  throw new InputError(`${what}: expected true or false, found "${value}"`);
}

function parsePort(what: string, value: string): number {
  const n = /^\d+$/.test(value.trim()) ? Number(value.trim()) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new InputError(`${what}: expected a port number from 1 to 65535, found "${value}"`);
  }
  return n;
}

function parseSslMode(what: string, value: string): SslMode {
  const v = value.trim();
  if (!(SSL_MODES as readonly string[]).includes(v)) {
    throw new InputError(`${what}: expected one of ${SSL_MODES.join(", ")}, found "${value}"`);
  }
  return v as SslMode;
}

function checkHost(what: string, value: string): void {
  const ok = isIP(value) !== 0 || /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(value);
  if (!ok || value.length > 253) throw new InputError(`${what}: expected a host name or IP address, found "${value}"`);
}

/** A Go duration ("120s", "2m") or a number of seconds; must be positive. */
function durationVar<F extends string>(env: NodeJS.ProcessEnv, name: string, field: F): Partial<Record<F, number>> {
  const raw = env[name]?.trim();
  if (raw === undefined || raw === "") return {};
  const ms = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) * 1000 : parseDuration(raw);
  if (ms === undefined || !(ms > 0)) {
    throw new InputError(`${name}: expected a positive duration such as "120s" or "2m", found "${raw}"`);
  }
  return { [field]: ms } as Partial<Record<F, number>>;
}

/** CNPG_ROTATOR_APPLY_TIMEOUT: how long CNPG gets to report a password applied in its Cluster status. */
export function applyTimeoutFromEnvironment(env: NodeJS.ProcessEnv): { applyTimeoutMs?: number } {
  return durationVar(env, "CNPG_ROTATOR_APPLY_TIMEOUT", "applyTimeoutMs");
}

/** The CA as PEM text, or a path to a PEM file. */
function readRootCert(value: string): string {
  if (value.startsWith("-----BEGIN")) return value;
  try {
    return readFileSync(value, "utf8");
  } catch (e) {
    throw new InputError(`CNPG_ROTATOR_VERIFY_SSLROOTCERT: cannot read the CA file ${value}: ${(e as Error).message}`);
  }
}
