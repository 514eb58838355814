// The floor of CPU per rotation: the protocol minimum's ten requests (bench/minimum.ts), made
// bare with node:http(s) to the same servers on warm keep-alive connections
// (bench/floor-child.ts), measured in a fresh process with the rotation's n and concurrency,
// so the rotation's CPU can be stated as a ratio to it.
import { join } from "node:path";
import { exec } from "./exec.ts";
import { type Bench, createTargets } from "./fixtures.ts";
import type { FloorConfig, FloorReport } from "./floor-child.ts";
import { minimumKubeRequests, minimumStoreRequests } from "./minimum.ts";
import { round } from "./stats.ts";

export interface FloorResult {
  n: number;
  concurrency: number;
  /** CPU of this process per group of ten requests (kubeRequests GETs, storeRequests POSTs). */
  cpuMsPerTen: number;
  kubeRequests: number;
  storeRequests: number;
  elapsedMs: number;
}

export async function benchFloor(bench: Bench, options: { n: number; concurrency: number }): Promise<FloorResult> {
  const set = await createTargets(bench, 1, "bench-floor");
  const target = set.targets[0]!;
  // Every bench target has one PushSecret to the aws store (bench/fixtures.ts).
  const kubeRequests = minimumKubeRequests();
  const storeRequests = minimumStoreRequests("aws");
  const config: FloorConfig = {
    kubeServer: bench.infra.server,
    caPem: bench.infra.caPem,
    token: bench.infra.adminToken,
    secretPath: `/api/v1/namespaces/${set.namespace}/secrets/${target.secretName}`,
    storeEndpoint: bench.infra.awsEndpoint,
    secretId: target.remoteKey,
    kubeRequests,
    storeRequests,
    n: options.n,
    concurrency: options.concurrency,
  };
  const r = await exec(process.execPath, [join(import.meta.dirname, "floor-child.ts")], {
    env: { ...process.env, BENCH_FLOOR: JSON.stringify(config) },
    timeoutMs: 10 * 60_000,
  });
  const line = r.stdout.trim().split("\n").at(-1) ?? "";
  if (r.code !== 0 || !line.startsWith("{")) throw new Error(`floor process failed (exit ${r.code}):\n${r.stderr.slice(-3000)}`);
  const report = JSON.parse(line) as FloorReport;
  if (report.tally.total !== report.requests) {
    throw new Error(`floor: expected ${report.requests} requests counted, found ${report.tally.total}`);
  }
  return {
    n: report.n,
    concurrency: options.concurrency,
    cpuMsPerTen: round(report.cpuMs / report.n, 3),
    kubeRequests,
    storeRequests,
    elapsedMs: round(report.elapsedMs, 0),
  };
}
