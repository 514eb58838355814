// One fresh process of the cold-start benchmark (spawned by bench/cold-start.ts):
// imports the bundled handler from the unzipped artifact, then invokes it twice,
// each time rotating one target against kube-apiserver and moto. The first call
// pays for everything lazy (the store module and the AWS SDK initialised on first
// use, the credential chain, first-use JIT, the first TLS connection); the second,
// identical in work, does not. Prints one JSON line.
//
// argv: <bundle.mjs> <namespace/first-target> <namespace/second-target>
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { pathToFileURL } from "node:url";

interface RotateResponse {
  ok: boolean;
  results: { outcome: string; error?: { type: string; message: string } }[];
  error?: { type: string; message: string };
}

const [bundle, first, second] = process.argv.slice(2);
if (!bundle || !first || !second) {
  console.error("usage: cold-start-child.ts <bundle.mjs> <namespace/target> <namespace/target>");
  process.exit(2);
}

const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;

const outcome = (r: RotateResponse) =>
  r.error ? `${r.error.type}: ${r.error.message}` : r.results.map((x) => (x.error ? `${x.outcome} (${x.error.type}: ${x.error.message})` : x.outcome)).join(",");

// Coverage mode (a separate, untimed run): record which functions of the bundle ran.
const coverageFile = process.env.BENCH_COVERAGE_FILE;
const session = coverageFile ? new Session() : undefined;
if (session) {
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.startPreciseCoverage", { callCount: true, detailed: false });
}

const cpu0 = process.cpuUsage();
const t0 = performance.now();
const mod = (await import(pathToFileURL(bundle).href)) as { handler: (event: unknown) => Promise<RotateResponse> };
const t1 = performance.now();
const cpu1 = process.cpuUsage();
const r1 = await mod.handler({ target: first });
const t2 = performance.now();
const cpu2 = process.cpuUsage();
const r2 = await mod.handler({ target: second });
const t3 = performance.now();
const cpu3 = process.cpuUsage();

if (session && coverageFile) {
  const { result } = await session.post("Profiler.takePreciseCoverage");
  const url = pathToFileURL(bundle).href;
  writeFileSync(coverageFile, JSON.stringify(result.find((s) => s.url === url)?.functions ?? []));
  session.disconnect();
}

process.stdout.write(
  `${JSON.stringify({
    // performance.now() counts from process start: what Node's own bootstrap took before the import.
    bootMs: t0,
    importMs: t1 - t0,
    firstInvocationMs: t2 - t1,
    warmInvocationMs: t3 - t2,
    importCpuMs: cpuMs(cpu1) - cpuMs(cpu0),
    firstInvocationCpuMs: cpuMs(cpu2) - cpuMs(cpu1),
    warmInvocationCpuMs: cpuMs(cpu3) - cpuMs(cpu2),
    rssMb: process.memoryUsage.rss() / (1024 * 1024),
    first: outcome(r1),
    second: outcome(r2),
  })}\n`,
);
// The handler keeps its warm engine (and its connection pool) for the next event, as on Lambda: do not wait for it.
process.exit(0);
