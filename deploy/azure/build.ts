// Builds the Azure Functions app folder, dist/azure/: one ESM bundle of
// functions/azure/index.ts (the four functions), host.json, the manifests, and a
// package.json whose `main` is the bundle — the folder `func` publishes.
//
//   npx node deploy/azure/build.ts [manifests-dir]      (default: manifests)
//   cd dist/azure && npm install --omit=dev && func azure functionapp publish <app>
//
// Left out of the bundle and installed beside it: @azure/functions (the Node
// worker hands it the host's core API when it is required) and Azure's SDKs.
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const root = join(import.meta.dirname, "../..");
const out = join(root, "dist/azure");
const manifests = process.argv[2] ?? "manifests";
const external = ["@azure/functions", "@azure/identity", "@azure/keyvault-secrets"];

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string; dependencies: Record<string, string> };
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, "functions/azure/index.ts")],
  outfile: join(out, "index.js"),
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node22", // the Node version the function app runs (Flex Consumption: 20 or 22)
  external,
  minify: true,
  keepNames: true, // error types are reported by class name
  // Keeps only this cloud's stores and cluster credentials (lib/stores/index.ts, lib/kubernetes/auth/):
  // the other clouds' SDKs stay out of the bundle.
  define: { "process.env.CNPG_ROTATOR_BUNDLE_CLOUD": '"azure"' },
  // CommonJS dependencies inside an ESM bundle still call require(): give them one.
  banner: { js: "import{createRequire as __cnpgCreateRequire}from'node:module';const require=__cnpgCreateRequire(import.meta.url);" },
  logLevel: "warning",
});
cpSync(join(import.meta.dirname, "host.json"), join(out, "host.json"));
cpSync(join(root, manifests), join(out, "manifests"), { recursive: true });
// Keeps local-only files out of what `func azure functionapp publish` uploads.
writeFileSync(join(out, ".funcignore"), "local.settings.json\n");
writeFileSync(
  join(out, "package.json"),
  `${JSON.stringify(
    {
      name: "cnpg-rotator-azure",
      version: pkg.version,
      private: true,
      type: "module",
      main: "index.js",
      engines: { node: ">=22" },
      dependencies: Object.fromEntries(external.map((name) => [name, pkg.dependencies[name]])),
    },
    null,
    2,
  )}\n`,
);
console.log(`dist/azure: index.js, host.json, manifests/ (from ${manifests}), package.json`);
