// The registry: one line per provider. Each store is imported only when a
// SecretStore names it, so a function for one cloud never loads another's SDK;
// a cloud's bundle does not even contain the others' stores (below).
import { InputError } from "../errors.ts";
import type { ProviderConfig } from "../manifests/types.ts";
import type { SecretStoreClient, StoreDeps } from "./types.ts";

// The cloud a bundle is built for: the bundlers define process.env.CNPG_ROTATOR_BUNDLE_CLOUD
// as "aws", "gcp" or "azure" (serverless.yml, deploy/build.ts); unbundled runs (tests, CLI)
// leave it unset and keep every store.
const BUNDLE_CLOUD = process.env.CNPG_ROTATOR_BUNDLE_CLOUD;

type ProviderName = ProviderConfig["name"];
type ConfigOf<N extends ProviderName> = Extract<ProviderConfig, { name: N }>["config"];
type StoreFactory<N extends ProviderName> = (config: ConfigOf<N>, deps: StoreDeps) => Promise<SecretStoreClient>;

// A cloud's store is in every build for that cloud only. The condition is written out each
// time: esbuild folds it only so (not through a const), and then drops the other clouds' import()s.
const factories: { readonly [N in ProviderName]?: StoreFactory<N> } = {
  file: async (config, deps) => (await import("./file.ts")).createFileStore(config, deps),
  ...(!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "aws"
    ? { aws: async (config, deps) => (await import("./aws.ts")).createAwsStore(config, deps) }
    : {}),
  ...(!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "gcp"
    ? { gcpsm: async (config, deps) => (await import("./gcp.ts")).createGcpStore(config, deps) }
    : {}),
  vault: async (config, deps) => (await import("./vault.ts")).createVaultStore(config, deps),
  ...(!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "azure"
    ? { azurekv: async (config, deps) => (await import("./azure.ts")).createAzureStore(config, deps) }
    : {}),
};

/** The cloud whose function (or the CLI) has the stores a cloud's build leaves out. */
const STORE_CLOUD: { readonly [N in ProviderName]?: string } = { aws: "aws", gcpsm: "gcp", azurekv: "azure" };
const CLOUD_TITLE: Record<string, string> = { aws: "AWS", gcp: "GCP", azure: "Azure" };

/** The client for a SecretStore's `spec.provider`. Throws InputError for a provider without a store (in this build). */
export async function createStore(provider: ProviderConfig, deps: StoreDeps = {}): Promise<SecretStoreClient> {
  const factory = factories[provider.name] as StoreFactory<ProviderName> | undefined;
  if (!factory) {
    const cloud = STORE_CLOUD[provider.name];
    if (BUNDLE_CLOUD && cloud) {
      const title = (c: string) => CLOUD_TITLE[c] ?? c;
      throw new InputError(
        `spec.provider.${provider.name}: this ${title(BUNDLE_CLOUD)} build has no ${provider.name} store; ` +
          `deploy the ${title(cloud)} function or use the CLI`,
      );
    }
    const available = Object.keys(factories).join(", ");
    throw new InputError(`spec.provider.${provider.name}: no store for this provider yet; available: ${available}`);
  }
  return factory(provider.config as ConfigOf<ProviderName>, deps);
}

export { MANAGED_BY_KEY, MANAGED_BY_VALUE } from "./types.ts";
export type { PushResult, SecretStoreClient, StoreDeps, StoredVersion } from "./types.ts";
