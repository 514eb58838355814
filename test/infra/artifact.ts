// The AWS artifact as a deploy makes it: `serverless package` (osls + serverless-esbuild,
// options from serverless.yml) in a copy of a source tree with node_modules linked, so that
// builds others run in the repository at the same time neither see nor clobber this one.
// The copy is of the working tree, or of a commit (`git archive`), to build an older
// configuration beside the current one. Used by the bundle tests and the bench.
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";

export const ROOT = join(import.meta.dirname, "../..");

export interface Artifact {
  /** rotate.zip as `serverless package` wrote it. */
  readonly zip: string;
  readonly bytes: number;
  /** The source tree it was built from. */
  readonly serviceDir: string;
  /** The rotate function's bundle, unzipped (functions/aws/rotate.mjs). */
  readonly bundle: string;
  readonly bundleBytes: number;
  /** Where `serverless package` wrote the zips and templates (absent for a prebuilt zip). */
  readonly packageDir?: string;
  /** Removes everything temporary. */
  cleanup(): void;
}

// Never copied into the build's service directory: not part of the service, or built output.
const NOT_SOURCE = new Set(["node_modules", ".git", ".serverless", ".esbuild", "dist", "coverage", "bench", ".state"]);

export interface PackageOptions {
  /** A commit to build instead of the working tree. */
  readonly rev?: string;
  /** Use this rotate.zip instead of building one. */
  readonly prebuilt?: string;
  readonly log?: (line: string) => void;
  /** More environment for `serverless package` (e.g. CNPG_ROTATOR_MANIFESTS_DIR). */
  readonly env?: Readonly<Record<string, string>>;
  /** How long `serverless package` may take before it is killed (a hang's bound, not a speed check); 5 min unless told. */
  readonly packageTimeoutMs?: number;
}

export async function packageArtifact(options: PackageOptions = {}): Promise<Artifact> {
  const tmp = mkdtempSync(join(tmpdir(), "cnpg-rotator-artifact-"));
  const cleanup = () => rmSync(tmp, { recursive: true, force: true });
  try {
    let zip = options.prebuilt;
    let serviceDir = ROOT;
    let packageDir: string | undefined;
    if (!zip) {
      serviceDir = join(tmp, "service");
      mkdirSync(serviceDir);
      if (options.rev) {
        await run("sh", ["-c", `git -C "$0" archive "$1" | tar -x -C "$2"`, ROOT, options.rev, serviceDir], ROOT, 120_000);
      } else {
        for (const entry of readdirSync(ROOT)) {
          if (!NOT_SOURCE.has(entry)) cpSync(join(ROOT, entry), join(serviceDir, entry), { recursive: true });
        }
      }
      rmSync(join(serviceDir, "node_modules"), { recursive: true, force: true });
      symlinkSync(join(ROOT, "node_modules"), join(serviceDir, "node_modules"), "dir");
      options.log?.(`npx serverless package (${options.rev ? `commit ${options.rev}` : "working tree"}, in a copy)...`);
      const out = join(tmp, "package");
      await run(process.execPath, [join(ROOT, "node_modules/osls/bin/serverless.js"), "package", "--package", out], serviceDir, options.packageTimeoutMs ?? 300_000, options.env);
      zip = join(out, "rotate.zip");
      packageDir = out;
    }
    if (!existsSync(zip)) throw new Error(`no artifact at ${zip}`);
    const unzipped = join(tmp, "unzipped");
    await run("unzip", ["-q", "-o", zip, "-d", unzipped], tmp, 60_000);
    const bundle = join(unzipped, `${rotateHandler(serviceDir).file}.mjs`);
    if (!existsSync(bundle)) throw new Error(`the artifact ${zip} has no ${rotateHandler(serviceDir).file}.mjs`);
    return { zip, bytes: statSync(zip).size, serviceDir, bundle, bundleBytes: statSync(bundle).size, ...(packageDir ? { packageDir } : {}), cleanup };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** The rotate function's handler in serverless.yml: `functions/aws/rotate.handler` → file `functions/aws/rotate`. */
export function rotateHandler(root: string): { file: string; name: string } {
  const config = parseYaml(readFileSync(join(root, "serverless.yml"), "utf8")) as { functions?: Record<string, { handler: string }> };
  const handler = config.functions?.rotate?.handler;
  if (!handler) throw new Error("serverless.yml has no functions.rotate.handler");
  const dot = handler.lastIndexOf(".");
  return { file: handler.slice(0, dot), name: handler.slice(dot + 1) };
}

function run(command: string, args: readonly string[], cwd: string, timeoutMs: number, extra: Readonly<Record<string, string>> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...extra, PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH ?? ""}` };
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (d: Buffer) => {
      output = (output + d).slice(-4000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${command} ${args.slice(0, 2).join(" ")} failed (exit ${code}):\n${output}`));
    });
  });
}
