// Builds store clients from SecretStore manifests. Credentials that live in
// the cluster (Vault's auth.tokenSecretRef, as ESO reads it) are read here and
// handed to the store, so stores never talk to Kubernetes themselves.
import { InputError } from "../errors.ts";
import { KUBECONFIG_FROM_ENV, type KubernetesClient, type StoredSecretReader } from "../kubernetes/index.ts";
import type { SecretStore } from "../manifests/index.ts";
import { rememberSecret } from "../redact.ts";
import { createStore } from "../protocol/index.ts";
import { readSecretValue } from "../stores/index.ts";
import type { SecretStoreClient, StoreDeps } from "../stores/types.ts";
import type { Publication } from "./plan.ts";

/** Builds the client of one SecretStore; the engine hands it what it needs from the cluster. */
export type StoreFactory = (store: SecretStore, context: { kube: KubernetesClient }) => Promise<SecretStoreClient>;

export interface StoreFactoryOptions {
  /** Directory relative `file` store paths resolve against. */
  readonly baseDir?: string;
  /**
   * The Vault address as the function reaches it, replacing `spec.provider.vault.server`:
   * a SecretStore written for in-cluster ESO names an in-cluster address
   * (`http://vault.vault.svc:8200`) that a function outside the cluster cannot resolve.
   */
  readonly vaultServer?: string;
}

export function storeFactory(options: StoreFactoryOptions = {}): StoreFactory {
  return async (store, { kube }) => {
    const deps: StoreDeps = {
      ...(options.baseDir ? { baseDir: options.baseDir } : {}),
      ...(store.provider.name === "vault" ? { token: await vaultToken(store, kube) } : {}),
    };
    const provider =
      store.provider.name === "vault" && options.vaultServer
        ? { name: "vault" as const, config: { ...store.provider.config, server: options.vaultServer } }
        : store.provider;
    return createStore(provider, deps);
  };
}

async function vaultToken(store: SecretStore, kube: KubernetesClient): Promise<string> {
  if (store.provider.name !== "vault") throw new Error("not a vault store");
  const ref = store.provider.config.auth.tokenSecretRef;
  const where = `${store.kind} ${store.kind === "SecretStore" ? `${store.metadata.namespace}/` : ""}${store.metadata.name}: spec.provider.vault.auth.tokenSecretRef`;
  let namespace = ref.namespace ?? store.metadata.namespace;
  if (store.kind === "ClusterSecretStore") {
    if (!ref.namespace) throw new InputError(`${where}.namespace: a ClusterSecretStore must name the token Secret's namespace`);
    namespace = ref.namespace;
  } else if (ref.namespace && ref.namespace !== store.metadata.namespace) {
    // As in ESO: a namespaced SecretStore may only read Secrets of its own namespace.
    throw new InputError(`${where}.namespace: a SecretStore may only use a Secret of its own namespace (${store.metadata.namespace})`);
  }
  const secret = await kube.readSecret(namespace, ref.name);
  if (!secret) throw new InputError(`${where}: Secret ${namespace}/${ref.name} not found; nothing was written`);
  const token = secret.data[ref.key]?.trim();
  if (!token) throw new InputError(`${where}: Secret ${namespace}/${ref.name} has no key "${ref.key}" (or it is empty); nothing was written`);
  rememberSecret(token);
  return token;
}

/** The store clients of one invocation: built once per SecretStore, closed together at the end. */
export interface StoreClients {
  readonly for: (publication: Publication) => Promise<SecretStoreClient>;
  readonly closeAll: () => Promise<void>;
}

export function storeClients(engine: { readonly createStore: StoreFactory; readonly kube: KubernetesClient }): StoreClients {
  const clients = new Map<string, Promise<SecretStoreClient>>();
  return {
    for: (publication) => {
      const s = publication.store;
      const id = `${s.kind}/${s.metadata.namespace}/${s.metadata.name}`;
      let client = clients.get(id);
      if (!client) {
        client = engine.createStore(s, { kube: engine.kube });
        clients.set(id, client);
      }
      return client;
    },
    closeAll: async () => {
      await Promise.all(
        [...clients.values()].map(async (c) => (await c.catch(() => undefined))?.close?.().catch(() => undefined)),
      );
    },
  };
}

/**
 * CNPG_ROTATOR_KUBECONFIG_FROM's secret, read through the stores' own primitives with the
 * function's identity: the cluster client and the stores meet here, in the engine, which hands
 * this reader to connectClusterFromEnvironment.
 */
export const readStoredSecret: StoredSecretReader = async (ref, env) => {
  const setting = KUBECONFIG_FROM_ENV;
  switch (ref.store) {
    case "aws": {
      const region = ref.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION);
      if (!region) throw new InputError(`${setting}: give the secret's ARN or set AWS_REGION, so the secret's region is known`);
      return readSecretValue({ name: "aws", config: { service: "SecretsManager", region } }, ref.secretId, { setting });
    }
    case "gcpsm": {
      const config = { projectID: ref.project, ...(ref.location ? { location: ref.location } : {}) };
      return readSecretValue({ name: "gcpsm", config }, ref.secret, { setting, ...(ref.version === "latest" ? {} : { version: ref.version }) });
    }
    case "azurekv":
      return readSecretValue({ name: "azurekv", config: { vaultUrl: ref.vaultUrl } }, ref.name, { setting, ...(ref.version ? { version: ref.version } : {}) });
  }
};
