// The registry: one line per provider. Each store is imported only when a
// SecretStore names it, so a function for one cloud never loads another's SDK.
import { InputError } from "../errors.ts";
import type { ProviderConfig } from "../manifests/types.ts";
import type { SecretStoreClient, StoreDeps } from "./types.ts";

type ProviderName = ProviderConfig["name"];
type ConfigOf<N extends ProviderName> = Extract<ProviderConfig, { name: N }>["config"];
type StoreFactory<N extends ProviderName> = (config: ConfigOf<N>, deps: StoreDeps) => Promise<SecretStoreClient>;

const factories: { readonly [N in ProviderName]?: StoreFactory<N> } = {
  file: async (config, deps) => (await import("./file.ts")).createFileStore(config, deps),
  aws: async (config, deps) => (await import("./aws.ts")).createAwsStore(config, deps),
  gcpsm: async (config, deps) => (await import("./gcp.ts")).createGcpStore(config, deps),
  vault: async (config, deps) => (await import("./vault.ts")).createVaultStore(config, deps),
  azurekv: async (config, deps) => (await import("./azure.ts")).createAzureStore(config, deps),
};

/** The client for a SecretStore's `spec.provider`. Throws InputError for a provider without a store yet. */
export async function createStore(provider: ProviderConfig, deps: StoreDeps = {}): Promise<SecretStoreClient> {
  const factory = factories[provider.name] as StoreFactory<ProviderName> | undefined;
  if (!factory) {
    const available = Object.keys(factories).join(", ");
    throw new InputError(`spec.provider.${provider.name}: no store for this provider yet; available: ${available}`);
  }
  return factory(provider.config as ConfigOf<ProviderName>, deps);
}

export { MANAGED_BY_KEY, MANAGED_BY_VALUE } from "./types.ts";
export type { PushResult, SecretStoreClient, StoreDeps, StoredVersion } from "./types.ts";
