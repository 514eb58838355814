// Cold start of the AWS artifact: the artifact as a deploy builds it (`serverless
// package`, test/infra/artifact.ts) for the working tree and for a baseline commit,
// unzipped, and in fresh `node` processes, alternating between the two, the bundled
// handler imported and invoked twice, each time rotating one target against
// kube-apiserver and moto (bench/cold-start-child.ts). What the bundle holds comes from an
// esbuild metafile of the same build options.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleOptions } from "../deploy/build.ts";
import { type Artifact, ROOT, rotateHandler } from "../test/infra/artifact.ts";
import { executedPackages, type FunctionCoverage, packageOf, type SourceMap } from "./coverage.ts";
import { exec } from "./exec.ts";
import { type Bench, createTargets, manifestFiles } from "./fixtures.ts";
import { median, round } from "./stats.ts";

export { ROOT };
const NODE = process.execPath;

// ---------------------------------------------------------------------------------------
// What is in the bundle

export interface BundleAnalysis {
  /** Bytes of the same build made here with a metafile; equal to the artifact's when the options match. */
  bytes: number;
  /** The build made here is the artifact's bundle byte for byte (so its metafile and source map describe it). */
  matchesArtifact: boolean;
  /** Bytes in the bundle per npm package (or lib/ folder), largest first. */
  packages: { name: string; kb: number }[];
  /** Packages of other clouds' SDKs in the bundle (parsed on every cold start even if never run). */
  foreignSdks: string[];
  /** For each foreign SDK, our files whose imports pull it in. */
  foreignSdkImporters: Record<string, string[]>;
  /** Packages with code that ran during a cold start's two rotations (coverage run); null when not measured. */
  executedPackages: string[] | null;
  /** Foreign SDK packages among those (must be none). */
  foreignSdksExecuted: string[] | null;
}

const FOREIGN_SDK = /^(@google-cloud\/|@azure\/|google-gax|@grpc\/|googleapis|google-auth-library|gcp-metadata|gtoken|node-vault|@hashicorp\/|@azure-rest\/)/;

interface Analysed {
  analysis: BundleAnalysis;
  /** The source map of the bundle, when the build matches the artifact. */
  map?: SourceMap;
}

export async function analyseBundle(serviceDir: string, bundlePath: string): Promise<Analysed> {
  const esbuild = await import("esbuild");
  const handler = rotateHandler(serviceDir);
  const entry = [".ts", ".js", ".mts", ".mjs"].map((ext) => join(serviceDir, handler.file + ext)).find(existsSync);
  if (!entry) throw new Error(`no source for handler ${handler.file}`);
  // Inside the service directory (nothing is written), so source map paths read "../lib/…", "../node_modules/…".
  const outfile = join(serviceDir, ".bench-analysis", "rotate.mjs");
  const result = await esbuild.build({
    ...bundleOptions("aws", serviceDir),
    entryPoints: [entry],
    absWorkingDir: serviceDir,
    outfile,
    write: false,
    metafile: true,
    // Only to map coverage back to files; the code itself is the same as without it.
    sourcemap: "external",
    sourcesContent: false,
    logLevel: "silent",
  });
  const output = result.metafile.outputs[Object.keys(result.metafile.outputs).find((k) => k.endsWith(".mjs"))!]!;
  const code = result.outputFiles.find((f) => f.path.endsWith(".mjs"))!.text.replace(/\n\/\/# sourceMappingURL=\S+\n?$/, "\n");
  const mapFile = result.outputFiles.find((f) => f.path.endsWith(".map"));
  const matchesArtifact = code === readFileSync(bundlePath, "utf8");

  const byPackage = new Map<string, number>();
  for (const [file, info] of Object.entries(output.inputs)) {
    byPackage.set(packageOf(file), (byPackage.get(packageOf(file)) ?? 0) + info.bytesInOutput);
  }
  const packages = [...byPackage].sort((a, b) => b[1] - a[1]).map(([name, bytes]) => ({ name, kb: round(bytes / 1024, 1) }));
  const foreignSdks = packages.map((p) => p.name).filter((n) => FOREIGN_SDK.test(n));
  const foreignSdkImporters: Record<string, string[]> = {};
  for (const [file, input] of Object.entries(result.metafile.inputs)) {
    if (file.includes("node_modules/")) continue;
    for (const imp of input.imports) {
      const pkg = imp.path.includes("node_modules/") ? packageOf(imp.path) : undefined;
      if (pkg && FOREIGN_SDK.test(pkg)) foreignSdkImporters[pkg] = [...(foreignSdkImporters[pkg] ?? []), file];
    }
  }
  return {
    analysis: {
      bytes: Buffer.byteLength(code),
      matchesArtifact,
      packages,
      foreignSdks,
      foreignSdkImporters,
      executedPackages: null,
      foreignSdksExecuted: null,
    },
    ...(matchesArtifact && mapFile ? { map: JSON.parse(mapFile.text) as SourceMap } : {}),
  };
}

// ---------------------------------------------------------------------------------------
// Fresh processes

export interface ColdRun {
  bootMs: number;
  importMs: number;
  firstInvocationMs: number;
  warmInvocationMs: number;
  importCpuMs: number;
  firstInvocationCpuMs: number;
  warmInvocationCpuMs: number;
  rssMb: number;
  first: string;
  second: string;
}

/** One artifact's cold start: medians over its fresh processes. */
export interface ColdStartRow {
  /** "slim" (the working tree) or "baseline" (the commit it is compared with). */
  label: string;
  /** The commit built, or null for the working tree. */
  rev: string | null;
  /** importMs + firstInvocationMs: a fresh process loading the bundle and making one whole rotation. */
  coldMs: number;
  /** The same in CPU time (less sensitive to a busy machine). */
  coldCpuMs: number;
  importMs: number;
  firstInvocationMs: number;
  warmInvocationMs: number;
  /** importMs + (firstInvocationMs − warmInvocationMs): what loading and first use add to a rotation. */
  initMs: number;
  lazyMs: number;
  bootMs: number;
  rssMb: number;
  runs: number;
  artifactBytes: number;
  bundleBytes: number;
  bundle: BundleAnalysis;
  samples: ColdRun[];
}

export interface ColdStartResult {
  rows: ColdStartRow[];
  /**
   * slim ÷ baseline, the median of the ratios of processes run one after the other (a
   * pair per round): pairing keeps the ratio meaningful while the machine's load drifts.
   */
  ratios?: { coldMs: number; coldCpuMs: number; initMs: number; artifactBytes: number };
  /** Single dependencies bundled alone with the slim options: median import time in fresh processes, and size. */
  importBreakdown?: Record<string, { ms: number; kb: number }>;
}

export interface LabelledArtifact {
  readonly label: string;
  readonly rev: string | null;
  readonly artifact: Artifact;
}

export async function benchColdStart(
  bench: Bench,
  artifacts: readonly LabelledArtifact[],
  options: {
    runs: number;
    breakdown: boolean;
    log?: (line: string) => void;
    /** Also write a CPU profile of each counted process here (cold-<label>-<round>.cpuprofile); it slows them. */
    cpuProfileDir?: string;
  },
): Promise<ColdStartResult> {
  const say = options.log ?? (() => {});
  const analysed = await Promise.all(artifacts.map((a) => analyseBundle(a.artifact.serviceDir, a.artifact.bundle)));

  // Per artifact and round one process of two targets; round 0 warms up (numbers dropped); then one coverage run of the first.
  const rounds = options.runs + 1;
  const perArtifact = 2 * rounds;
  say(`cold start: creating ${artifacts.length * perArtifact + 2} targets...`);
  const set = await createTargets(bench, artifacts.length * perArtifact + 2, "bench-cold");
  const work = mkdtempSync(join(tmpdir(), "cnpg-rotator-bench-cold-"));
  const samples: ColdRun[][] = artifacts.map(() => []);
  let used = 0;
  const runProcess = async (bundlePath: string, coverageFile?: string, profileName?: string): Promise<ColdRun> => {
    const pair = set.targets.slice(used, used + 2);
    used += 2;
    const dir = join(work, `manifests-${used}`);
    mkdirSync(dir);
    for (const f of manifestFiles(pair)) writeFileSync(join(dir, f.file), f.text);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ...bench.awsEnv,
      CNPG_ROTATOR_MANIFESTS: dir,
      CNPG_ROTATOR_NAMESPACE: set.namespace,
      CNPG_ROTATOR_KUBECONFIG: bench.kubeconfigYaml,
      CNPG_ROTATOR_LOG_LEVEL: "info",
      ...(coverageFile ? { BENCH_COVERAGE_FILE: coverageFile } : {}),
    };
    const profile =
      profileName && options.cpuProfileDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`, `--cpu-prof-name=${profileName}`] : [];
    const r = await exec(
      NODE,
      [...profile, join(import.meta.dirname, "cold-start-child.ts"), bundlePath, ...pair.map((t) => `${set.namespace}/${t.secretName}`)],
      { env, cwd: work, timeoutMs: 120_000 },
    );
    const line = r.stdout.trim().split("\n").at(-1) ?? "";
    if (r.code !== 0 || !line.startsWith("{")) {
      throw new Error(`cold-start process for ${bundlePath} failed (exit ${r.code}):\n${(r.stdout + r.stderr).slice(-3000)}`);
    }
    const run = JSON.parse(line) as ColdRun;
    if (run.first !== "rotated" || run.second !== "rotated") {
      throw new Error(`cold-start process for ${bundlePath}: expected two rotations, got "${run.first}" and "${run.second}"`);
    }
    return run;
  };
  try {
    for (let round = 0; round < rounds; round++) {
      // Alternate which goes first, so neither always runs right after the other's process.
      const order = artifacts.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        const run = await runProcess(artifacts[i]!.artifact.bundle, undefined, round > 0 ? `cold-${artifacts[i]!.label}-${round}.cpuprofile` : undefined);
        if (round > 0) samples[i]!.push(run);
        say(
          `cold start: ${artifacts[i]!.label} round ${round}${round === 0 ? " (warm-up)" : ""}: import ${run.importMs.toFixed(0)} ms + first rotation ${run.firstInvocationMs.toFixed(0)} ms (warm ${run.warmInvocationMs.toFixed(0)} ms)`,
        );
      }
    }
    // Coverage of the first artifact (the slim one): which packages' code ran.
    const { map } = analysed[0]!;
    if (map) {
      const file = join(work, "coverage.json");
      await runProcess(artifacts[0]!.artifact.bundle, file);
      const functions = JSON.parse(readFileSync(file, "utf8")) as FunctionCoverage[];
      const bundle = analysed[0]!.analysis;
      bundle.executedPackages = executedPackages(readFileSync(artifacts[0]!.artifact.bundle, "utf8"), map, functions);
      bundle.foreignSdksExecuted = bundle.executedPackages.filter((p) => FOREIGN_SDK.test(p));
      say(
        `cold start: code that ran comes from ${bundle.executedPackages.length} packages; other clouds' SDKs among them: ${bundle.foreignSdksExecuted.join(", ") || "none"}`,
      );
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const cold = (r: ColdRun) => r.importMs + r.firstInvocationMs;
  const coldCpu = (r: ColdRun) => r.importCpuMs + r.firstInvocationCpuMs;
  const lazy = (r: ColdRun) => Math.max(0, r.firstInvocationMs - r.warmInvocationMs);
  const init = (r: ColdRun) => r.importMs + lazy(r);
  const rows: ColdStartRow[] = artifacts.map((a, i) => {
    const runs = samples[i]!;
    const pick = (f: (r: ColdRun) => number) => round(median(runs.map(f)), 1);
    return {
      label: a.label,
      rev: a.rev,
      coldMs: pick(cold),
      coldCpuMs: pick(coldCpu),
      importMs: pick((r) => r.importMs),
      firstInvocationMs: pick((r) => r.firstInvocationMs),
      warmInvocationMs: pick((r) => r.warmInvocationMs),
      initMs: pick(init),
      lazyMs: pick(lazy),
      bootMs: pick((r) => r.bootMs),
      rssMb: pick((r) => r.rssMb),
      runs: runs.length,
      artifactBytes: a.artifact.bytes,
      bundleBytes: a.artifact.bundleBytes,
      bundle: analysed[i]!.analysis,
      samples: runs.map((s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === "number" ? round(v, 1) : v])) as unknown as ColdRun),
    };
  });
  const result: ColdStartResult = { rows };
  if (artifacts.length === 2) {
    const [slim, base] = samples as [ColdRun[], ColdRun[]];
    const paired = (f: (r: ColdRun) => number) => round(median(slim.map((r, k) => f(r) / f(base[k]!))), 3);
    result.ratios = {
      coldMs: paired(cold),
      coldCpuMs: paired(coldCpu),
      initMs: paired(init),
      artifactBytes: round(artifacts[0]!.artifact.bytes / artifacts[1]!.artifact.bytes, 3),
    };
  }
  if (options.breakdown) result.importBreakdown = await importBreakdown(artifacts[0]!.artifact.serviceDir, say);
  // esbuild's service process would otherwise live on as one of our children (and be counted as a server).
  await (await import("esbuild")).stop();
  return result;
}

/**
 * What single dependencies cost to import, each bundled alone with the artifact's
 * esbuild options and imported in fresh processes: where the import time goes.
 */
async function importBreakdown(
  serviceDir: string,
  say: (line: string) => void,
): Promise<Record<string, { ms: number; kb: number }>> {
  const esbuild = await import("esbuild");
  const entries: Record<string, string> = {
    // What lib/kubernetes imports (deep imports: client-node's index would add watch, exec, cp, ws, tar...;
    // its generated API classes and ObjectSerializer are not used, see lib/kubernetes/calls.ts).
    "@kubernetes/client-node": `import { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import { createConfiguration } from "@kubernetes/client-node/dist/gen/configuration.js";
import { ServerConfiguration } from "@kubernetes/client-node/dist/gen/servers.js";
import { wrapHttpLibrary, ResponseContext } from "@kubernetes/client-node/dist/gen/http/http.js";
import { ApiException } from "@kubernetes/client-node/dist/gen/apis/exception.js";
import { setHeaderMiddleware } from "@kubernetes/client-node/dist/middleware.js";
globalThis.__x = [KubeConfig, createConfiguration, ServerConfiguration, wrapHttpLibrary, ResponseContext, ApiException, setHeaderMiddleware];`,
    "@aws-sdk/client-secrets-manager": `import { SecretsManagerClient, CreateSecretCommand, DeleteSecretCommand, DescribeSecretCommand, GetSecretValueCommand, PutSecretValueCommand, RestoreSecretCommand, UpdateSecretVersionStageCommand } from "@aws-sdk/client-secrets-manager";
globalThis.__x = [new SecretsManagerClient({ region: "us-east-1" }), CreateSecretCommand, DeleteSecretCommand, DescribeSecretCommand, GetSecretValueCommand, PutSecretValueCommand, RestoreSecretCommand, UpdateSecretVersionStageCommand];`,
    zod: `import * as z from "zod"; globalThis.__x = z.object({ a: z.string() });`,
    yaml: `import { parseAllDocuments } from "yaml"; globalThis.__x = parseAllDocuments;`,
    pino: `import { pino } from "pino"; globalThis.__x = pino({ level: "info" });`,
  };
  const work = mkdtempSync(join(tmpdir(), "cnpg-rotator-bench-breakdown-"));
  const out: Record<string, { ms: number; kb: number }> = {};
  try {
    for (const [name, contents] of Object.entries(entries)) {
      const file = join(work, `${name.replace(/[^a-z0-9]+/gi, "_")}.mjs`);
      await esbuild.build({
        ...bundleOptions("aws", serviceDir),
        stdin: { contents, resolveDir: serviceDir, loader: "js" },
        absWorkingDir: serviceDir,
        outfile: file,
        logLevel: "silent",
      });
      const script = `const t0 = performance.now(); await import(${JSON.stringify(`file://${file}`)}); process.stdout.write(String(performance.now() - t0));`;
      const times: number[] = [];
      for (let i = 0; i < 8; i++) {
        const r = await exec(NODE, ["--input-type=module", "-e", script], { timeoutMs: 60_000 });
        if (r.code !== 0) throw new Error(`importing the ${name} bundle failed: ${r.stderr.slice(-2000)}`);
        if (i > 0) times.push(Number(r.stdout));
      }
      out[name] = { ms: round(median(times), 1), kb: round(statSync(file).size / 1024, 0) };
      say(`cold start: ${name} alone imports in ${out[name].ms} ms (${out[name].kb} KB)`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}
