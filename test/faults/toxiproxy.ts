// TEST ONLY: Toxiproxy (github.com/Shopify/toxiproxy/v2, built and cached by
// test/infra/emulators/build.sh toxiproxy) for TCP faults, started once per campaign with its
// HTTP API on 127.0.0.1, and a small client of that API: one proxy per run and server, toxics
// added and removed while a run is under way.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, openSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { cacheDir, freePort } from "../infra/servers.ts";

export const toxiproxyBinary = path.join(cacheDir, "bin", "toxiproxy-server");

export type ToxicType = "reset_peer" | "timeout" | "slicer" | "latency" | "bandwidth";

export interface Toxic {
  readonly type: ToxicType;
  /** downstream: server → client; upstream: client → server. */
  readonly stream: "upstream" | "downstream";
  readonly toxicity?: number;
  readonly attributes: Record<string, number>;
}

export interface Toxiproxy {
  readonly api: string;
  /** A proxy listening on 127.0.0.1 (a free port) that forwards to `upstream` (host:port); resolves to its port. */
  createProxy(name: string, upstream: string): Promise<number>;
  deleteProxy(name: string): Promise<void>;
  addToxic(proxy: string, name: string, toxic: Toxic): Promise<void>;
  removeToxic(proxy: string, name: string): Promise<void>;
  readonly pid: number;
  /** Resolves with how toxiproxy-server ended ("killed by SIGKILL", "exited with code 1"). */
  readonly exited: Promise<string>;
  stop(): Promise<void>;
}

export async function startToxiproxy(logFile: string): Promise<Toxiproxy> {
  if (!existsSync(toxiproxyBinary)) {
    throw new Error(`toxiproxy-server is not installed at ${toxiproxyBinary}; run bash test/infra/emulators/build.sh toxiproxy`);
  }
  const port = await freePort();
  const api = `http://127.0.0.1:${port}`;
  const fd = openSync(logFile, "a");
  const child: ChildProcess = spawn("setpriv", ["--pdeathsig", "KILL", "--", toxiproxyBinary, "-host", "127.0.0.1", "-port", String(port)], {
    stdio: ["ignore", fd, fd],
    env: { ...process.env, LOG_LEVEL: "warn" },
  });
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(signal ? `killed by ${signal}` : `exited with code ${code}`)),
  );
  process.on("exit", () => child.kill("SIGKILL"));
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`toxiproxy-server exited at start; see ${logFile}`);
    if (await fetch(`${api}/version`).then((r) => r.ok, () => false)) break;
    if (i > 100) throw new Error(`toxiproxy-server did not answer on ${api} within 10 s; see ${logFile}`);
    await sleep(100);
  }
  const call = async (method: string, route: string, body?: unknown, okMissing = false) => {
    for (let attempt = 0; ; attempt++) {
      const r = await fetch(`${api}${route}`, {
        method,
        ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
      });
      const text = await r.text();
      if (r.ok || (okMissing && r.status === 404)) return text ? (JSON.parse(text) as Record<string, unknown>) : {};
      // A port taken between freePort() and the listen: try another.
      if (attempt < 3 && /address already in use/.test(text) && typeof body === "object" && body && "listen" in body) {
        (body as { listen: string }).listen = `127.0.0.1:${await freePort()}`;
        continue;
      }
      throw new Error(`toxiproxy ${method} ${route}: ${r.status} ${text}`);
    }
  };
  return {
    api,
    pid: child.pid ?? -1,
    exited,
    async createProxy(name, upstream) {
      const body = { name, listen: `127.0.0.1:${await freePort()}`, upstream, enabled: true };
      const created = await call("POST", "/proxies", body);
      return Number(String(created.listen).split(":").pop());
    },
    deleteProxy: async (name) => void (await call("DELETE", `/proxies/${name}`, undefined, true)),
    addToxic: async (proxy, name, toxic) => void (await call("POST", `/proxies/${proxy}/toxics`, { name, ...toxic, toxicity: toxic.toxicity ?? 1 })),
    removeToxic: async (proxy, name) => void (await call("DELETE", `/proxies/${proxy}/toxics/${name}`, undefined, true)),
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
  };
}
