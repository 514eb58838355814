// Everything a front end needs to build an Engine from its environment:
// manifests from files, the cluster connection, the stores, a logger.
import { InputError } from "../errors.ts";
import { connectCluster, type KubernetesClient } from "../kubernetes/index.ts";
import { createLogger, type Logger } from "../log.ts";
import type { Engine } from "./engine.ts";
import { readManifests } from "./files.ts";
import { storeFactory } from "./stores.ts";

export interface EngineConfig {
  /** Manifest files or directories (default: $CNPG_ROTATOR_MANIFESTS, else ./manifests). */
  readonly manifests?: readonly string[];
  readonly namespace?: string;
  readonly kube?: KubernetesClient;
  readonly log?: Logger;
  readonly concurrency?: number;
  readonly env?: NodeJS.ProcessEnv;
}

/** Builds the Engine the way every deployed function does: from files and environment variables. */
export function engineFromEnvironment(config: EngineConfig = {}): Engine {
  const env = config.env ?? process.env;
  const paths = config.manifests ?? (env.CNPG_ROTATOR_MANIFESTS ?? "manifests").split(",").filter(Boolean);
  const namespace = config.namespace ?? env.CNPG_ROTATOR_NAMESPACE;
  const manifests = readManifests(paths, namespace ? { namespace } : {});
  const log = config.log ?? createLogger();
  for (const warning of manifests.warnings) log.warn({ warning }, "manifest field has no effect");
  const concurrency = config.concurrency ?? (env.CNPG_ROTATOR_CONCURRENCY ? Number(env.CNPG_ROTATOR_CONCURRENCY) : 8);
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new InputError(`CNPG_ROTATOR_CONCURRENCY: expected a positive integer, found "${env.CNPG_ROTATOR_CONCURRENCY}"`);
  }
  return {
    manifests,
    kube: config.kube ?? connectCluster(),
    log,
    createStore: storeFactory(env.CNPG_ROTATOR_STATE_DIR ? { baseDir: env.CNPG_ROTATOR_STATE_DIR } : {}),
    concurrency,
  };
}
