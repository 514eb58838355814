// One measured invocation, in a fresh process of its own (spawned by bench/rotation.ts),
// so its CPU and peak RSS are the invocation's alone, not the setup's: reads the manifests
// from files as the deployed function does, builds the engine, then rotates every target
// in one rotate() call. Prints "BENCH:start" / "BENCH:end" around the call (the parent
// reads the servers' CPU at those moments) and then one JSON line.
//
// Config (JSON in env BENCH_ROTATION): see ChildConfig.
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { pino } from "pino";
import { connectCluster, type KubernetesClient, type LeaseHandle } from "../lib/kubernetes/index.ts";
import { createLogger } from "../lib/log.ts";
import { type Engine, rotate } from "../lib/rotation/engine.ts";
import { readManifests } from "../lib/rotation/files.ts";
import { storeFactory } from "../lib/rotation/stores.ts";
import { RequestCounter, type RequestTally } from "./requests.ts";
import { quantile, sampleRss } from "./stats.ts";

export interface ChildConfig {
  manifestsDir: string;
  namespace: string;
  kubeconfigYaml: string;
  kubeServer: string;
  storeEndpoint: string;
  concurrency: number;
  /** Write a CPU profile of the rotate() call here. */
  cpuProfile?: string;
}

export interface ChildReport {
  n: number;
  elapsedMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  rssBeforeBytes: number;
  peakRssBytes: number;
  p50Ms: number;
  p99Ms: number;
  latencies: number;
  tally: RequestTally;
  kubeClientRequestCount: number;
  outcomes: Record<string, number>;
  firstError?: string;
  /** A few rotated targets, for the parent to check the end state. */
  sample: { target: string; rotationId: string }[];
}

/** A view of `kube` that times each target from its first call to its Lease release. */
function timed(kube: KubernetesClient): { kube: KubernetesClient; latencies: number[] } {
  const started = new Map<string, number>();
  const latencies: number[] = [];
  const begin = (key: string) => {
    if (!started.has(key)) started.set(key, performance.now());
  };
  const end = (key: string) => {
    const t = started.get(key);
    if (t !== undefined) latencies.push(performance.now() - t);
    started.delete(key);
  };
  const readSecret: KubernetesClient["readSecret"] = (namespace, name) => {
    begin(`${namespace}/${name}`);
    return kube.readSecret(namespace, name);
  };
  const acquireLease: KubernetesClient["acquireLease"] = async (namespace, secretName, holder, ttl, beforeTake) => {
    const key = `${namespace}/${secretName}`;
    begin(key);
    const lease = await kube.acquireLease(namespace, secretName, holder, ttl, beforeTake);
    if (!lease) {
      end(key);
      return lease;
    }
    return new Proxy(lease, {
      get(target, prop) {
        if (prop === "release") {
          return async () => {
            try {
              await target.release();
            } finally {
              end(key);
            }
          };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    }) as LeaseHandle;
  };
  const view = new Proxy(kube, {
    get(target, prop) {
      if (prop === "readSecret") return readSecret;
      if (prop === "acquireLease") return acquireLease;
      // Methods and getters of the client use private fields: run them on the client itself.
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { kube: view, latencies };
}

const config = JSON.parse(process.env.BENCH_ROTATION ?? "null") as ChildConfig | null;
if (!config) {
  console.error("bench/rotation-child.ts: env BENCH_ROTATION must hold the run's config (JSON)");
  process.exit(2);
}

const manifests = readManifests([config.manifestsDir], { namespace: config.namespace });
// A fresh client, as a cold invocation has: its first requests pay for the TLS connection.
const client = connectCluster({ kubeconfigYaml: config.kubeconfigYaml });
const { kube, latencies } = timed(client);
const engine: Engine = {
  manifests,
  kube,
  // As deployed (info level, JSON lines, synchronous writes), into /dev/null instead of stderr.
  log: createLogger({ level: "info", destination: pino.destination({ dest: "/dev/null", sync: true }) }),
  createStore: storeFactory(),
  concurrency: config.concurrency,
};
const counter = new RequestCounter({ kubeServer: config.kubeServer, storeEndpoint: config.storeEndpoint });
const session = config.cpuProfile ? new Session() : undefined;
if (session) {
  session.connect();
  await session.post("Profiler.enable");
}

const rssBefore = process.memoryUsage.rss();
const rss = sampleRss();
await session?.post("Profiler.start");
process.stdout.write("BENCH:start\n");
counter.start();
const cpu0 = process.cpuUsage();
const t0 = performance.now();
const results = await rotate(engine, {});
const elapsedMs = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const tally = counter.stop();
process.stdout.write("BENCH:end\n");
if (session && config.cpuProfile) {
  const { profile } = await session.post("Profiler.stop");
  writeFileSync(config.cpuProfile, JSON.stringify(profile));
  session.disconnect();
}
const peakRss = rss.stop();
const kubeClientRequestCount = client.requestCount;
await client.close();
counter.close();

const outcomes: Record<string, number> = {};
for (const r of results) outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
const failed = results.find((r) => r.outcome === "failed");
const report: ChildReport = {
  n: results.length,
  elapsedMs,
  cpuUserMs: cpu.user / 1000,
  cpuSystemMs: cpu.system / 1000,
  rssBeforeBytes: rssBefore,
  peakRssBytes: peakRss,
  p50Ms: quantile(latencies, 0.5),
  p99Ms: quantile(latencies, 0.99),
  latencies: latencies.length,
  tally,
  kubeClientRequestCount,
  outcomes,
  ...(failed?.error ? { firstError: `${failed.error.type}: ${failed.error.message}` } : {}),
  sample: results
    .filter((r) => r.outcome === "rotated" && r.rotationId)
    .slice(0, 10)
    .map((r) => ({ target: r.target, rotationId: r.rotationId! })),
};
process.stdout.write(`${JSON.stringify(report)}\n`);
