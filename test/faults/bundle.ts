// TEST ONLY: the campaign's invocation (child.ts) bundled as each cloud's function is
// (deploy/build.ts's bundleOptions: the serverless.yml esbuild settings, one cloud's stores;
// the GCP and Azure SDKs left external as their builds leave them), so a faulty invocation
// starts as a deployed function does: one file, no TypeScript to strip, no module graph to walk.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { build } from "esbuild";
import { bundleOptions, ROOT } from "../../deploy/build.ts";
import type { StoreName } from "./stores.ts";

const EXTERNAL = {
  aws: [],
  gcp: ["@google-cloud/functions-framework", "@google-cloud/secret-manager", "google-gax"],
  azure: ["@azure/functions", "@azure/identity", "@azure/keyvault-secrets"],
} as const;

/** The bundle a run against `store` uses: Vault's store is in every cloud's build (the AWS one here). */
export const cloudOf = (store: StoreName): keyof typeof EXTERNAL => (store === "gcp" ? "gcp" : store === "azure" ? "azure" : "aws");

/** Builds the three bundles under node_modules/.cache (so external packages resolve); their paths by cloud. */
export async function buildChildBundles(): Promise<Record<keyof typeof EXTERNAL, string>> {
  const dir = path.join(ROOT, "node_modules", ".cache", "cnpg-rotator-faults");
  mkdirSync(dir, { recursive: true });
  const out = {} as Record<keyof typeof EXTERNAL, string>;
  for (const cloud of Object.keys(EXTERNAL) as (keyof typeof EXTERNAL)[]) {
    const outfile = path.join(dir, `child-${cloud}.mjs`);
    await build({
      ...bundleOptions(cloud),
      entryPoints: [path.join(import.meta.dirname, "child.ts")],
      absWorkingDir: ROOT,
      outfile,
      target: "node24",
      external: [...EXTERNAL[cloud]],
      logLevel: "warning",
    });
    out[cloud] = outfile;
  }
  return out;
}
