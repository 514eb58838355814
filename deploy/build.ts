// The one builder of the GCP and Azure artifacts (deploy/gcp/build.ts and
// deploy/azure/build.ts say what differs): an ESM bundle of the cloud's entry point, the
// manifests beside it, and a package.json whose `main` is the bundle and whose
// dependencies are what stays out of it (installed by the cloud's build, or by npm
// before `func` publishes). The bundle options are serverless.yml's custom.esbuild, the
// ones the AWS artifact is built with, so every cloud's bundle is made the same way.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { type BuildOptions, build, type Plugin } from "esbuild";
import { parse as parseYaml } from "yaml";

export const ROOT = join(import.meta.dirname, "..");

export type Cloud = "aws" | "gcp" | "azure";

/** serverless-esbuild's own keys in custom.esbuild, not esbuild's. */
const PLUGIN_ONLY = new Set([
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
  "plugins",
]);

/**
 * The esbuild options of `cloud`'s bundle: serverless.yml's custom.esbuild of the service
 * at `root` (its plugins file loaded), with CNPG_ROTATOR_BUNDLE_CLOUD defined as `cloud`, so
 * that lib/stores/index.ts and lib/kubernetes/auth/ keep only that cloud's stores and SDKs.
 */
export function bundleOptions(cloud: Cloud, root = ROOT): BuildOptions {
  const config = parseYaml(readFileSync(join(root, "serverless.yml"), "utf8")) as {
    custom?: { esbuild?: Record<string, unknown> };
  };
  const custom = config.custom?.esbuild ?? {};
  const options = Object.fromEntries(Object.entries(custom).filter(([k]) => !PLUGIN_ONLY.has(k))) as BuildOptions;
  const plugins =
    typeof custom.plugins === "string" ? (createRequire(join(root, "package.json"))(join(root, custom.plugins)) as Plugin[]) : [];
  return {
    ...options,
    plugins,
    define: { ...options.define, "process.env.CNPG_ROTATOR_BUNDLE_CLOUD": JSON.stringify(cloud) },
  };
}

export interface FunctionApp {
  readonly cloud: Exclude<Cloud, "aws">;
  /** The entry point, relative to the repository: functions/<cloud>/index.ts. */
  readonly entry: string;
  /** The folder made, relative to the repository (emptied first). */
  readonly out: string;
  /** The bundle's file name in it; its extension says ESM to the runtime. */
  readonly bundle: "index.mjs" | "index.js";
  /** esbuild's target: the Node version the function runs. */
  readonly target: string;
  /** Packages left out of the bundle and listed as the package's dependencies, at the versions package.json pins. */
  readonly external: readonly string[];
  readonly packageName: string;
  readonly engines: string;
  /** More files to write into the folder, by name. */
  readonly files?: Readonly<Record<string, string>>;
}

/** Builds `app` with the manifests of `manifestsDir` (relative to the repository); returns the folder. */
export async function buildFunctionApp(app: FunctionApp, manifestsDir: string): Promise<string> {
  const out = join(ROOT, app.out);
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    version: string;
    dependencies: Record<string, string>;
  };
  const missing = app.external.filter((name) => !pkg.dependencies[name]);
  if (missing.length > 0) throw new Error(`package.json pins no version of ${missing.join(", ")}`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await build({
    ...bundleOptions(app.cloud),
    entryPoints: [join(ROOT, app.entry)],
    absWorkingDir: ROOT,
    outfile: join(out, app.bundle),
    target: app.target,
    external: [...app.external],
    logLevel: "warning",
  });
  cpSync(join(ROOT, manifestsDir), join(out, "manifests"), { recursive: true });
  for (const [name, text] of Object.entries(app.files ?? {})) writeFileSync(join(out, name), text);
  const manifest = {
    name: app.packageName,
    version: pkg.version,
    private: true,
    type: "module",
    main: app.bundle,
    engines: { node: app.engines },
    dependencies: Object.fromEntries(app.external.map((name) => [name, pkg.dependencies[name]])),
  };
  writeFileSync(join(out, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  const extra = Object.keys(app.files ?? {});
  console.log(`${app.out}: ${[app.bundle, ...extra, `manifests/ (from ${manifestsDir})`, "package.json"].join(", ")}`);
  return out;
}
