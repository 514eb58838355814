// The HTTP side of the cluster client: one configuration per client (with a request
// log, a timeout and its own connection pool) and the translation of API failures into
// our typed errors. Deep imports of client-node's modules: its index also loads what we
// never run (watch, exec, attach, cp, port-forward, metrics and their dependencies).
import type { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import { ApiException } from "@kubernetes/client-node/dist/gen/apis/exception.js";
import { type Configuration, createConfiguration } from "@kubernetes/client-node/dist/gen/configuration.js";
import { ServerConfiguration } from "@kubernetes/client-node/dist/gen/servers.js";
import { setHeaderMiddleware } from "@kubernetes/client-node/dist/middleware.js";
import { KubernetesError, PermissionError, RotatorError } from "../errors.ts";
import { HttpsTransport } from "./transport.ts";
import type { AccessCheck, RequestRecord } from "./types.ts";

const USER_AGENT = "cnpg-rotator";
const REQUEST_LOG_LIMIT = 1000;

/** Counts and logs every request. */
export class RequestLog {
  count = 0;
  readonly records: RequestRecord[] = [];

  record(r: RequestRecord): void {
    this.count++;
    this.records.push(r);
    if (this.records.length > REQUEST_LOG_LIMIT) this.records.shift();
  }
}

/** A client-node configuration for the kubeconfig's current context, and the transport it sends with. */
export interface ApiConfiguration {
  readonly configuration: Configuration;
  /** Close it to close the client's connections. */
  readonly transport: HttpsTransport;
}

/** A client-node configuration for the kubeconfig's current context that logs into `log`. */
export function apiConfiguration(kc: KubeConfig, log: RequestLog, timeoutMs: number): ApiConfiguration {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubernetesError("the kubeconfig has no cluster for its current context");
  // The transport authenticates each request from the kubeconfig itself, so no auth method is configured here.
  const transport = new HttpsTransport(kc, cluster, timeoutMs, (sent) => log.record(sent));
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    httpApi: transport.library,
    middleware: [setHeaderMiddleware("User-Agent", USER_AGENT)],
  });
  return { configuration, transport };
}

/** The request an error is about, in RBAC's words. */
export interface ApiOperation extends AccessCheck {
  readonly namespace?: string;
}

interface ApiStatus {
  code: number;
  reason: string;
  message: string;
  details?: { name?: string; group?: string; kind?: string };
}

/** The HTTP status of a failed API call, or undefined for anything else (network, our own errors). */
export function httpStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

/** Resolves to undefined when the call fails with one of `codes`. */
export async function unless<T>(codes: readonly number[], p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (e) {
    const code = httpStatus(e);
    if (code !== undefined && codes.includes(code)) return undefined;
    throw e;
  }
}

/** `secrets`, `leases.coordination.k8s.io`. */
export function resourceName(group: string, resource: string): string {
  return group ? `${resource}.${group}` : resource;
}

function describe(op: ApiOperation): string {
  const what = resourceName(op.group, op.resource);
  return `${what}${op.name ? ` "${op.name}"` : ""}${op.namespace ? ` in namespace "${op.namespace}"` : ""}`;
}

function parseStatus(err: ApiException<unknown>): ApiStatus {
  let body: unknown = err.body;
  if (typeof body === "string" || Buffer.isBuffer(body)) {
    try {
      body = JSON.parse(body.toString());
    } catch {
      body = undefined;
    }
  }
  const s = (body && typeof body === "object" ? body : {}) as Partial<ApiStatus>;
  return {
    code: err.code,
    reason: typeof s.reason === "string" && s.reason ? s.reason : reasonForCode(err.code),
    message: typeof s.message === "string" ? s.message : "",
    ...(s.details && typeof s.details === "object" ? { details: s.details } : {}),
  };
}

function reasonForCode(code: number): string {
  const reasons: Record<number, string> = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
  };
  return reasons[code] ?? "Unknown";
}

/**
 * Turns a failure of `op` into a PermissionError (403) or KubernetesError. The API's
 * Status messages name objects and users, never Secret values; the library's own error
 * text (which carries the whole response) is not reused.
 */
export function apiError(err: unknown, op: ApiOperation, server: string): RotatorError {
  if (err instanceof RotatorError) return err;
  if (err instanceof ApiException) {
    const status = parseStatus(err);
    if (status.code === 403) return permissionError(status, op);
    if (status.code === 401) {
      return new KubernetesError(
        `cannot ${op.verb} ${describe(op)}: the API server at ${server} rejected the kubeconfig's credentials ` +
          `(HTTP 401 Unauthorized); the token or client certificate is missing, wrong or expired`,
      );
    }
    const detail = status.message ? `: ${status.message}` : "";
    return new KubernetesError(`cannot ${op.verb} ${describe(op)}: HTTP ${status.code} ${status.reason}${detail}`);
  }
  return new KubernetesError(`cannot ${op.verb} ${describe(op)}: ${transportFailure(err, server)}`);
}

function permissionError(status: ApiStatus, op: ApiOperation): PermissionError {
  const user = /User "([^"]*)"/.exec(status.message)?.[1];
  const what = resourceName(op.group, op.resource);
  // RBAC cannot restrict create (nor list) by name, so only other verbs get resourceNames.
  const names = op.name && op.verb !== "create" ? ` (resourceNames: ${op.name})` : "";
  return new PermissionError(
    `forbidden: user ${user === undefined ? "(unknown)" : `"${user}"`} cannot ${op.verb} ${describe(op)}` +
      ` — grant verb ${op.verb} on ${what}${names}; see deploy/rbac.yaml`,
  );
}

function transportFailure(err: unknown, server: string): string {
  if (!(err instanceof Error)) return `request to ${server} failed: ${String(err)}`;
  if (err.name === "TimeoutError" || err.name === "AbortError") return `no answer from ${server} in time (${err.name})`;
  const cause = err.cause instanceof Error ? err.cause : undefined;
  const code = (cause as { code?: unknown } | undefined)?.code;
  const why = cause ? `${typeof code === "string" ? `${code}: ` : ""}${cause.message}` : err.message;
  return `request to ${server} failed: ${why}`;
}
