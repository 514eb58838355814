// Builds the Azure Functions app folder, dist/azure/: one ESM bundle of
// functions/azure/index.ts (the four functions), host.json, the manifests, and a
// package.json whose `main` is the bundle — the folder `func` publishes.
//
//   npx node deploy/azure/build.ts [manifests-dir]      (default: manifests)
//   cd dist/azure && npm install --omit=dev && func azure functionapp publish <app>
//
// Left out of the bundle and installed beside it: @azure/functions (the Node
// worker hands it the host's core API when it is required) and Azure's SDKs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { buildFunctionApp } from "../build.ts";

await buildFunctionApp(
  {
    cloud: "azure",
    entry: "functions/azure/index.ts",
    out: "dist/azure",
    bundle: "index.js",
    target: "node22", // the Node version the function app runs (Flex Consumption: 20 or 22)
    external: ["@azure/functions", "@azure/identity", "@azure/keyvault-secrets", "@azure/storage-queue"],
    packageName: "cnpg-rotator-azure",
    engines: ">=22",
    files: {
      "host.json": readFileSync(join(import.meta.dirname, "host.json"), "utf8"),
      // Keeps local-only files out of what `func azure functionapp publish` uploads.
      ".funcignore": "local.settings.json\n",
    },
  },
  process.argv[2] ?? "manifests",
);
