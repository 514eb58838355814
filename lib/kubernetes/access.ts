// The permissions a rotation needs on one target, as deploy/rbac.yaml grants them.
import { resourceName } from "./api.ts";
import { leaseNameFor } from "./leases.ts";
import type { AccessCheck } from "./types.ts";

const LEASES = { group: "coordination.k8s.io", resource: "leases" } as const;
const SECRETS = { group: "", resource: "secrets" } as const;

/** What a rotation of `secretName` does in its namespace; `createSecret` for CreateOrMerge. */
export function rotationAccessChecks(secretName: string, options: { createSecret?: boolean } = {}): AccessCheck[] {
  const lease = leaseNameFor(secretName);
  return [
    { verb: "get", ...SECRETS, name: secretName },
    { verb: "patch", ...SECRETS, name: secretName },
    ...(options.createSecret ? [{ verb: "create", ...SECRETS }] : []),
    { verb: "get", ...LEASES, name: lease },
    { verb: "update", ...LEASES, name: lease },
    { verb: "create", ...LEASES },
  ];
}

/** `patch secrets/cluster-example-app`, the words `kubectl auth can-i` takes. */
export function describeAccess(check: AccessCheck): string {
  const what = resourceName(check.group, check.resource);
  return `${check.verb} ${what}${check.name ? `/${check.name}` : ""}`;
}
