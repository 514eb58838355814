// Builds the Cloud Functions source folder, dist/gcp/: one ESM bundle of
// functions/gcp/index.ts (the three entry points), the manifests beside it, and a
// package.json whose `main` is the bundle. Cloud Build runs `npm install` there.
//
//   npx node deploy/gcp/build.ts [manifests-dir]      (default: manifests)
//
// Left out of the bundle and installed by Cloud Build instead: the Functions
// Framework (the runtime starts it and it must be the very module the code
// registers with) and Google's client libraries (they read their protos at run time).
import { buildFunctionApp } from "../build.ts";

await buildFunctionApp(
  {
    cloud: "gcp",
    entry: "functions/gcp/index.ts",
    out: "dist/gcp",
    bundle: "index.mjs",
    target: "node24",
    external: ["@google-cloud/functions-framework", "@google-cloud/secret-manager", "google-gax"],
    packageName: "cnpg-rotator-gcp",
    engines: ">=24",
  },
  process.argv[2] ?? "manifests",
);
