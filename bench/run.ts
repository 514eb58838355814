// npm run bench [-- options]: the generator, the AWS artifact's size and cold start next
// to a baseline commit's, the floor (ten bare requests), and N rotations in one invocation
// against a local kube-apiserver and moto. Starts and stops its own servers, prints a
// table, writes bench/results/latest.json.
// Options: see usage below or bench/README.md.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { packageArtifact } from "../test/infra/artifact.ts";
import { type ClientCosts, benchClientCosts } from "./clients.ts";
import { type ColdStartResult, type LabelledArtifact, ROOT, benchColdStart } from "./cold-start.ts";
import { type Bench, startBench } from "./fixtures.ts";
import { type DowntimeRow, benchDowntime } from "./downtime.ts";
import { benchFleet, type FleetRow } from "./fleet.ts";
import { type FloorResult, benchFloor } from "./floor.ts";
import { type GeneratorResult, benchGenerator } from "./generator.ts";
import { type RotationResultRow, benchRotation } from "./rotation.ts";
import { round } from "./stats.ts";

/**
 * The configuration the slim bundle is measured against: the last commit before it
 * (client-node's index and its undici, keepNames, the ESM import of node:http(s), archiver's zip).
 */
const BASELINE_REV = "fa0a120";

const usage = `npm run bench -- [options]
  --sizes=100,1000          targets per invocation (env BENCH_SIZES)
  --concurrency=16          targets rotated at once (Engine.concurrency; env BENCH_CONCURRENCY)
  --cold-runs=15            fresh processes for the cold start (median)
  --generator-seconds=2     per measured round, each side
  --generator-rounds=3      alternating rounds (median)
  --artifact=PATH           use this rotate.zip instead of running serverless package
  --baseline=REV            also build this commit's artifact and compare (default ${BASELINE_REV})
  --no-baseline             measure the working tree's artifact alone
  --only=LIST               some of: generator,coldStart,clients,rotation,downtime,fleet
  --fleet-sizes=500,2000    fleet section: targets across 2 clusters, end to end (planner → SQS → consumer processes)
  --fleet-consumers=4       fleet section: consumer processes at once (0: the planner alone)
  --fleet-heap-mb=N         fleet section: --max-old-space-size of each consumer (default: Node's own)
                            (downtime: simulated applications against the real CNPG while it
                            rotates, single-user and alternating side by side; not in the default)
  --no-breakdown            skip the per-dependency import times
  --cpu-prof                write bench/results/rotation-<n>.cpuprofile of each measured rotate(), and
                            cold-<label>-<round>.cpuprofile of each cold-start process (profiling slows them)
  --timeout-minutes=40      give up (and clean up) after this long
  --out=PATH                default bench/results/latest.json`;

const { values: args } = parseArgs({
  options: {
    sizes: { type: "string", default: process.env.BENCH_SIZES ?? "100,1000" },
    concurrency: { type: "string", default: process.env.BENCH_CONCURRENCY ?? "16" },
    "cold-runs": { type: "string", default: "15" },
    "generator-seconds": { type: "string", default: "2" },
    "generator-rounds": { type: "string", default: "3" },
    artifact: { type: "string" },
    baseline: { type: "string", default: BASELINE_REV },
    "no-baseline": { type: "boolean", default: false },
    only: { type: "string", default: "generator,coldStart,clients,rotation" },
    "no-breakdown": { type: "boolean", default: false },
    "cpu-prof": { type: "boolean", default: false },
    "timeout-minutes": { type: "string", default: "40" },
    "fleet-sizes": { type: "string", default: "500,2000" },
    "fleet-consumers": { type: "string", default: "4" },
    "fleet-heap-mb": { type: "string" },
    out: { type: "string", default: join(ROOT, "bench/results/latest.json") },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log(usage);
  process.exit(0);
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name}: expected a positive integer, found "${text}"\n\n${usage}`);
    process.exit(2);
  }
  return n;
}

const sizes = args.sizes.split(",").filter(Boolean).map((s) => positiveInt("sizes", s));
const concurrency = positiveInt("concurrency", args.concurrency);
const coldRuns = positiveInt("cold-runs", args["cold-runs"]);
const generatorSeconds = Number(args["generator-seconds"]);
const generatorRounds = positiveInt("generator-rounds", args["generator-rounds"]);
const timeoutMinutes = Number(args["timeout-minutes"]);
const sections = new Set(args.only.split(",").filter(Boolean));
for (const s of sections) {
  if (!["generator", "coldStart", "clients", "rotation", "downtime", "fleet"].includes(s)) {
    console.error(`--only: unknown section "${s}"\n\n${usage}`);
    process.exit(2);
  }
}
const outFile = resolve(args.out);

const log = (line: string) => console.error(`[bench] ${line}`);

interface Target {
  name: string;
  goal: string;
  actual: string;
  met: boolean | null;
}

/** A rotation row with the floor measured around it. */
interface RotationRow extends RotationResultRow {
  floor: { before: FloorResult; after: FloorResult; cpuMsPerTen: number };
  /** cpuMsPerRotation ÷ floor.cpuMsPerTen. */
  cpuToFloor: number;
}

interface Results {
  meta: Record<string, unknown>;
  generator?: GeneratorResult;
  coldStart?: ColdStartResult;
  clientCosts?: ClientCosts;
  downtime?: DowntimeRow[];
  fleet?: FleetRow[];
  rotation: RotationRow[];
  targets: Target[];
  errors: Record<string, string>;
}

const results: Results = { meta: meta(), rotation: [], targets: [], errors: {} };
let bench: Bench | undefined;
const artifacts: LabelledArtifact[] = [];

function git(...a: string[]): string | undefined {
  try {
    return execFileSync("git", a, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return undefined;
  }
}

function meta(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    loadAverageAtStart: os.loadavg().map((l) => round(l, 2)),
    commit: git("rev-parse", "HEAD"),
    dirtyTree: (git("status", "--porcelain") ?? "") !== "",
    options: {
      sizes,
      concurrency,
      coldRuns,
      generatorSeconds,
      generatorRounds,
      artifact: args.artifact ?? null,
      baseline: args["no-baseline"] ? null : args.baseline,
      only: [...sections],
    },
  };
}

async function section(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    const message = e instanceof Error ? (e.stack ?? e.message) : String(e);
    results.errors[name] = message;
    log(`${name} failed: ${message}`);
  }
}

async function cleanup(): Promise<void> {
  for (const a of artifacts.splice(0)) a.artifact.cleanup();
  const b = bench;
  bench = undefined;
  await b?.stop().catch((e: unknown) => log(`stopping the servers failed: ${String(e)}`));
}

function writeResults(): void {
  results.meta.loadAverageAtEnd = os.loadavg().map((l) => round(l, 2));
  results.targets = evaluateTargets();
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);
}

const deadline = setTimeout(
  () => {
    results.errors.timeout = `gave up after ${timeoutMinutes} minutes`;
    log(results.errors.timeout);
    writeResults();
    void cleanup().finally(() => process.exit(1));
  },
  timeoutMinutes * 60_000,
);
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping the servers`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------

if (sections.has("generator")) {
  await section("generator", async () => {
    results.generator = await benchGenerator({ seconds: generatorSeconds, rounds: generatorRounds, log });
  });
}

if (sections.has("coldStart")) {
  await section("artifact", async () => {
    const slim = await packageArtifact({ ...(args.artifact ? { prebuilt: resolve(args.artifact) } : {}), log });
    artifacts.push({ label: "slim", rev: null, artifact: slim });
    if (!args["no-baseline"]) {
      const base = await packageArtifact({ rev: args.baseline, log });
      artifacts.push({ label: "baseline", rev: args.baseline, artifact: base });
    }
    for (const { label, artifact: a } of artifacts) {
      log(`artifact ${label}: ${a.bytes} bytes zipped, bundle ${round(a.bundleBytes / 1024, 0)} KB`);
    }
  });
}

if (sections.has("coldStart") || sections.has("rotation") || sections.has("clients")) {
  await section("servers", async () => {
    bench = await startBench();
  });
}

if (bench && artifacts.length > 0 && sections.has("coldStart")) {
  const b = bench;
  await section("coldStart", async () => {
    results.coldStart = await benchColdStart(b, artifacts, {
      runs: coldRuns,
      breakdown: !args["no-breakdown"],
      log,
      ...(args["cpu-prof"] ? { cpuProfileDir: dirname(outFile) } : {}),
    });
  });
}

if (bench && sections.has("clients")) {
  const b = bench;
  await section("clients", async () => {
    log("clients: CPU per request of each client...");
    results.clientCosts = await benchClientCosts(b);
  });
}

if (bench && sections.has("rotation")) {
  const b = bench;
  for (const n of sizes) {
    await section(`rotation n=${n}`, async () => {
      const cpuProfile = args["cpu-prof"] ? join(dirname(outFile), `rotation-${n}.cpuprofile`) : undefined;
      // The floor just before and just after the rotation, in the same conditions; their mean is the yardstick.
      log(`floor n=${n}: ten bare requests per rotation, concurrency ${concurrency}...`);
      const before = await benchFloor(b, { n, concurrency });
      const row = await benchRotation(b, { n, concurrency, log, ...(cpuProfile ? { cpuProfile } : {}) });
      const after = await benchFloor(b, { n, concurrency });
      const floorCpuMsPerTen = round((before.cpuMsPerTen + after.cpuMsPerTen) / 2, 3);
      results.rotation.push({
        ...row,
        floor: { before, after, cpuMsPerTen: floorCpuMsPerTen },
        cpuToFloor: round(row.cpuMsPerRotation / floorCpuMsPerTen, 2),
      });
      log(
        `rotation n=${n}: ${row.seconds} s, ${row.rotationsPerSecond}/s, ${row.cpuMsPerRotation} ms CPU (floor ${floorCpuMsPerTen} ms: ` +
          `${round(row.cpuMsPerRotation / floorCpuMsPerTen, 2)}x) and ${row.requestsPerRotation} requests per rotation`,
      );
    });
  }
}

if (sections.has("downtime")) {
  await section("downtime", async () => {
    results.downtime = await benchDowntime({ log });
  });
}

if (sections.has("fleet")) {
  await section("fleet", async () => {
    results.fleet = await benchFleet({
      sizes: args["fleet-sizes"].split(",").map((x) => positiveInt("fleet-sizes", x)),
      consumers: args["fleet-consumers"] === "0" ? 0 : positiveInt("fleet-consumers", args["fleet-consumers"]),
      ...(args["fleet-heap-mb"] ? { heapMb: positiveInt("fleet-heap-mb", args["fleet-heap-mb"]) } : {}),
      log,
    });
  });
}

await cleanup();
clearTimeout(deadline);
writeResults();
printTable();
log(`wrote ${outFile}`);
process.exit(Object.keys(results.errors).length > 0 ? 1 : 0);

// ---------------------------------------------------------------------------------------

function evaluateTargets(): Target[] {
  const t: Target[] = [];
  const row1000 = results.rotation.find((r) => r.n === 1000 && r.concurrency === 16);
  // A run in which not every target rotated measured something else (failures are cheap): no target met.
  const notRotated = (r: RotationRow) => r.n - (r.outcomes.rotated ?? 0);
  const failedNote = (r: RotationRow) => (notRotated(r) > 0 ? ` (but ${notRotated(r)} of ${r.n} not rotated: ${JSON.stringify(r.outcomes)})` : "");
  t.push({
    name: "rotation time",
    goal: "1,000 rotations <= 30 s at concurrency 16",
    actual: row1000 ? `${row1000.seconds} s${failedNote(row1000)}` : "not measured (needs --sizes with 1000 and --concurrency=16)",
    met: row1000 ? row1000.seconds <= 30 && notRotated(row1000) === 0 : null,
  });
  t.push({
    name: "CPU per rotation",
    goal: "<= 2x the floor (ten bare requests, same run) at n=1000",
    actual: row1000
      ? `${row1000.cpuMsPerRotation} ms vs floor ${row1000.floor.cpuMsPerTen} ms: ${row1000.cpuToFloor}x${failedNote(row1000)}`
      : "not measured (needs --sizes with 1000 and --concurrency=16)",
    met: row1000 ? row1000.cpuToFloor <= 2 && notRotated(row1000) === 0 : null,
  });
  const rows = results.rotation;
  const worstExtra = rows.length ? Math.max(...rows.map((r) => r.requestsPerRotation - r.minRequestsPerRotation)) : undefined;
  t.push({
    name: "requests per rotation",
    goal: "within 1 of the minimum",
    actual:
      worstExtra === undefined
        ? "not measured"
        : `${rows.map((r) => `${r.requestsPerRotation} vs ${r.minRequestsPerRotation}${failedNote(r)}`).join("; ")} (${worstExtra >= 0 ? "+" : ""}${round(worstExtra, 2)})`,
    met: worstExtra === undefined ? null : worstExtra <= 1 && rows.every((r) => notRotated(r) === 0),
  });
  const cold = results.coldStart;
  const slim = cold?.rows.find((r) => r.label === "slim");
  const base = cold?.rows.find((r) => r.label === "baseline");
  t.push({
    name: "cold start",
    goal: "import + first rotation <= 0.7x the baseline's, same run",
    actual:
      slim && base && cold?.ratios
        ? `${slim.coldMs} ms vs ${base.coldMs} ms: ${cold.ratios.coldMs}x (CPU ${cold.ratios.coldCpuMs}x)`
        : "not measured (needs the coldStart section with a baseline)",
    met: cold?.ratios ? cold.ratios.coldMs <= 0.7 : null,
  });
  t.push({
    name: "artifact size",
    goal: "<= 450 KB zipped (460,800 bytes)",
    actual: slim ? `${slim.artifactBytes} bytes${base ? ` (baseline ${base.artifactBytes})` : ""}` : "not measured",
    met: slim ? slim.artifactBytes <= 450 * 1024 : null,
  });
  const gen = results.generator;
  t.push({
    name: "generator",
    goal: "at least as fast as go-password",
    actual: gen?.ratio != null ? `${gen.ratio}x go-password` : "not measured",
    met: gen?.ratio != null ? gen.ratio >= 1 : null,
  });
  return t;
}

function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  // Numbers right-aligned, text left-aligned.
  const numeric = header.map((_, i) => rows.every((r) => typeof r[i] === "number" || /^[\d.]+$/.test(String(r[i]))));
  const line = (r: string[]) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...cells.slice(1).map(line)].join("\n");
}

function printTable(): void {
  const out: string[] = [];
  if (results.fleet?.length) {
    out.push(
      "Fleet (2 clusters; planner → moto SQS → consumer processes)",
      table(
        ["n", "ns/cluster", "consumers", "seconds", "planner s", "planner req east/west", "planner RSS MB", "p50 ms", "p99 ms", "peak RSS MB", "once", "load avg"],
        results.fleet.map((r) => [
          r.n,
          r.namespacesPerCluster,
          r.consumers,
          r.seconds,
          r.plannerSeconds,
          `${r.plannerRequests.east}/${r.plannerRequests.west}`,
          r.plannerPeakRssMb,
          r.p50Ms,
          r.p99Ms,
          r.peakRssMb,
          `${r.rotatedOnce}/${r.n}`,
          r.loadAverage.after[0]!,
        ]),
      ),
      "",
    );
  }
  if (results.rotation.length) {
    out.push(
      "Rotation (one invocation; local kube-apiserver + moto)",
      table(
        ["n", "conc", "seconds", "rot/s", "p50 ms", "p99 ms", "CPU ms/rot", "floor ms", "x floor", "peak RSS MB", "req/rot", "min req/rot"],
        results.rotation.map((r) => [
          r.n,
          r.concurrency,
          r.seconds,
          r.rotationsPerSecond,
          r.p50Ms,
          r.p99Ms,
          r.cpuMsPerRotation,
          r.floor.cpuMsPerTen,
          r.cpuToFloor,
          r.peakRssMb,
          r.requestsPerRotation,
          r.minRequestsPerRotation,
        ]),
      ),
      "",
    );
    const ops = [...new Set(results.rotation.flatMap((r) => Object.keys(r.requestBreakdown)))];
    out.push(
      "Requests per rotation by operation",
      table(
        ["operation", ...results.rotation.map((r) => `n=${r.n}`)],
        ops.map((op) => [op, ...results.rotation.map((r) => r.requestBreakdown[op] ?? 0)]),
      ),
      "",
    );
  }
  const c = results.coldStart;
  if (c) {
    out.push(
      `Cold start (medians of ${c.rows[0]?.runs ?? 0} fresh processes each, alternating; cold = import + first whole rotation)`,
      table(
        ["artifact", "cold ms", "cold CPU ms", "import ms", "first rot ms", "warm rot ms", "init ms", "zip bytes", "bundle bytes"],
        c.rows.map((r) => [
          r.rev ? `${r.label} (${r.rev})` : r.label,
          r.coldMs,
          r.coldCpuMs,
          r.importMs,
          r.firstInvocationMs,
          r.warmInvocationMs,
          r.initMs,
          r.artifactBytes,
          r.bundleBytes,
        ]),
      ),
      ...(c.ratios
        ? [
            `slim / baseline (paired medians): cold ${c.ratios.coldMs}x, cold CPU ${c.ratios.coldCpuMs}x, init ${c.ratios.initMs}x, zip ${c.ratios.artifactBytes}x`,
          ]
        : []),
      ...c.rows.map(
        (r) =>
          `${r.label} bundle: ${r.bundle.packages
            .slice(0, 6)
            .map((p) => `${p.name} ${p.kb} KB`)
            .join(", ")}; other clouds' SDKs: ${r.bundle.foreignSdks.length ? r.bundle.foreignSdks.join(", ") : "none"}`,
      ),
      ...(c.importBreakdown
        ? [
            `imported alone: ${Object.entries(c.importBreakdown)
              .map(([k, v]) => `${k} ${v.ms} ms`)
              .join(", ")}`,
          ]
        : []),
      "",
    );
  }
  const g = results.generator;
  if (g) {
    out.push(
      "Generator (seed spec: length 42, digits 5, symbols 5, \"-_$@\", allowRepeat)",
      table(["ours /s", "go-password /s", "ratio"], [[g.oursPerSecond, g.goPasswordPerSecond ?? "n/a", g.ratio ?? "n/a"]]),
      "",
    );
  }
  if (results.downtime) {
    out.push(
      "Downtime: applications re-reading their Secret once per interval, a new connection every 50 ms (real CNPG, PostgreSQL 15)",
      table(
        ["strategy", "apps", "rotations", "interval ms", "logins", "failed logins", "longest window ms", "failed rotations"],
        results.downtime.map((r) => [r.strategy, r.apps, r.rotations, r.intervalMs, r.logins, r.failedLogins, r.longestWindowMs, r.failedRotations]),
      ),
      "",
    );
  }
  if (results.clientCosts) {
    out.push(
      "CPU per operation (ms)",
      table(["operation", "CPU ms"], Object.entries(results.clientCosts.cpuMsPerOp).map(([k, v]) => [k, v])),
      "",
    );
  }
  out.push(
    "Targets",
    table(
      ["target", "goal", "actual", "met"],
      results.targets.map((t) => [t.name, t.goal, t.actual, t.met === null ? "n/a" : t.met ? "yes" : "NO"]),
    ),
  );
  if (Object.keys(results.errors).length) out.push("", `Errors: ${Object.keys(results.errors).join(", ")} (details in the JSON)`);
  console.log(out.join("\n"));
}
