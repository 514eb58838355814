// How the cluster client's requests travel: over node:https, through client-node's own
// wrapHttpLibrary, instead of the copy of undici client-node bundles (750 KB of bundle, and
// a fresh connection pool per request as the kubeconfig hands them out). One keep-alive
// agent per client, so a run's requests share their TLS connections (HTTP/1.1); the
// kubeconfig still decides every request's credential and TLS material (token, exec
// plugin, client certificate, CA), asked afresh each time as client-node does.
import type { ClientRequest } from "node:http";
import { Agent, type AgentOptions, request as httpsRequest, type RequestOptions } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import type { Cluster } from "@kubernetes/client-node/dist/config_types.js";
import {
  type HttpLibrary,
  type RequestContext,
  ResponseContext,
  wrapHttpLibrary,
} from "@kubernetes/client-node/dist/gen/http/http.js";
import { HttpsProxyAgent } from "hpagent";
import { SocksProxyAgent } from "socks-proxy-agent";
import { InputError } from "../errors.ts";

/** TCP keep-alive probes start after this long idle, as client-go does (cloud load balancers drop idle flows at ~60 s). */
const TCP_KEEPALIVE_MS = 30_000;
/** A pooled connection idle this long is closed rather than reused. */
const IDLE_SOCKET_MS = 30_000;

/** The TLS material of a request, as the kubeconfig gives it; a change (a rotated exec certificate) needs another agent. */
const TLS_FIELDS = ["ca", "cert", "key", "pfx", "passphrase", "rejectUnauthorized", "servername"] as const;
type TlsOptions = Pick<AgentOptions, (typeof TLS_FIELDS)[number]>;

/**
 * The kubeconfig's `proxy-url` of `cluster`, checked: http://, https:// (an HTTP CONNECT
 * proxy) and socks4/4a/5/5h:// are supported, as by kubectl; anything else is an InputError.
 */
export function checkProxyUrl(cluster: Cluster, source: string): void {
  const proxy = cluster.proxyUrl;
  if (!proxy) return;
  let url: URL;
  try {
    url = new URL(proxy);
  } catch {
    throw new InputError(`${source}: cluster "${cluster.name}" proxy-url is not a URL`);
  }
  if (!PROXY_PROTOCOLS.has(url.protocol)) {
    throw new InputError(
      `${source}: cluster "${cluster.name}" proxy-url has scheme "${url.protocol.replace(/:$/, "")}"; ` +
        `supported: ${[...PROXY_PROTOCOLS].map((p) => p.replace(/:$/, "")).join(", ")}`,
    );
  }
}

const PROXY_PROTOCOLS = new Set(["http:", "https:", "socks:", "socks4:", "socks4a:", "socks5:", "socks5h:"]);

/** What one request did (for the client's request log). */
export interface Sent {
  readonly method: string;
  readonly path: string;
  /** 0 when no answer came. */
  readonly status: number;
}

/**
 * client-node's HttpLibrary over node:https for the kubeconfig's current context.
 * `timeoutMs` bounds each request that carries no signal of its own; `onSent` hears of
 * every request, answered or not.
 */
export class HttpsTransport {
  readonly library: HttpLibrary;
  readonly #kc: KubeConfig;
  readonly #cluster: Cluster;
  readonly #timeoutMs: number;
  #agent: { readonly agent: Agent; readonly tls: TlsOptions } | undefined;
  /** Agents replaced because the TLS material changed; their connections close with close(). */
  readonly #retired: Agent[] = [];
  /** Requests in flight without a signal of their own, each with its deadline. */
  readonly #inFlight = new Map<ClientRequest, number>();
  /**
   * One timer for all of them, ticking while any is in flight: an AbortSignal.timeout per
   * request (a timer, a signal and the listeners http adds for it) cost more CPU than the
   * rest of the transport's own work.
   */
  #ticker: NodeJS.Timeout | undefined;

  constructor(kc: KubeConfig, cluster: Cluster, timeoutMs: number, onSent: (sent: Sent) => void) {
    this.#kc = kc;
    this.#cluster = cluster;
    this.#timeoutMs = timeoutMs;
    this.library = wrapHttpLibrary({
      send: async (request) => {
        const method = request.getHttpMethod();
        const url = new URL(request.getUrl());
        // A credential that cannot be had (a failing exec plugin or token provider) fails before anything is sent.
        const opts = await this.#credentials();
        try {
          const response = await this.#send(request, url, opts);
          onSent({ method, path: url.pathname, status: response.httpStatusCode });
          return response;
        } catch (e) {
          onSent({ method, path: url.pathname, status: 0 });
          throw e;
        }
      },
    });
  }

  /** Closes every pooled connection; a later request opens a new one. */
  close(): void {
    clearInterval(this.#ticker);
    this.#ticker = undefined;
    this.#inFlight.clear();
    const agents = [...this.#retired, ...(this.#agent ? [this.#agent.agent] : [])];
    this.#retired.length = 0;
    this.#agent = undefined;
    for (const agent of agents) agent.destroy();
  }

  /**
   * The kubeconfig's credential and TLS material for one request: bearer token (a token
   * file or exec plugin is read now), basic auth, impersonation, CA and client certificate.
   */
  async #credentials(): Promise<RequestOptions> {
    const opts: RequestOptions = {};
    await this.#kc.applyToHTTPSOptions(opts);
    return opts;
  }

  async #send(request: RequestContext, url: URL, opts: RequestOptions): Promise<ResponseContext> {
    const headers: Record<string, string> = { ...request.getHeaders() };
    for (const [name, value] of Object.entries(opts.headers ?? {})) {
      if (value !== undefined) headers[name] = String(value);
    }
    const body = request.getBody();
    if (body !== undefined && typeof body !== "string" && !Buffer.isBuffer(body)) {
      throw new TypeError("the Kubernetes transport sends string or Buffer bodies only");
    }
    // Always framed by its length: Node sends a DELETE's body without chunked encoding, so an
    // unframed one (a Lease delete's preconditions) would be read as the next request on the
    // kept-alive connection.
    if (body !== undefined) {
      for (const name of Object.keys(headers)) if (name.toLowerCase() === "content-length") delete headers[name];
      headers["content-length"] = String(Buffer.byteLength(body));
    }
    const signal = request.getSignal();
    const agent = this.#agentFor(opts);
    return new Promise<ResponseContext>((resolve, reject) => {
      const req = httpsRequest(
        url,
        { method: request.getHttpMethod(), headers, agent, ...(signal ? { signal } : {}), ...(opts.auth ? { auth: opts.auth } : {}) },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (chunk: Buffer) => chunks.push(chunk));
          res.on("error", reject);
          res.on("end", () => {
            const data = Buffer.concat(chunks);
            const responseHeaders: Record<string, string> = {};
            for (const [name, value] of Object.entries(res.headers)) {
              if (value !== undefined) responseHeaders[name] = Array.isArray(value) ? value.join(", ") : value;
            }
            resolve(
              new ResponseContext(res.statusCode ?? 0, responseHeaders, {
                text: async () => data.toString("utf8"),
                binary: async () => data,
                // Answers are read whole: the client makes no watch or log calls.
                stream: () => null,
              }),
            );
          });
        },
      );
      req.on("error", reject);
      if (!signal) this.#watch(req);
      req.end(body);
    });
  }

  /** Destroys `req` with a TimeoutError if it has not closed within the timeout. */
  #watch(req: ClientRequest): void {
    this.#inFlight.set(req, performance.now() + this.#timeoutMs);
    req.once("close", () => this.#inFlight.delete(req));
    if (this.#ticker) return;
    // Checked at a tenth of the timeout (at most once a second): a request gives up between 1× and 1.1× of it.
    const every = Math.min(1000, Math.max(10, Math.ceil(this.#timeoutMs / 10)));
    this.#ticker = setInterval(() => {
      const now = performance.now();
      for (const [pending, deadline] of this.#inFlight) {
        if (deadline > now) continue;
        this.#inFlight.delete(pending);
        pending.destroy(Object.assign(new Error(`no answer within ${this.#timeoutMs} ms`), { name: "TimeoutError", code: "ETIMEDOUT" }));
      }
      if (this.#inFlight.size === 0) {
        clearInterval(this.#ticker);
        this.#ticker = undefined;
      }
    }, every);
    // The sockets in flight keep the process alive; the timer alone must not.
    this.#ticker.unref();
  }

  /** The agent for `opts`' TLS material: the client's one agent, unless that material changed. */
  #agentFor(opts: RequestOptions): Agent {
    const tls: TlsOptions = {};
    for (const field of TLS_FIELDS) {
      if (opts[field] !== undefined) (tls as Record<string, unknown>)[field] = opts[field];
    }
    const current = this.#agent;
    if (current && sameTls(current.tls, tls)) return current.agent;
    if (current) this.#retired.push(current.agent);
    const agent = createAgent(this.#cluster, tls);
    this.#agent = { agent, tls };
    return agent;
  }
}

function createAgent(cluster: Cluster, tls: TlsOptions): Agent {
  const options = { ...tls, keepAlive: true, keepAliveMsecs: TCP_KEEPALIVE_MS, timeout: IDLE_SOCKET_MS };
  const proxy = cluster.proxyUrl;
  // Both proxy agents keep the tunnelled TLS connections in the same keep-alive pool as a direct agent.
  const agent = !proxy
    ? new Agent(options)
    : proxy.startsWith("socks")
      ? (new SocksProxyAgent(proxy, options) as unknown as Agent)
      : new HttpsProxyAgent({ ...options, proxy });
  // Node names a pool by the request's host and every TLS option, the CA, certificate and key
  // included, turned into one string on every request and again as each answer frees its
  // connection (~50 µs a request here). This agent serves one server with one TLS identity.
  const pool = new URL(cluster.server).host;
  agent.getName = () => pool;
  return agent;
}

function sameTls(a: TlsOptions, b: TlsOptions): boolean {
  return TLS_FIELDS.every((field) => {
    const x = a[field];
    const y = b[field];
    if (Buffer.isBuffer(x) && Buffer.isBuffer(y)) return x.equals(y);
    return x === y;
  });
}
