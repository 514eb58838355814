// TEST ONLY: one rotate invocation of the campaign, in a process of its own (so it can be
// SIGKILLed at any moment, and its output is its own): the project's engine as the functions
// run it — manifests read from files, a fresh cluster client, the stores' registry — with the
// endpoints the campaign hands it (its Toxiproxy proxies, or the servers themselves for the clean
// runs). Logs JSON lines to stderr at debug level, then prints `FAULTS-RESULT <json>` on stdout.
//
// Config (JSON in env FAULTS_CHILD): see ChildConfig.
import { type DestinationStream, pino } from "pino";
import { connectCluster } from "../../lib/kubernetes/index.ts";
import { createLogger } from "../../lib/log.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import type { RotationResult } from "../../lib/rotation/rotate.ts";
import { readManifests } from "../../lib/rotation/files.ts";
import { type StoreFactory, storeFactory } from "../../lib/rotation/stores.ts";

export interface ChildConfig {
  readonly manifestsDir: string;
  readonly namespace: string;
  readonly target: string;
  readonly kubeconfigYaml: string;
  readonly kubeTimeoutMs: number;
  readonly force: boolean;
  readonly leaseSeconds: number;
  /** Vault's address as this invocation reaches it. */
  readonly vaultServer?: string;
  /** Azure: the vault URL's origin as reached, and the CA its TLS certificate is checked against. */
  readonly azure?: { readonly ca: string; readonly vaultUrl: string };
}

export const RESULT_PREFIX = "FAULTS-RESULT ";

export interface InvocationPayload {
  readonly results?: readonly RotationResult[];
  readonly thrown?: { readonly type: string; readonly message: string };
  readonly ms: number;
}

if (import.meta.main) {
  const config = JSON.parse(process.env.FAULTS_CHILD ?? "null") as ChildConfig | null;
  if (!config) {
    console.error("test/faults/child.ts: env FAULTS_CHILD must hold the invocation's config (JSON)");
    process.exit(2);
  }
  const payload = await invoke(config, pino.destination({ dest: 2, sync: true }));
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(payload)}\n`);
  process.exit(0);
}

/** One rotate() of the target, logging to `destination`; what it returned or threw. */
export async function invoke(config: ChildConfig, destination: DestinationStream): Promise<InvocationPayload> {
  const registry = storeFactory(config.vaultServer ? { vaultServer: config.vaultServer } : {});
  // Key Vault as lowkey-vault serves it: any bearer token passes; its certificate is checked against the given CA.
  const createStore: StoreFactory = async (store, context) => {
    // (The condition written out, so esbuild drops the Azure store from the other clouds' bundles.)
    if (store.provider.name !== "azurekv" || !config.azure || !(!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "azure")) {
      return registry(store, context);
    }
    const [{ azurePrimitives }, { createClient }] = await Promise.all([import("../../lib/stores/azure.ts"), import("../../lib/protocol/index.ts")]);
    return createClient(azurePrimitives({ ...store.provider.config, vaultUrl: config.azure.vaultUrl }, {}, {
      credential: { getToken: async () => ({ token: "lowkey-any-token", expiresOnTimestamp: Date.now() + 3_600_000 }) },
      clientOptions: { tlsOptions: { ca: config.azure.ca }, disableChallengeResourceVerification: true },
    }));
  };
  const kube = connectCluster({ kubeconfigYaml: config.kubeconfigYaml }, { requestTimeoutMs: config.kubeTimeoutMs });
  const started = performance.now();
  try {
    const results = await rotate(
      {
        manifests: readManifests([config.manifestsDir], { namespace: config.namespace }),
        kube,
        log: createLogger({ level: "debug", destination }),
        createStore,
      },
      { targets: [config.target], force: config.force, leaseSeconds: config.leaseSeconds },
    );
    return { results, ms: Math.round(performance.now() - started) };
  } catch (e) {
    const error = e as Error;
    return { thrown: { type: error.name, message: error.message }, ms: Math.round(performance.now() - started) };
  } finally {
    await kube.close();
  }
}
