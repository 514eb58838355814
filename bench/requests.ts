// Counts every HTTP request this process sends, whichever client sends it: node:http(s)
// (the Kubernetes client's transport, the AWS SDK's NodeHttpHandler) publishes
// `http.client.request.start`, undici (global fetch; client-node's own before
// lib/kubernetes/transport.ts) `undici:request:create`. Retries and refused calls are
// requests too, so they count.
import dc from "node:diagnostics_channel";
import type { Socket } from "node:net";

export interface RequestTally {
  total: number;
  /** "kube" (the API server's origin), "store" (the secret store's origin), or "other". */
  bySystem: Record<string, number>;
  /** Kubernetes: "GET secrets"; AWS: "DescribeSecret" (from X-Amz-Target). */
  byOperation: Record<string, number>;
  /** New TCP connections opened, by system (a reused keep-alive connection opens none). */
  connections: Record<string, number>;
}

interface UndiciRequest {
  method: string;
  origin: string | URL;
  path: string;
}

interface HttpClientRequest {
  method: string;
  host: string;
  protocol: string;
  path: string;
  getHeader(name: string): unknown;
}

export class RequestCounter {
  #tally: RequestTally = empty();
  #active = false;
  readonly #kubeOrigin: string;
  readonly #storeHost: string;
  readonly #kubeHostPort: string;

  constructor(options: { kubeServer: string; storeEndpoint: string }) {
    this.#kubeOrigin = new URL(options.kubeServer).origin;
    this.#storeHost = new URL(options.storeEndpoint).host;
    this.#kubeHostPort = new URL(options.kubeServer).host;
    dc.subscribe("undici:request:create", this.#onUndici);
    dc.subscribe("http.client.request.start", this.#onHttp);
    dc.subscribe("net.client.socket", this.#onSocket);
  }

  /** Starts a new count (earlier requests are forgotten). */
  start(): void {
    this.#tally = empty();
    this.#active = true;
  }

  /** Stops counting and returns what was counted since start(). */
  stop(): RequestTally {
    this.#active = false;
    return this.#tally;
  }

  close(): void {
    dc.unsubscribe("undici:request:create", this.#onUndici);
    dc.unsubscribe("http.client.request.start", this.#onHttp);
    dc.unsubscribe("net.client.socket", this.#onSocket);
  }

  #onSocket = (message: unknown): void => {
    if (!this.#active) return;
    const socket = (message as { socket: Socket }).socket;
    // The remote address is known only once connected.
    socket.once("connect", () => {
      const to = `${socket.remoteAddress}:${socket.remotePort}`;
      const system = to === this.#kubeHostPort ? "kube" : to === this.#storeHost ? "store" : "other";
      this.#tally.connections[system] = (this.#tally.connections[system] ?? 0) + 1;
    });
  };

  #onUndici = (message: unknown): void => {
    if (!this.#active) return;
    const r = (message as { request: UndiciRequest }).request;
    const origin = typeof r.origin === "string" ? r.origin : r.origin.origin;
    if (origin === this.#kubeOrigin) this.#add("kube", `${r.method} ${kubeResource(r.path)}`);
    else this.#add("other", `${r.method} ${origin}`);
  };

  #onHttp = (message: unknown): void => {
    if (!this.#active) return;
    const r = (message as { request: HttpClientRequest }).request;
    const target = r.getHeader("x-amz-target");
    const host = String(r.getHeader("host") ?? r.host);
    if (host === this.#kubeHostPort) {
      this.#add("kube", `${r.method} ${kubeResource(r.path)}`);
    } else if (host === this.#storeHost || typeof target === "string") {
      this.#add("store", typeof target === "string" ? target.replace(/^secretsmanager\./, "") : `${r.method} ${r.path}`);
    } else {
      this.#add("other", `${r.method} ${r.protocol}//${host}`);
    }
  };

  #add(system: string, operation: string): void {
    const t = this.#tally;
    t.total++;
    t.bySystem[system] = (t.bySystem[system] ?? 0) + 1;
    t.byOperation[`${system}: ${operation}`] = (t.byOperation[`${system}: ${operation}`] ?? 0) + 1;
  }
}

function empty(): RequestTally {
  return { total: 0, bySystem: {}, byOperation: {}, connections: {} };
}

/** `/api/v1/namespaces/ns/secrets/name?x` → `secrets`; `/apis/coordination.k8s.io/v1/namespaces/ns/leases/n` → `leases`. */
export function kubeResource(path: string): string {
  const parts = path.split("?")[0]!.split("/").filter(Boolean);
  const i = parts.indexOf("namespaces");
  if (i >= 0 && parts.length > i + 2) return parts[i + 2]!;
  return parts.at(-1) ?? path;
}
