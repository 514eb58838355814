// The HTTP side of the cluster client: one configuration per client (with a request
// log and timeout) and the translation of API failures into our typed errors.
import {
  ApiException,
  type Configuration,
  createConfiguration,
  IsomorphicFetchHttpLibrary,
  type KubeConfig,
  type RequestContext,
  type ResponseContext,
  ServerConfiguration,
  setHeaderMiddleware,
  wrapHttpLibrary,
} from "@kubernetes/client-node";
import { KubernetesError, PermissionError, RotatorError } from "../errors.ts";
import type { AccessCheck, RequestRecord } from "./types.ts";

const USER_AGENT = "cnpg-rotator";
const REQUEST_LOG_LIMIT = 1000;

type Dispatcher = NonNullable<ReturnType<RequestContext["getDispatcher"]>>;

/** Counts and logs every request; reuses one connection pool per client. */
export class RequestLog {
  count = 0;
  readonly records: RequestRecord[] = [];
  dispatcher: Dispatcher | undefined;

  record(r: RequestRecord): void {
    this.count++;
    this.records.push(r);
    if (this.records.length > REQUEST_LOG_LIMIT) this.records.shift();
  }
}

/** A client-node configuration for the kubeconfig's current context that logs into `log`. */
export function apiConfiguration(kc: KubeConfig, log: RequestLog, timeoutMs: number): Configuration {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubernetesError("the kubeconfig has no cluster for its current context");
  const inner = new IsomorphicFetchHttpLibrary();
  const httpApi = wrapHttpLibrary({
    async send(request: RequestContext): Promise<ResponseContext> {
      // The kubeconfig hands every request a fresh connection pool (one TLS handshake
      // each); a client lives for one run, so keep the first pool for all its requests.
      const fresh = request.getDispatcher();
      if (fresh) {
        if (!log.dispatcher) log.dispatcher = fresh;
        else if (fresh !== log.dispatcher) {
          request.setDispatcher(log.dispatcher);
          void fresh.close().catch(() => {});
        }
      }
      if (!request.getSignal()) request.setSignal(AbortSignal.timeout(timeoutMs));
      const method = request.getHttpMethod();
      const path = new URL(request.getUrl()).pathname;
      try {
        const response = await inner.send(request).toPromise();
        log.record({ method, path, status: response.httpStatusCode });
        return response;
      } catch (e) {
        log.record({ method, path, status: 0 });
        throw e;
      }
    },
  });
  return createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    httpApi,
    middleware: [setHeaderMiddleware("User-Agent", USER_AGENT)],
  });
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
