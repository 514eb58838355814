// The floor, in a fresh process of its own (spawned by bench/floor.ts): what a rotation's
// requests cost with nothing but node:http(s), in the protocol minimum's mix (bench/minimum.ts:
// 5 + 5 for one aws publication) — GETs of a Secret from the kube-apiserver over a keep-alive
// HTTPS agent, unsigned DescribeSecret POSTs to moto over a keep-alive HTTP agent (moto closes
// every connection, as it does for the SDK) — each answer read and parsed. `n` such groups,
// `concurrency` at a time, as the rotation runs its targets, with the same request counter as the rotation's process (bench/requests.ts),
// so both pay for the instrumentation alike. Prints one JSON line.
//
// Config (JSON in env BENCH_FLOOR): see FloorConfig.
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { IncomingMessage } from "node:http";
import { RequestCounter, type RequestTally } from "./requests.ts";

export interface FloorConfig {
  kubeServer: string;
  caPem: string;
  token: string;
  /** /api/v1/namespaces/<ns>/secrets/<name> */
  secretPath: string;
  storeEndpoint: string;
  secretId: string;
  /** Requests of each kind per rotation: the minimum's counts. */
  kubeRequests: number;
  storeRequests: number;
  n: number;
  concurrency: number;
}

export interface FloorReport {
  n: number;
  requests: number;
  tally: RequestTally;
  cpuMs: number;
  elapsedMs: number;
}

const config = JSON.parse(process.env.BENCH_FLOOR ?? "null") as FloorConfig | null;
if (!config) {
  console.error("bench/floor-child.ts: env BENCH_FLOOR must hold the run's config (JSON)");
  process.exit(2);
}

const kubeAgent = new HttpsAgent({ keepAlive: true, ca: config.caPem });
const storeAgent = new HttpAgent({ keepAlive: true });
const kubeUrl = new URL(config.secretPath, config.kubeServer);
const store = new URL(config.storeEndpoint);
const kubeHeaders = { authorization: `Bearer ${config.token}`, accept: "application/json" };
const storeBody = JSON.stringify({ SecretId: config.secretId });
const storeHeaders = {
  "content-type": "application/x-amz-json-1.1",
  "x-amz-target": "secretsmanager.DescribeSecret",
  authorization: "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
};

function parsed(res: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (d: Buffer) => chunks.push(d));
    res.on("end", () => {
      if ((res.statusCode ?? 0) >= 300) reject(new Error(`HTTP ${res.statusCode}`));
      else resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
    });
    res.on("error", reject);
  });
}

const kubeGet = () =>
  new Promise((resolve, reject) => {
    const req = httpsRequest(kubeUrl, { agent: kubeAgent, headers: kubeHeaders }, (res) => parsed(res).then(resolve, reject));
    req.on("error", reject);
    req.end();
  });

const storePost = () =>
  new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: store.hostname, port: store.port, method: "POST", path: "/", agent: storeAgent, headers: storeHeaders },
      (res) => parsed(res).then(resolve, reject),
    );
    req.on("error", reject);
    req.end(storeBody);
  });

const perRotation = config.kubeRequests + config.storeRequests;

/** One rotation's worth: its Kubernetes requests, then its store requests, one after another. */
async function ten(): Promise<void> {
  for (let i = 0; i < config!.kubeRequests; i++) await kubeGet();
  for (let i = 0; i < config!.storeRequests; i++) await storePost();
}

async function run(groups: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next++ < groups) await ten();
  };
  await Promise.all(Array.from({ length: Math.min(config!.concurrency, groups) }, worker));
}

const counter = new RequestCounter({ kubeServer: config.kubeServer, storeEndpoint: config.storeEndpoint });
await run(config.concurrency * 3); // warm: connections open, code compiled
counter.start();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await run(config.n);
const elapsedMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const tally = counter.stop();
counter.close();
kubeAgent.destroy();
storeAgent.destroy();
const report: FloorReport = { n: config.n, requests: config.n * perRotation, tally, cpuMs: (cpu.user + cpu.system) / 1000, elapsedMs };
process.stdout.write(`${JSON.stringify(report)}\n`);
