// Two forwarding proxies for the transport's proxy-url tests, on 127.0.0.1 and a free port
// each: an HTTP CONNECT proxy and a SOCKS5 one (no authentication, CONNECT only). Both
// record every tunnel they open, so a test can tell how many connections a client made.
import { once } from "node:events";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, connect, createServer as createTcpServer, type Server, type Socket } from "node:net";

export interface TestProxy {
  readonly url: string;
  /** `host:port` of every tunnel opened, in order. */
  readonly tunnels: string[];
  close(): Promise<void>;
}

export async function startConnectProxy(): Promise<TestProxy> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const server = createHttpServer((_req, res) => {
    res.writeHead(405).end("CONNECT only");
  });
  server.on("connect", (req, client: Socket, head: Buffer) => {
    const target = req.url ?? "";
    tunnels.push(target);
    const [host, port] = splitHostPort(target);
    const upstream = connect(port, host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    track(sockets, client, upstream);
  });
  return listen(server, "http", tunnels, sockets);
}

export async function startSocks5Proxy(): Promise<TestProxy> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const server = createTcpServer((client) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    let buffered = Buffer.alloc(0);
    let stage: "greeting" | "request" = "greeting";
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (stage === "greeting") {
        // VER 5, NMETHODS, METHODS...: answer "no authentication".
        if (buffered.length < 2 || buffered.length < 2 + buffered[1]!) return;
        buffered = buffered.subarray(2 + buffered[1]!);
        client.write(Buffer.from([5, 0]));
        stage = "request";
      }
      // VER 5, CMD 1 (CONNECT), RSV, ATYP (1 IPv4, 3 domain), address, port.
      if (buffered.length < 5) return;
      const atyp = buffered[3]!;
      const addressLength = atyp === 1 ? 4 : atyp === 3 ? 1 + buffered[4]! : -1;
      if (buffered[1] !== 1 || addressLength < 0) {
        client.end(Buffer.from([5, 7, 0, 1, 0, 0, 0, 0, 0, 0]));
        return;
      }
      if (buffered.length < 4 + addressLength + 2) return;
      const host = atyp === 1 ? [...buffered.subarray(4, 8)].join(".") : buffered.subarray(5, 5 + buffered[4]!).toString();
      const port = buffered.readUInt16BE(4 + addressLength);
      const rest = buffered.subarray(4 + addressLength + 2);
      client.off("data", onData);
      tunnels.push(`${host}:${port}`);
      const upstream = connect(port, host, () => {
        client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
        if (rest.length) upstream.write(rest);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      track(sockets, client, upstream);
    };
    client.on("data", onData);
  });
  return listen(server, "socks5", tunnels, sockets);
}

function splitHostPort(target: string): [string, number] {
  const i = target.lastIndexOf(":");
  return [target.slice(0, i).replace(/^\[|\]$/g, ""), Number(target.slice(i + 1))];
}

function track(sockets: Set<Socket>, ...pair: Socket[]): void {
  for (const s of pair) {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => {
      for (const other of pair) other.destroy();
    });
  }
}

async function listen(server: Server, scheme: string, tunnels: string[], sockets: Set<Socket>): Promise<TestProxy> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    tunnels,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
