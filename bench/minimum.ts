// The fewest HTTP requests the rotation protocol allows for one steady-state rotation
// (the remote secret exists and holds the Secret; nothing in flight). bench/README.md
// explains each one; this is the same list as code, so the bench reports it per target.
import type { RotationTarget } from "../lib/rotation/plan.ts";

export interface MinimumRequests {
  readonly kube: number;
  readonly store: number;
  readonly total: number;
}

/** Kubernetes side, per target. */
export function minimumKubeRequests(target: RotationTarget): number {
  // GET Secret before the Lease (creationPolicy Merge: a missing Secret must create nothing),
  // GET Lease + POST/PUT Lease, GET Secret under the Lease, PATCH Secret, PUT Lease (release).
  const precheck = target.externalSecret.target.creationPolicy === "Merge" ? 1 : 0;
  return precheck + 5;
}

/** Store side, per publication. */
export function minimumStoreRequests(provider: string): number {
  switch (provider) {
    case "aws":
      // DescribeSecret (ownership tag + version stages: enough to see a rotation in flight),
      // DescribeSecret (the stage's fence), PutSecretValue (AWSPENDING, token = rotation id),
      // UpdateSecretVersionStage AWSCURRENT → new (compare-and-swap), AWSPENDING off.
      return 5;
    case "file":
      return 0; // no HTTP
    default:
      throw new Error(`no minimum worked out for provider ${provider}`);
  }
}

export function minimumRequests(targets: readonly RotationTarget[]): MinimumRequests {
  let kube = 0;
  let store = 0;
  for (const t of targets) {
    kube += minimumKubeRequests(t);
    for (const p of t.publications) store += minimumStoreRequests(p.store.provider.name);
  }
  return { kube, store, total: kube + store };
}
