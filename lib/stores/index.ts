// The registry: one line per provider, naming its primitives (lib/stores/<name>.ts). A store is
// imported only when a SecretStore names it, and a cloud's bundle holds no other cloud's store.
import { InputError, StoreError } from "../errors.ts";
import type { ProviderConfig } from "../manifests/types.ts";
import { CURRENT } from "./primitives.ts";
import type { StoreDeps, StorePrimitives } from "./types.ts";

// "aws", "gcp" or "azure" in a bundle (serverless.yml, deploy/build.ts define it); unset: every store.
const BUNDLE_CLOUD = process.env.CNPG_ROTATOR_BUNDLE_CLOUD;

type ProviderName = ProviderConfig["name"];
type ConfigOf<N extends ProviderName> = Extract<ProviderConfig, { name: N }>["config"];
type Factory<N extends ProviderName> = (config: ConfigOf<N>, deps: StoreDeps) => Promise<StorePrimitives>;

// A cloud's store is in every build for that cloud only. The condition is written out each
// time: esbuild folds it only so (not through a const), and then drops the other clouds' import()s.
const factories: { readonly [N in ProviderName]?: Factory<N> } = {
  file: async (config, deps) => (await import("./file.ts")).filePrimitives(config, deps),
  ...(!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "aws"
    ? { aws: async (config, deps) => (await import("./aws.ts")).awsPrimitives(config, deps) }
    : {}),
  ...(!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "gcp"
    ? { gcpsm: async (config, deps) => (await import("./gcp.ts")).gcpPrimitives(config, deps) }
    : {}),
  vault: async (config, deps) => (await import("./vault.ts")).vaultPrimitives(config, deps),
  ...(!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "azure"
    ? { azurekv: async (config, deps) => (await import("./azure.ts")).azurePrimitives(config, deps) }
    : {}),
};

/** The cloud whose function (or the CLI) has the stores a cloud's build leaves out. */
const STORE_CLOUD: { readonly [N in ProviderName]?: string } = { aws: "AWS", gcpsm: "GCP", azurekv: "Azure" };

/**
 * A provider's primitives, which lib/protocol's createStore makes the engine's client of.
 * InputError (naming `setting`) for a provider without a store in this build.
 */
export async function createPrimitives(provider: ProviderConfig, deps: StoreDeps, setting = `spec.provider.${provider.name}`): Promise<StorePrimitives> {
  const factory = factories[provider.name] as Factory<ProviderName> | undefined;
  if (factory) return factory(provider.config as ConfigOf<ProviderName>, deps);
  const cloud = STORE_CLOUD[provider.name];
  if (BUNDLE_CLOUD && cloud) {
    const title = Object.values(STORE_CLOUD).find((c) => c.toLowerCase() === BUNDLE_CLOUD) ?? BUNDLE_CLOUD;
    throw new InputError(`${setting}: this ${title} build has no ${provider.name} store; deploy the ${cloud} function or use the CLI`);
  }
  throw new InputError(`${setting}: no store for this provider yet; available: ${Object.keys(factories).join(", ")}`);
}

/**
 * One secret's current value (or its provider's `version`), read with the function's own identity,
 * no marker needed, nothing written: CNPG_ROTATOR_KUBECONFIG_FROM. `name` as the service names it.
 */
export async function readSecretValue(
  provider: ProviderConfig,
  name: string,
  options: { readonly version?: string; readonly setting: string },
): Promise<string> {
  const p = await createPrimitives(provider, {}, options.setting);
  try {
    const which = options.version === undefined ? undefined : { versionId: options.version };
    const found = p.staging === "native" ? await p.read(name, which ?? { label: CURRENT }) : await p.read(name, which ?? "latest");
    if (!found) throw new StoreError(`"${name}" in ${p.description}: no such secret or version`);
    return found.value; // (A failed read is a StoreError already: primitives send every request through storeCalls.)
  } finally {
    await p.close();
  }
}
