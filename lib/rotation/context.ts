// Everything a front end needs to build an Engine from its environment:
// manifests from files, the cluster connection, the stores, a logger.
import { InputError } from "../errors.ts";
import { connectCluster, connectClusterFromEnvironment, type KubernetesClient } from "../kubernetes/index.ts";
import { createLogger, type Logger } from "../log.ts";
import { DEFAULT_CLUSTER, type ManifestSet } from "../manifests/index.ts";
import type { Engine } from "./engine.ts";
import { clusterSubset } from "./plan.ts";
import { manifestsFromEnvironment } from "./files.ts";
import { readStoredSecret, storeFactory } from "./stores.ts";
import { applyTimeoutFromEnvironment, verificationFromEnvironment } from "./verify.ts";

export interface EngineConfig {
  /** Manifest files or directories (default: $CNPG_ROTATOR_MANIFESTS, else ./manifests). */
  readonly manifests?: readonly string[];
  /** The manifests already loaded (a fleet builds one engine per cluster over one set). */
  readonly manifestSet?: ManifestSet;
  readonly namespace?: string;
  readonly kube?: KubernetesClient;
  /** Connect with this kubeconfig file instead of as the environment says (the CLI's --kubeconfig). */
  readonly kubeconfig?: string;
  /** The kubeconfig context to use (the CLI's --context). */
  readonly context?: string;
  readonly log?: Logger;
  readonly concurrency?: number;
  /** Log in with the new password before promoting (default: $CNPG_ROTATOR_VERIFY, else false). */
  readonly verify?: boolean;
  /** Roll the Secret back when that login fails (default: $CNPG_ROTATOR_ROLLBACK_ON_VERIFY_FAILURE, else true). */
  readonly rollbackOnVerifyFailure?: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * Builds the Engine the way every deployed function does: from files and environment
 * variables. Asynchronous because the cluster connection may be read from a secret store
 * (CNPG_ROTATOR_KUBECONFIG_FROM) or need a cloud identity token (CNPG_ROTATOR_CLUSTER).
 */
export async function engineFromEnvironment(config: EngineConfig = {}): Promise<Engine> {
  const env = config.env ?? process.env;
  const loaded =
    config.manifestSet ??
    manifestsFromEnvironment(env, {
      ...(config.manifests ? { paths: config.manifests } : {}),
      ...(config.namespace ? { namespace: config.namespace } : {}),
    });
  // A single-cluster engine sees only the targets of the cluster it connects to: with
  // KubernetesClusters declared, a fleet (lib/fleet/) serves the others.
  const manifests = config.manifestSet || loaded.clusters.length === 0 ? loaded : clusterSubset(loaded, DEFAULT_CLUSTER);
  const log = config.log ?? createLogger();
  if (!config.manifestSet) for (const warning of manifests.warnings) log.warn({ warning }, "manifest field has no effect");
  const concurrency = config.concurrency ?? (env.CNPG_ROTATOR_CONCURRENCY ? Number(env.CNPG_ROTATOR_CONCURRENCY) : 8);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InputError(`CNPG_ROTATOR_CONCURRENCY: expected a positive integer, found "${env.CNPG_ROTATOR_CONCURRENCY}"`);
  }
  // Verified rotation (SPEC §5.4): verify.ts reads CNPG_ROTATOR_VERIFY* and checks the targets' annotations now.
  let kube: KubernetesClient | undefined = config.kube;
  const verification = verificationFromEnvironment(env, manifests.externalSecrets, {
    ...(config.verify !== undefined ? { enabled: config.verify } : {}),
    ...(config.rollbackOnVerifyFailure !== undefined ? { rollbackOnFailure: config.rollbackOnVerifyFailure } : {}),
    log,
    readCa: async (namespace, cluster) => (await kube?.readSecret(namespace, `${cluster}-ca`))?.data["ca.crt"],
  });
  const context = config.context ? { context: config.context } : {};
  kube ??= config.kubeconfig
    ? connectCluster({ kubeconfigPath: config.kubeconfig, ...context })
    : await connectClusterFromEnvironment({ env, log, readStoredSecret, ...context });
  return {
    manifests,
    kube,
    log,
    createStore: storeFactory({
      ...(env.CNPG_ROTATOR_STATE_DIR ? { baseDir: env.CNPG_ROTATOR_STATE_DIR } : {}),
      ...(env.CNPG_ROTATOR_VAULT_SERVER ? { vaultServer: env.CNPG_ROTATOR_VAULT_SERVER } : {}),
    }),
    concurrency,
    ...(verification.verify ? { verify: verification.verify } : {}),
    // A failed test (a login, or CNPG not applying a password in time) is undone unless asked not to.
    ...(verification.rollbackOnFailure ? { rollbackOnVerifyFailure: true } : {}),
    ...applyTimeoutFromEnvironment(env),
  };
}
