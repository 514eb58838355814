// Builds the Cloud Functions source folder, dist/gcp/: one ESM bundle of
// functions/gcp/index.ts (the three entry points), the manifests beside it, and a
// package.json whose `main` is the bundle. Cloud Build runs `npm install` there.
//
//   npx node deploy/gcp/build.ts [manifests-dir]      (default: manifests)
//
// Left out of the bundle and installed by Cloud Build instead: the Functions
// Framework (the runtime starts it and it must be the very module the code
// registers with) and Google's client libraries (they read their protos at run time).
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const root = join(import.meta.dirname, "../..");
const out = join(root, "dist/gcp");
const manifests = process.argv[2] ?? "manifests";
const external = ["@google-cloud/functions-framework", "@google-cloud/secret-manager", "google-gax"];

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string; dependencies: Record<string, string> };
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, "functions/gcp/index.ts")],
  outfile: join(out, "index.mjs"),
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node24",
  external,
  minify: true,
  keepNames: true, // error types are reported by class name
  // Keeps only this cloud's stores and cluster credentials (lib/stores/index.ts, lib/kubernetes/auth/):
  // the other clouds' SDKs stay out of the bundle.
  define: { "process.env.CNPG_ROTATOR_BUNDLE_CLOUD": '"gcp"' },
  // CommonJS dependencies inside an ESM bundle still call require(): give them one.
  banner: { js: "import{createRequire as __cnpgCreateRequire}from'node:module';const require=__cnpgCreateRequire(import.meta.url);" },
  logLevel: "warning",
});
cpSync(join(root, manifests), join(out, "manifests"), { recursive: true });
writeFileSync(
  join(out, "package.json"),
  `${JSON.stringify(
    {
      name: "cnpg-rotator-gcp",
      version: pkg.version,
      private: true,
      type: "module",
      main: "index.mjs",
      engines: { node: ">=24" },
      dependencies: Object.fromEntries(external.map((name) => [name, pkg.dependencies[name]])),
    },
    null,
    2,
  )}\n`,
);
console.log(`dist/gcp: index.mjs, manifests/ (from ${manifests}), package.json`);
