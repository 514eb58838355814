// The fewest HTTP requests the rotation protocol allows for one steady-state rotation
// (the remote secret exists and holds the Secret; nothing in flight). bench/README.md
// explains each one; this is the same list as code, so the bench reports it per target.
import type { RotationTarget } from "../lib/rotation/plan.ts";

export interface MinimumRequests {
  readonly kube: number;
  readonly store: number;
  readonly total: number;
}

/** Kubernetes side, per target (the same for every target). */
export function minimumKubeRequests(): number {
  // GET Lease, GET Secret between the Lease's GET and its write (what the run decides on; with
  // creationPolicy Merge a missing Secret stops the run before it writes the Lease), POST/PUT
  // Lease, PATCH Secret, PUT Lease (release).
  return 5;
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
    kube += minimumKubeRequests();
    for (const p of t.publications) store += minimumStoreRequests(p.store.provider.name);
  }
  return { kube, store, total: kube + store };
}
