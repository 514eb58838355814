// Cold start of the AWS artifact: build it the way a deploy does (`serverless
// package`), unzip it, and in fresh `node` processes import the bundled handler and
// run two rotations through it (bench/cold-start-child.ts). What the bundle holds
// comes from an esbuild metafile of the same build options.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { executedPackages, type FunctionCoverage, packageOf, type SourceMap } from "./coverage.ts";
import { exec } from "./exec.ts";
import { type Bench, createTargets, manifestFiles } from "./fixtures.ts";
import { median, round } from "./stats.ts";

export const ROOT = join(import.meta.dirname, "..");
const NODE = process.execPath;

// ---------------------------------------------------------------------------------------
// The artifact

export interface Artifact {
  /** .serverless/rotate.zip as `serverless package` wrote it. */
  zip: string;
  bytes: number;
  /** The source tree it was built from. */
  serviceDir: string;
  /** The unzipped bundle. */
  bundle: string;
  bundleBytes: number;
  /** Everything temporary (removed by cleanup()). */
  cleanup(): void;
}

// Never copied into the build's service directory: not part of the service, or built output.
const NOT_SOURCE = new Set(["node_modules", ".git", ".serverless", ".esbuild", "dist", "coverage", "bench", ".state"]);

/**
 * Builds the artifact with `serverless package` in a copy of the working tree (with
 * node_modules linked), so that builds other processes run in the repo at the same
 * time neither see nor clobber this one. `prebuilt` skips the build.
 */
export async function buildArtifact(options: { prebuilt?: string; log?: (line: string) => void }): Promise<Artifact> {
  const tmp = mkdtempSync(join(tmpdir(), "cnpg-rotator-bench-artifact-"));
  const cleanup = () => rmSync(tmp, { recursive: true, force: true });
  try {
    let zip = options.prebuilt;
    let serviceDir = ROOT;
    if (!zip) {
      serviceDir = join(tmp, "service");
      mkdirSync(serviceDir);
      for (const entry of readdirSync(ROOT)) {
        if (!NOT_SOURCE.has(entry)) cpSync(join(ROOT, entry), join(serviceDir, entry), { recursive: true });
      }
      symlinkSync(join(ROOT, "node_modules"), join(serviceDir, "node_modules"), "dir");
      options.log?.("cold start: npx serverless package (in a copy of the tree)...");
      const out = join(tmp, "package");
      const env = { ...process.env, PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH ?? ""}` };
      const r = await exec(NODE, [join(ROOT, "node_modules/osls/bin/serverless.js"), "package", "--package", out], {
        cwd: serviceDir,
        env,
        timeoutMs: 300_000,
      });
      if (r.code !== 0) throw new Error(`serverless package failed (exit ${r.code}):\n${(r.stdout + r.stderr).slice(-4000)}`);
      zip = join(out, "rotate.zip");
    }
    if (!existsSync(zip)) throw new Error(`no artifact at ${zip}`);
    const unzipped = join(tmp, "unzipped");
    const r = await exec("unzip", ["-q", "-o", zip, "-d", unzipped], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`unzip ${zip} failed: ${r.stderr}`);
    const bundle = findBundle(unzipped, serviceDir);
    return { zip, bytes: statSync(zip).size, serviceDir, bundle, bundleBytes: statSync(bundle).size, cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** functions/aws/rotate.mjs (serverless-esbuild keeps the handler's path, with .mjs). */
function findBundle(dir: string, serviceDir: string): string {
  const handler = rotateHandler(serviceDir);
  const candidate = join(dir, `${handler.file}.mjs`);
  if (existsSync(candidate)) return candidate;
  throw new Error(`the artifact has no ${handler.file}.mjs`);
}

function serverlessConfig(root: string): Record<string, unknown> {
  return parseYaml(readFileSync(join(root, "serverless.yml"), "utf8")) as Record<string, unknown>;
}

/** The rotate function's handler: `functions/aws/rotate.handler` → file `functions/aws/rotate`. */
function rotateHandler(root: string): { file: string; name: string } {
  const fns = serverlessConfig(root).functions as Record<string, { handler: string }>;
  const handler = fns.rotate?.handler;
  if (!handler) throw new Error("serverless.yml has no functions.rotate.handler");
  const dot = handler.lastIndexOf(".");
  return { file: handler.slice(0, dot), name: handler.slice(dot + 1) };
}

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

/** The esbuild options serverless-esbuild takes from serverless.yml's custom.esbuild. */
function esbuildOptions(root: string): Record<string, unknown> {
  const custom = (serverlessConfig(root).custom as { esbuild?: Record<string, unknown> } | undefined)?.esbuild ?? {};
  const pluginOnly = new Set([
    "outputFileExtension",
    "skipRebuild",
    "exclude",
    "packager",
    "packagerOptions",
    "watch",
    "installExtraArgs",
    "nativeZip",
    "zipConcurrency",
    "keepOutputDirectory",
    "disableIncremental",
    "concurrency",
  ]);
  return Object.fromEntries(Object.entries(custom).filter(([k]) => !pluginOnly.has(k)));
}

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
    ...esbuildOptions(serviceDir),
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

export interface ColdStartResult {
  /** importMs + (firstInvocationMs − warmInvocationMs), median over the fresh processes. */
  initMs: number;
  /** The same in CPU time (less sensitive to a busy machine). */
  initCpuMs: number;
  importMs: number;
  lazyMs: number;
  firstInvocationMs: number;
  warmInvocationMs: number;
  bootMs: number;
  rssMb: number;
  runs: number;
  artifactBytes: number;
  bundleBytes: number;
  bundle: BundleAnalysis;
  /** Single dependencies bundled alone with the same options: median import time in fresh processes, and size. */
  importBreakdown?: Record<string, { ms: number; kb: number }>;
  samples: ColdRun[];
}

export async function benchColdStart(
  bench: Bench,
  artifact: Artifact,
  options: { runs: number; breakdown: boolean; log?: (line: string) => void },
): Promise<ColdStartResult> {
  const say = options.log ?? (() => {});
  const { analysis: bundle, map } = await analyseBundle(artifact.serviceDir, artifact.bundle);

  // Two targets per process: one warm-up process first (numbers dropped), the timed ones, one coverage run.
  const processes = options.runs + 2;
  say(`cold start: creating ${2 * processes} targets...`);
  const set = await createTargets(bench, 2 * processes, "bench-cold");
  const work = mkdtempSync(join(tmpdir(), "cnpg-rotator-bench-cold-"));
  const samples: ColdRun[] = [];
  try {
    for (let i = 0; i < processes; i++) {
      const pair = set.targets.slice(2 * i, 2 * i + 2);
      const dir = join(work, `manifests-${i}`);
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
      };
      const coverageRun = i === processes - 1;
      if (coverageRun) {
        if (!map) break; // cannot map coverage to files without a build identical to the artifact
        env.BENCH_COVERAGE_FILE = join(work, "coverage.json");
      }
      const r = await exec(
        NODE,
        [join(import.meta.dirname, "cold-start-child.ts"), artifact.bundle, ...pair.map((t) => `${set.namespace}/${t.secretName}`)],
        { env, cwd: work, timeoutMs: 120_000 },
      );
      const line = r.stdout.trim().split("\n").at(-1) ?? "";
      if (r.code !== 0 || !line.startsWith("{")) {
        throw new Error(`cold-start process ${i} failed (exit ${r.code}):\n${(r.stdout + r.stderr).slice(-3000)}`);
      }
      const run = JSON.parse(line) as ColdRun;
      if (run.first !== "rotated" || run.second !== "rotated") {
        throw new Error(`cold-start process ${i}: expected two rotations, got "${run.first}" and "${run.second}"`);
      }
      if (coverageRun && map && env.BENCH_COVERAGE_FILE) {
        const functions = JSON.parse(readFileSync(env.BENCH_COVERAGE_FILE, "utf8")) as FunctionCoverage[];
        bundle.executedPackages = executedPackages(readFileSync(artifact.bundle, "utf8"), map, functions);
        bundle.foreignSdksExecuted = bundle.executedPackages.filter((p) => FOREIGN_SDK.test(p));
        say(`cold start: code that ran comes from ${bundle.executedPackages.length} packages; other clouds' SDKs among them: ${bundle.foreignSdksExecuted.join(", ") || "none"}`);
        break;
      }
      if (i > 0) samples.push(run);
      say(`cold start: run ${i}${i === 0 ? " (warm-up)" : ""}: import ${run.importMs.toFixed(0)} ms, first ${run.firstInvocationMs.toFixed(0)} ms, warm ${run.warmInvocationMs.toFixed(0)} ms`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  const pick = (f: (r: ColdRun) => number) => round(median(samples.map(f)), 1);
  const lazy = (r: ColdRun) => Math.max(0, r.firstInvocationMs - r.warmInvocationMs);
  const result: ColdStartResult = {
    initMs: pick((r) => r.importMs + lazy(r)),
    initCpuMs: pick((r) => r.importCpuMs + Math.max(0, r.firstInvocationCpuMs - r.warmInvocationCpuMs)),
    importMs: pick((r) => r.importMs),
    lazyMs: pick(lazy),
    firstInvocationMs: pick((r) => r.firstInvocationMs),
    warmInvocationMs: pick((r) => r.warmInvocationMs),
    bootMs: pick((r) => r.bootMs),
    rssMb: pick((r) => r.rssMb),
    runs: samples.length,
    artifactBytes: artifact.bytes,
    bundleBytes: artifact.bundleBytes,
    bundle,
    samples: samples.map((s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, typeof v === "number" ? round(v, 1) : v])) as unknown as ColdRun),
  };
  if (options.breakdown) result.importBreakdown = await importBreakdown(artifact.serviceDir, say);
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
    "@kubernetes/client-node": `import { AuthorizationV1Api, CoordinationV1Api, CoreV1Api, KubeConfig, createConfiguration, IsomorphicFetchHttpLibrary, ServerConfiguration, wrapHttpLibrary, setHeaderMiddleware, setHeaderOptions, PatchStrategy, ApiException, V1MicroTime } from "@kubernetes/client-node";
globalThis.__x = [AuthorizationV1Api, CoordinationV1Api, CoreV1Api, KubeConfig, createConfiguration, IsomorphicFetchHttpLibrary, ServerConfiguration, wrapHttpLibrary, setHeaderMiddleware, setHeaderOptions, PatchStrategy, ApiException, V1MicroTime];`,
    "@aws-sdk/client-secrets-manager": `import { SecretsManagerClient, CreateSecretCommand, DeleteSecretCommand, DescribeSecretCommand, GetSecretValueCommand, PutSecretValueCommand, RestoreSecretCommand, UpdateSecretVersionStageCommand } from "@aws-sdk/client-secrets-manager";
globalThis.__x = [new SecretsManagerClient({ region: "us-east-1" }), CreateSecretCommand, DeleteSecretCommand, DescribeSecretCommand, GetSecretValueCommand, PutSecretValueCommand, RestoreSecretCommand, UpdateSecretVersionStageCommand];`,
    zod: `import { z } from "zod"; globalThis.__x = z.object({ a: z.string() });`,
    yaml: `import { parseAllDocuments } from "yaml"; globalThis.__x = parseAllDocuments;`,
    pino: `import { pino } from "pino"; globalThis.__x = pino({ level: "info" });`,
  };
  const work = mkdtempSync(join(tmpdir(), "cnpg-rotator-bench-breakdown-"));
  const out: Record<string, { ms: number; kb: number }> = {};
  try {
    for (const [name, contents] of Object.entries(entries)) {
      const file = join(work, `${name.replace(/[^a-z0-9]+/gi, "_")}.mjs`);
      await esbuild.build({
        ...esbuildOptions(serviceDir),
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
