// N targets rotated in one invocation (one rotate() call, as one Lambda invocation
// makes it) against the local kube-apiserver and moto, with the engine's bounded
// concurrency. The invocation runs in a fresh process (bench/rotation-child.ts) so
// that its CPU and peak RSS are its own; this side creates the targets, reads the
// servers' CPU around the call and checks the end state.
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os, { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";
import { loadManifests } from "../lib/manifests/index.ts";
import { planRotations } from "../lib/rotation/plan.ts";
import { ANNOTATIONS } from "../lib/rotation/names.ts";
import { type Bench, createTargets, manifestFiles } from "./fixtures.ts";
import { minimumRequests } from "./minimum.ts";
import { childCpuMs, cpuDelta } from "./procs.ts";
import type { ChildConfig, ChildReport } from "./rotation-child.ts";
import { mapLimit, mb, round } from "./stats.ts";

export interface RotationResultRow {
  n: number;
  concurrency: number;
  seconds: number;
  rotationsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPerRotation: number;
  peakRssMb: number;
  requestsPerRotation: number;
  minRequestsPerRotation: number;
  kubeRequestsPerRotation: number;
  storeRequestsPerRotation: number;
  /** Requests per rotation by operation (`kube: GET secrets`, `store: DescribeSecret`). */
  requestBreakdown: Record<string, number>;
  /** TCP connections opened during the run, by system. */
  connections: Record<string, number>;
  /** The Kubernetes client's own request log, as a cross-check of the counted kube requests. */
  kubeClientRequestCount: number;
  outcomes: Record<string, number>;
  firstError?: string;
  /** CPU ms per rotation of each server process (kube-apiserver, etcd, moto_server). */
  serverCpuMsPerRotation: Record<string, number>;
  /** Ours plus the servers'. */
  allProcessesCpuMsPerRotation: number;
  /** What all cores could sustain at that CPU cost, were nothing else running. */
  cpuBoundRotationsPerSecond: number;
  rssBeforeMb: number;
  cpuUserMsPerRotation: number;
  cpuSystemMsPerRotation: number;
  setupSeconds: number;
  /** Of up to 10 rotated targets checked afterwards: Secret and AWSCURRENT agree on the new password and rotation id. */
  verified: number;
}

interface ChildRun {
  report: ChildReport;
  servers: Record<string, number>;
}

/** Runs the child, reading the servers' CPU when it says the measured call starts and ends. */
function runChild(config: ChildConfig, timeoutMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(import.meta.dirname, "rotation-child.ts")], {
      env: { ...process.env, BENCH_ROTATION: JSON.stringify(config) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let before: Record<string, number> | undefined;
    let servers: Record<string, number> = {};
    let report: ChildReport | undefined;
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d).slice(-8000);
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
      const self = child.pid === undefined ? [] : [child.pid];
      if (line === "BENCH:start") before = childCpuMs(self);
      else if (line === "BENCH:end" && before) servers = cpuDelta(before, childCpuMs(self));
      else if (line.startsWith("{")) report = JSON.parse(line) as ChildReport;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0 && report) resolve({ report, servers });
      else reject(new Error(`rotation child failed (exit ${code}): ${stderr}`));
    });
  });
}

export async function benchRotation(
  bench: Bench,
  options: { n: number; concurrency: number; log?: (line: string) => void; cpuProfile?: string; timeoutMs?: number },
): Promise<RotationResultRow> {
  const { n, concurrency } = options;
  const say = options.log ?? (() => {});
  const setupStart = performance.now();
  say(`rotation n=${n}: creating ${n} Secrets and remote secrets...`);
  const set = await createTargets(bench, n, `bench-n${n}`);
  const files = manifestFiles(set.targets);
  const min = minimumRequests(planRotations(loadManifests(files, { namespace: set.namespace })));
  const work = mkdtempSync(join(tmpdir(), "cnpg-rotator-bench-rotation-"));
  const manifestsDir = join(work, "manifests");
  mkdirSync(manifestsDir);
  for (const f of files) writeFileSync(join(manifestsDir, f.file), f.text);
  const setupSeconds = (performance.now() - setupStart) / 1000;

  say(`rotation n=${n}: rotating at concurrency ${concurrency} (fresh process)...`);
  let run: ChildRun;
  try {
    run = await runChild(
      {
        manifestsDir,
        namespace: set.namespace,
        kubeconfigYaml: bench.kubeconfigYaml,
        kubeServer: bench.infra.server,
        storeEndpoint: bench.infra.awsEndpoint,
        concurrency,
        ...(options.cpuProfile ? { cpuProfile: options.cpuProfile } : {}),
      },
      options.timeoutMs ?? 15 * 60_000,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const { report, servers } = run;

  // The end state, outside the measurement: the Secret carries the rotation id, and
  // AWSCURRENT is that version and holds the Secret's new password.
  const verified = await mapLimit(report.sample, 5, async (r) => {
    const name = r.target.split("/")[1]!;
    const secret = await bench.kube.readSecret(set.namespace, name);
    const remoteKey = set.targets.find((t) => t.secretName === name)!.remoteKey;
    const current = await bench.sm.send(new GetSecretValueCommand({ SecretId: remoteKey, VersionStage: "AWSCURRENT" }));
    const remote = JSON.parse(current.SecretString ?? "{}") as { password?: string };
    return (
      secret?.annotations[ANNOTATIONS.rotationId] === r.rotationId &&
      current.VersionId === r.rotationId &&
      remote.password === secret?.data.password
    );
  });

  const perRotation = (x: number) => round(x / n, 2);
  const oursMs = report.cpuUserMs + report.cpuSystemMs;
  const allMs = oursMs + Object.values(servers).reduce((a, b) => a + b, 0);
  const breakdown: Record<string, number> = {};
  for (const [op, count] of Object.entries(report.tally.byOperation).sort()) breakdown[op] = perRotation(count);
  return {
    n,
    concurrency,
    seconds: round(report.elapsedMs / 1000, 2),
    rotationsPerSecond: round(n / (report.elapsedMs / 1000), 1),
    p50Ms: round(report.p50Ms, 1),
    p99Ms: round(report.p99Ms, 1),
    cpuMsPerRotation: perRotation(oursMs),
    peakRssMb: mb(report.peakRssBytes),
    requestsPerRotation: perRotation(report.tally.total),
    minRequestsPerRotation: perRotation(min.total),
    kubeRequestsPerRotation: perRotation(report.tally.bySystem.kube ?? 0),
    storeRequestsPerRotation: perRotation(report.tally.bySystem.store ?? 0),
    requestBreakdown: breakdown,
    connections: report.tally.connections,
    kubeClientRequestCount: report.kubeClientRequestCount,
    outcomes: report.outcomes,
    ...(report.firstError ? { firstError: report.firstError } : {}),
    serverCpuMsPerRotation: Object.fromEntries(Object.entries(servers).map(([k, v]) => [k, perRotation(v)])),
    allProcessesCpuMsPerRotation: perRotation(allMs),
    cpuBoundRotationsPerSecond: round((os.cpus().length * 1000 * n) / allMs, 1),
    rssBeforeMb: mb(report.rssBeforeBytes),
    cpuUserMsPerRotation: perRotation(report.cpuUserMs),
    cpuSystemMsPerRotation: perRotation(report.cpuSystemMs),
    setupSeconds: round(setupSeconds, 1),
    verified: verified.filter(Boolean).length,
  };
}
