// Whether each KubernetesCluster of the manifests can be reached, for `cnpg-rotator validate`:
// connect as the fleet would (kubeconfigFrom, kubeconfigEnv, server + identity), then ask the
// API server (one SelfSubjectAccessReview per namespace with targets) whether that identity may
// list the Secrets there, the one request the planner makes. Writes nothing.
import pLimit from "p-limit";
import { redactError } from "../redact.ts";
import { namespaceOf } from "./compiled.ts";
import type { Fleet } from "./fleet.ts";

export interface ClusterCheck {
  readonly cluster: string;
  readonly namespaces: number;
  /** `namespace: list secrets` for each namespace where the identity may not. */
  readonly missing: readonly string[];
  /** The cluster could not be connected to (or did not answer). */
  readonly error?: { readonly type: string; readonly message: string };
}

const PARALLEL = 4;

/** Every cluster the manifests declare, side by side; each fails alone. */
export async function probeClusters(fleet: Fleet): Promise<ClusterCheck[]> {
  const namespaces = new Map<string, Set<string>>(fleet.manifests.clusters.map((c) => [c.metadata.name, new Set<string>()]));
  for (const t of fleet.plannedTargets()) namespaces.get(t.cluster)?.add(namespaceOf(t.target));
  return Promise.all(
    [...namespaces].map(async ([cluster, nss]): Promise<ClusterCheck> => {
      try {
        const kube = await fleet.connections.get(cluster);
        const limit = pLimit(PARALLEL);
        const missing = (
          await Promise.all(
            [...nss].sort().map((ns) =>
              limit(async () => (await kube.checkAccess(ns, [{ verb: "list", group: "", resource: "secrets" }])).map((m) => `${ns}: ${m}`)),
            ),
          )
        ).flat();
        return { cluster, namespaces: nss.size, missing };
      } catch (e) {
        const err = redactError(e instanceof Error ? e : new Error(String(e)));
        return { cluster, namespaces: nss.size, missing: [], error: { type: err.name, message: err.message } };
      }
    }),
  );
}
