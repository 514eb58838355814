// The clusters of a fleet: which cluster each target lives in, and a client per cluster,
// connected on first use and kept while the function instance stays warm. A cluster's
// connection is read by the very code that reads CNPG_ROTATOR_CLUSTER* and
// CNPG_ROTATOR_KUBECONFIG_FROM for a single-cluster deployment: each KubernetesCluster is
// turned into those variables, so both configurations mean exactly the same thing.
import { InputError } from "../errors.ts";
import {
  CLUSTER_CA_ENV,
  CLUSTER_ENV,
  CLUSTER_SERVER_ENV,
  connectClusterFromEnvironment,
  KUBECONFIG_ENV,
  KUBECONFIG_FROM_ENV,
  type KubernetesClient,
  parseKubeconfigFrom,
  readClusterEnvironment,
} from "../kubernetes/index.ts";
import type { Logger } from "../log.ts";
import {
  DEFAULT_CLUSTER,
  type ExternalSecret,
  KUBERNETES_CLUSTER_ANNOTATION,
  type KubernetesCluster,
  type ManifestSet,
} from "../manifests/index.ts";
import { readStoredSecret } from "../rotation/stores.ts";

export { DEFAULT_CLUSTER, KUBERNETES_CLUSTER_ANNOTATION };

/** Rotations of one cluster at once in one invocation, unless its KubernetesCluster says otherwise. */
export const CLUSTER_CONCURRENCY_ENV = "CNPG_ROTATOR_CLUSTER_CONCURRENCY";
const DEFAULT_CLUSTER_CONCURRENCY = 4;
/** Per request to a fleet's API servers: an unreachable cluster fails its targets after this, not at the function's end. */
export const CLUSTER_TIMEOUT_ENV = "CNPG_ROTATOR_CLUSTER_TIMEOUT_MS";
const DEFAULT_CLUSTER_TIMEOUT_MS = 10_000;

/** The variables that name a cluster; none of the function's own reach a KubernetesCluster's connection. */
const CONNECTION_VARIABLES = [CLUSTER_ENV, CLUSTER_SERVER_ENV, CLUSTER_CA_ENV, KUBECONFIG_FROM_ENV, KUBECONFIG_ENV, "KUBECONFIG"];

/** The cluster an ExternalSecret's target lives in. */
export function clusterOf(es: ExternalSecret): string {
  return es.metadata.annotations[KUBERNETES_CLUSTER_ANNOTATION] ?? DEFAULT_CLUSTER;
}

/** The names of every cluster a deployment serves: the KubernetesClusters, and "default" when a target names none. */
export function clusterNames(set: ManifestSet): string[] {
  const names = new Set(set.clusters.map((c) => c.metadata.name));
  for (const es of set.externalSecrets) names.add(clusterOf(es));
  return [...names].sort();
}

function where(c: KubernetesCluster): string {
  return `${c.metadata.source.file}: document ${c.metadata.source.document} (KubernetesCluster/${c.metadata.name})`;
}

/**
 * The environment a single-cluster deployment of this cluster would have: the function's own,
 * without its cluster variables, plus the cluster's spec in their terms. InputError names the field.
 */
export function clusterEnvironment(c: KubernetesCluster, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const name of CONNECTION_VARIABLES) delete out[name];
  const s = c.spec;
  if (s.kubeconfigEnv !== undefined) {
    const value = env[s.kubeconfigEnv];
    if (!value?.trim()) {
      throw new InputError(`${where(c)}: spec.kubeconfigEnv: environment variable ${s.kubeconfigEnv} is not set (it should hold the cluster's kubeconfig, YAML or base64)`);
    }
    out[KUBECONFIG_ENV] = value;
  }
  if (s.kubeconfigFrom !== undefined) out[KUBECONFIG_FROM_ENV] = s.kubeconfigFrom;
  if (s.server !== undefined) out[CLUSTER_SERVER_ENV] = s.server;
  if (s.certificateAuthorityData !== undefined) out[CLUSTER_CA_ENV] = s.certificateAuthorityData;
  if (s.identity !== undefined) out[CLUSTER_ENV] = s.identity;
  if (s.region !== undefined) out.AWS_REGION = s.region;
  return out;
}

/**
 * Checks every KubernetesCluster as its connection will be read (a CA that does not parse, an
 * EKS identity without a region, a malformed kubeconfigFrom), with nothing fetched: an
 * InputError naming the file, document and field, before anything is enqueued or written.
 */
export function checkClusters(set: ManifestSet, env: NodeJS.ProcessEnv = process.env): void {
  for (const c of set.clusters) {
    try {
      const cenv = clusterEnvironment(c, env);
      readClusterEnvironment(cenv);
      if (c.spec.kubeconfigFrom !== undefined) parseKubeconfigFrom(c.spec.kubeconfigFrom);
    } catch (e) {
      if (!(e instanceof InputError) || e.message.startsWith(where(c))) throw e;
      throw new InputError(`${where(c)}: spec: ${inTermsOfSpec(e.message)}`);
    }
  }
}

// The shared reader names the variables; here they are the KubernetesCluster's fields.
function inTermsOfSpec(message: string): string {
  return message
    .replaceAll(CLUSTER_SERVER_ENV, "server")
    .replaceAll(CLUSTER_CA_ENV, "certificateAuthorityData")
    .replaceAll(KUBECONFIG_FROM_ENV, "kubeconfigFrom")
    .replaceAll(CLUSTER_ENV, "identity")
    .replaceAll("AWS_REGION", "region");
}

/** The cap on one cluster's concurrent rotations in one invocation. */
export function clusterConcurrency(set: ManifestSet, cluster: string, env: NodeJS.ProcessEnv = process.env): number {
  const declared = set.clusters.find((c) => c.metadata.name === cluster)?.spec.maxConcurrentRotations;
  if (declared !== undefined) return declared;
  const value = env[CLUSTER_CONCURRENCY_ENV];
  if (value === undefined || value === "") return DEFAULT_CLUSTER_CONCURRENCY;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InputError(`${CLUSTER_CONCURRENCY_ENV}: expected a positive integer, found "${value}"`);
  return n;
}

function clusterTimeoutMs(env: NodeJS.ProcessEnv): number {
  const value = env[CLUSTER_TIMEOUT_ENV];
  if (value === undefined || value === "") return DEFAULT_CLUSTER_TIMEOUT_MS;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 100) throw new InputError(`${CLUSTER_TIMEOUT_ENV}: expected milliseconds (>= 100), found "${value}"`);
  return n;
}

/**
 * One client per cluster, connected on first use (a cold start connects only to the clusters
 * its messages name) and kept across warm invocations. A failed connection is forgotten, so
 * the next message tries again; it fails only that cluster's targets.
 */
export class ClusterConnections {
  readonly #set: ManifestSet;
  readonly #env: NodeJS.ProcessEnv;
  readonly #log: Logger;
  readonly #clients = new Map<string, Promise<KubernetesClient>>();
  readonly #given: ReadonlyMap<string, KubernetesClient>;

  /** `given`: clients to use instead of connecting (the default cluster's client a caller already has, or a test's). */
  constructor(set: ManifestSet, options: { env?: NodeJS.ProcessEnv; log: Logger; given?: ReadonlyMap<string, KubernetesClient> }) {
    this.#set = set;
    this.#env = options.env ?? process.env;
    this.#log = options.log;
    this.#given = options.given ?? new Map();
  }

  get(cluster: string): Promise<KubernetesClient> {
    const given = this.#given.get(cluster);
    if (given) return Promise.resolve(given);
    let client = this.#clients.get(cluster);
    if (!client) {
      client = this.#connect(cluster).catch((e: unknown) => {
        this.#clients.delete(cluster);
        throw e;
      });
      this.#clients.set(cluster, client);
    }
    return client;
  }

  async #connect(cluster: string): Promise<KubernetesClient> {
    const declared = this.#set.clusters.find((c) => c.metadata.name === cluster);
    if (!declared && cluster !== DEFAULT_CLUSTER) {
      throw new InputError(`cluster "${cluster}": no KubernetesCluster of that name; known: ${clusterNames(this.#set).join(", ")}`);
    }
    const env = declared ? clusterEnvironment(declared, this.#env) : this.#env;
    return connectClusterFromEnvironment({
      env,
      log: this.#log.child({ cluster }),
      readStoredSecret,
      requestTimeoutMs: clusterTimeoutMs(this.#env),
    });
  }

  async closeAll(): Promise<void> {
    const clients = [...this.#clients.values()];
    this.#clients.clear();
    for (const c of await Promise.allSettled(clients)) if (c.status === "fulfilled") await c.value.close();
  }
}
