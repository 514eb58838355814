// How an ExternalSecret rotates, read from its annotations (pure). Without any, exactly as ESO:
// one Secret, one role, its password replaced. With `cnpg-rotator.io/strategy: alternating`, two
// CNPG managed roles take turns (SPEC §9): the target Secret is the *consumer* Secret
// applications read, and each role's `passwordSecret` is CNPG's input.
//
//   metadata:
//     annotations:
//       cnpg-rotator.io/strategy: alternating
//       cnpg-rotator.io/cluster: cluster-example
//       cnpg-rotator.io/roles: app_blue=cluster-example-app-blue, app_green=cluster-example-app-green
import { InputError } from "../errors.ts";
import type { ExternalSecret } from "../manifests/index.ts";
import { ANNOTATION_PREFIX } from "./names.ts";

export const STRATEGY_ANNOTATIONS = {
  /** `single-user` (default) or `alternating`. */
  strategy: `${ANNOTATION_PREFIX}strategy`,
  /** The CNPG Cluster (in the ExternalSecret's namespace) whose status says when a password is applied. */
  cluster: `${ANNOTATION_PREFIX}cluster`,
  /** `role=passwordSecret, role=passwordSecret`: the two managed roles and the Secret CNPG reads for each. */
  roles: `${ANNOTATION_PREFIX}roles`,
} as const;

export interface ManagedRole {
  /** The PostgreSQL role, as in the Cluster's `spec.managed.roles[].name`. */
  readonly role: string;
  /** Its `passwordSecret.name`, in the same namespace. */
  readonly secretName: string;
}

export type Strategy =
  | { readonly kind: "single-user"; readonly cluster?: string }
  | { readonly kind: "alternating"; readonly cluster: string; readonly roles: readonly [ManagedRole, ManagedRole] };

// PostgreSQL identifiers CNPG accepts as role names without quoting, and Kubernetes object names.
const ROLE = /^[a-z_][a-z0-9_]{0,62}$/;
const OBJECT_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/** The strategy an ExternalSecret asks for. Bad annotations are an InputError naming them. */
export function strategyOf(es: ExternalSecret): Strategy {
  const a = es.metadata.annotations;
  const where = `ExternalSecret ${es.metadata.namespace}/${es.metadata.name}: annotation`;
  const kind = a[STRATEGY_ANNOTATIONS.strategy] ?? "single-user";
  const cluster = a[STRATEGY_ANNOTATIONS.cluster];
  if (cluster !== undefined && !OBJECT_NAME.test(cluster)) {
    throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.cluster}: expected the name of a CNPG Cluster, found "${cluster}"`);
  }
  if (kind === "single-user") {
    if (a[STRATEGY_ANNOTATIONS.roles] !== undefined) {
      throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: only used with ${STRATEGY_ANNOTATIONS.strategy}: alternating`);
    }
    return { kind, ...(cluster ? { cluster } : {}) };
  }
  if (kind !== "alternating") {
    throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.strategy}: expected "single-user" or "alternating", found "${kind}"`);
  }
  if (!cluster) {
    throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.cluster}: the alternating strategy needs the CNPG Cluster whose status says when a role's password is applied`);
  }
  const text = a[STRATEGY_ANNOTATIONS.roles];
  const example = `"app_blue=${cluster}-app-blue, app_green=${cluster}-app-green"`;
  if (!text) throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: the alternating strategy needs two managed roles and their passwordSecrets, e.g. ${example}`);
  const roles = text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((pair) => {
      const [role, secretName, extra] = pair.split("=").map((s) => s.trim());
      if (!role || !secretName || extra !== undefined) {
        throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: expected "role=passwordSecret", found "${pair}" (e.g. ${example})`);
      }
      if (!ROLE.test(role)) {
        throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: "${role}" is not a PostgreSQL role name CNPG manages (lower-case letters, digits, "_")`);
      }
      if (!OBJECT_NAME.test(secretName)) {
        throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: "${secretName}" is not a Secret name`);
      }
      return { role, secretName };
    });
  if (roles.length !== 2) {
    throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: expected exactly two roles that take turns, found ${roles.length}`);
  }
  const [first, second] = roles as [ManagedRole, ManagedRole];
  if (first.role === second.role) throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: both entries name role "${first.role}"`);
  if (first.secretName === second.secretName) {
    throw new InputError(`${where} ${STRATEGY_ANNOTATIONS.roles}: both roles name Secret "${first.secretName}"; each role needs its own passwordSecret`);
  }
  for (const r of roles) {
    if (r.secretName === es.target.name) {
      throw new InputError(
        `${where} ${STRATEGY_ANNOTATIONS.roles}: role ${r.role}'s passwordSecret is the target Secret ${es.target.name}; ` +
          `the target is the consumer Secret applications read, and each role needs a Secret of its own`,
      );
    }
  }
  return { kind, cluster, roles: [first, second] };
}
