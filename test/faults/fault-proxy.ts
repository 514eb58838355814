// TEST ONLY: an HTTP-aware fault proxy between a client and one server. It forwards every
// request as it came (Host and all headers kept, so signatures still match) and, while a rule
// matches, answers in the server's stead with an error status, or forwards the request, lets the
// server apply it, and then cuts the connection instead of passing the answer on (a response
// lost after the write was applied). HTTP/1.1 (plain or TLS, for moto, Vault, kube-apiserver,
// lowkey-vault) and plaintext HTTP/2 (gRPC, for the GCP emulator: errors become grpc-status
// trailers, a lost answer an RST_STREAM). It counts requests, connections and the faults that
// actually hit a request, so a campaign can tell a fault that fired from one that found no traffic.
import { once } from "node:events";
import { Agent as HttpAgent, createServer as createHttpServer, type IncomingMessage, request as httpRequest, type Server, type ServerResponse } from "node:http";
import { type ClientHttp2Session, connect as h2connect, constants as h2, createServer as createH2Server, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { Agent as HttpsAgent, createServer as createHttpsServer, request as httpsRequest } from "node:https";
import type { AddressInfo, Socket } from "node:net";

/** What a rule sees of a request. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

export type FaultAction =
  /** Answer with this status (HTTP/2: the gRPC status it maps to) without forwarding. */
  | { readonly status: number }
  /** Forward, let the server apply it, then cut the connection (HTTP/2: reset the stream). */
  | { readonly drop: true }
  /** Forward once this has run (HTTP/1.1): something else reaches the server first. */
  | { readonly before: () => Promise<unknown> };

export interface FaultRule {
  readonly match: (request: SeenRequest) => boolean;
  readonly action: FaultAction;
  /** How many matching requests it lets through before it hits one (default 0). */
  skip?: number;
  /** How many matching requests it hits before it stops (default: every one). */
  times?: number;
}

export interface FaultProxy {
  /** `http(s)://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** Requests received. */
  readonly requests: number;
  /** TCP connections accepted. */
  readonly connections: number;
  /** Requests a rule hit. */
  readonly hits: number;
  /** Requests received and not yet answered. */
  readonly inFlight: number;
  /** Every answer passed on (HTTP/1.1), in order. */
  readonly answers: readonly { readonly method: string; readonly path: string; readonly status: number }[];
  add(rule: FaultRule): void;
  clear(): void;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** Where to forward: `http://host:port`, `https://host:port` or, with `http2`, `http://host:port`. */
  readonly upstream: string;
  /** Serve TLS with this certificate (HTTP/1.1 only). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** CA (and name) the upstream's TLS certificate is checked against. */
  readonly upstreamCa?: string;
  readonly upstreamServername?: string;
  /** Plaintext HTTP/2 (gRPC) instead of HTTP/1.1. */
  readonly http2?: boolean;
  readonly port?: number;
}

/** gRPC status for an HTTP status a rule answers with: 429 → RESOURCE_EXHAUSTED, 5xx → UNAVAILABLE / INTERNAL. */
function grpcStatusOf(status: number): number {
  if (status === 429) return 8;
  if (status === 500) return 13;
  return 14;
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const rules: FaultRule[] = [];
  const sockets = new Set<Socket>();
  let requests = 0;
  let connections = 0;
  let hits = 0;
  let inFlight = 0;
  const answers: { method: string; path: string; status: number }[] = [];
  const pick = (seen: SeenRequest): FaultAction | undefined => {
    const rule = rules.find((r) => (r.times === undefined || r.times > 0) && r.match(seen));
    if (!rule) return undefined;
    if (rule.skip) {
      rule.skip--;
      return undefined;
    }
    if (rule.times !== undefined) rule.times--;
    hits++;
    return rule.action;
  };
  const track = (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
  };

  let server: Server | Http2Server;
  let closeUpstream: () => void;
  if (options.http2) {
    const h2 = http2Handler(options.upstream, pick, (stream) => {
      requests++;
      inFlight++;
      stream.on("close", () => inFlight--);
    });
    server = createH2Server();
    server.on("stream", h2.onStream);
    closeUpstream = h2.close;
  } else {
    const upstream = new URL(options.upstream);
    const secure = upstream.protocol === "https:";
    const agent = secure
      ? new HttpsAgent({ keepAlive: true, ca: options.upstreamCa, ...(options.upstreamServername ? { servername: options.upstreamServername } : {}) })
      : new HttpAgent({ keepAlive: true });
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      requests++;
      inFlight++;
      let open = true;
      const settle = () => {
        if (open) inFlight--;
        open = false;
      };
      res.on("close", settle);
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("error", () => {});
      req.on("end", async () => {
        const body = Buffer.concat(chunks);
        let action = pick({ method: req.method ?? "GET", path: req.url ?? "/", headers: req.headers, body });
        if (action && "before" in action) {
          await action.before().catch(() => {});
          action = undefined;
        }
        if (action && "status" in action) {
          const text = JSON.stringify({ message: `fault injected: ${action.status}`, __type: action.status === 429 ? "ThrottlingException" : "InternalServiceError" });
          res.writeHead(action.status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...(action.status === 429 ? { "retry-after": "0" } : {}) });
          res.end(text);
          return;
        }
        const headers = { ...req.headers };
        for (const h of ["connection", "keep-alive", "transfer-encoding", "proxy-connection"]) delete headers[h];
        headers["content-length"] = String(body.length);
        const send = secure ? httpsRequest : httpRequest;
        const out = send({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (up) => {
          const back: Buffer[] = [];
          up.on("data", (c: Buffer) => back.push(c));
          up.on("error", () => req.socket.destroy());
          up.on("end", () => {
            // Applied upstream, answer complete: lost on its way back.
            if (action) return req.socket.destroy();
            const payload = Buffer.concat(back);
            const h = { ...up.headers };
            for (const k of ["connection", "keep-alive", "transfer-encoding"]) delete h[k];
            h["content-length"] = String(payload.length);
            answers.push({ method: req.method ?? "GET", path: req.url ?? "/", status: up.statusCode ?? 0 });
            res.writeHead(up.statusCode ?? 502, h);
            res.end(payload);
          });
        });
        // The upstream link broke (a reset, a closed socket): the client's breaks too.
        out.on("error", () => req.socket.destroy());
        out.end(body);
      });
    };
    server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createHttpServer({ keepAliveTimeout: 30_000 }, handler);
    closeUpstream = () => agent.destroy();
  }
  // Every TCP connection, TLS or not: a connection whose handshake a toxic holds (a TLS
  // ClientHello dropped on its way) met the fault too, and is destroyed on close().
  server.on("connection", track);
  server.on("tlsClientError", () => {});
  server.listen(options.port ?? 0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    get requests() {
      return requests;
    },
    get connections() {
      return connections;
    },
    get hits() {
      return hits;
    },
    get inFlight() {
      return inFlight;
    },
    answers,
    add: (rule) => rules.push({ ...rule }),
    clear: () => {
      rules.length = 0;
    },
    async close() {
      rules.length = 0;
      for (const s of sockets) s.destroy();
      closeUpstream();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function http2Handler(upstreamUrl: string, pick: (seen: SeenRequest) => FaultAction | undefined, count: (stream: ServerHttp2Stream) => void) {
  let session: ClientHttp2Session | undefined;
  const upstream = () => {
    if (!session || session.closed || session.destroyed) {
      session = h2connect(upstreamUrl);
      session.on("error", () => {});
    }
    return session;
  };
  const onStream = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    count(stream);
    stream.on("error", () => {});
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      const body = Buffer.concat(chunks);
      const path = String(headers[":path"] ?? "/");
      const picked = pick({ method: String(headers[":method"] ?? "POST"), path, headers, body });
      const action = picked && "before" in picked ? undefined : picked;
      if (action && "status" in action) {
        if (stream.destroyed) return;
        stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(grpcStatusOf(action.status)), "grpc-message": `fault injected: ${action.status}` }, { endStream: true });
        return;
      }
      const forward: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(headers)) {
        if (v === undefined || k === ":authority" || k === ":scheme" || k === "connection") continue;
        forward[k] = v;
      }
      let req: ReturnType<ClientHttp2Session["request"]>;
      try {
        req = upstream().request(forward);
      } catch {
        stream.close(h2.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      let responseHeaders: Record<string, unknown> = {};
      let trailers: Record<string, unknown> | undefined;
      const back: Buffer[] = [];
      req.on("response", (h) => {
        responseHeaders = { ...h };
      });
      req.on("trailers", (t) => {
        trailers = { ...t };
      });
      req.on("data", (c: Buffer) => back.push(c));
      req.on("error", () => {
        if (!stream.destroyed) stream.close(h2.NGHTTP2_INTERNAL_ERROR);
      });
      req.on("end", () => {
        if (stream.destroyed) return;
        // Applied upstream, answer complete: reset instead of passing it on.
        if (action) return stream.close(h2.NGHTTP2_INTERNAL_ERROR);
        const h = { ...responseHeaders } as Record<string, string>;
        delete h["content-length"];
        const payload = Buffer.concat(back);
        stream.respond(h, { waitForTrailers: trailers !== undefined, endStream: payload.length === 0 && trailers === undefined });
        if (trailers) {
          stream.once("wantTrailers", () => {
            const t = { ...trailers } as Record<string, string>;
            stream.sendTrailers(t);
          });
        }
        if (payload.length > 0 || trailers !== undefined) stream.end(payload);
      });
      req.end(body);
    });
  };
  return { onStream, close: () => session?.destroy() };
}
