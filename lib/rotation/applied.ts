// When CNPG has applied a Secret, read off its own Cluster status (SPEC §9; CNPG v1.30 api/v1):
// a managed role's passwordSecret is applied once
// `status.managedRolesStatus.passwordStatus[<role>].resourceVersion` equals the Secret's
// resourceVersion (the instance manager writes it after changing the role); the application
// owner's Secret once `status.secretsResourceVersion.applicationSecretVersion` does (the
// superuser's: `superuserSecretVersion`). Also: what a Cluster must declare for the alternating
// strategy, checked before anything is written.
import { setTimeout as sleep } from "node:timers/promises";
import { InputError, VerificationError } from "../errors.ts";
import type { CnpgCluster, KubernetesClient, SecretObject } from "../kubernetes/index.ts";
import type { Logger } from "../log.ts";
import type { ManagedRole } from "./strategy.ts";

export interface AppliedSignal {
  /** The status field, as a JSON path a human can look up with kubectl. */
  readonly field: string;
  read(cluster: CnpgCluster): string | undefined;
}

/** Which field of the Cluster's status tells that CNPG applied Secret `secretName`; undefined when CNPG does not read it. */
export function appliedSignal(cluster: CnpgCluster, secretName: string): AppliedSignal | undefined {
  const role = cluster.spec.managed?.roles?.find((r) => r.passwordSecret?.name === secretName);
  if (role) {
    return {
      field: `status.managedRolesStatus.passwordStatus.${role.name}.resourceVersion`,
      read: (c) => c.status.managedRolesStatus?.passwordStatus?.[role.name]?.resourceVersion,
    };
  }
  const app = cluster.spec.bootstrap?.initdb?.secret?.name ?? `${cluster.name}-app`;
  if (secretName === app) {
    return { field: "status.secretsResourceVersion.applicationSecretVersion", read: (c) => c.status.secretsResourceVersion?.applicationSecretVersion };
  }
  const superuser = cluster.spec.superuserSecret?.name ?? `${cluster.name}-superuser`;
  if (secretName === superuser) {
    return { field: "status.secretsResourceVersion.superuserSecretVersion", read: (c) => c.status.secretsResourceVersion?.superuserSecretVersion };
  }
  return undefined;
}

export interface WaitOptions {
  readonly timeoutMs: number;
  readonly initialDelayMs?: number;
  readonly maxDelayMs?: number;
  readonly log?: Logger;
}

/**
 * Polls the Cluster until its status says CNPG applied `secret` as this run wrote it. A timeout
 * is a VerificationError naming the field that did not move (resourceVersions are not secrets).
 */
export async function waitApplied(
  kube: KubernetesClient,
  cluster: string,
  secret: SecretObject,
  options: WaitOptions,
): Promise<void> {
  const started = Date.now();
  let delay = options.initialDelayMs ?? 100;
  let last: string | undefined;
  let field = "status";
  for (;;) {
    const found = await kube.readCluster(secret.namespace, cluster);
    if (!found) throw new VerificationError(`Cluster ${secret.namespace}/${cluster} does not exist: nothing can apply Secret ${secret.name}`, { lastStatus: "error" });
    const signal = appliedSignal(found, secret.name);
    if (!signal) {
      throw new VerificationError(`Cluster ${secret.namespace}/${cluster} does not read Secret ${secret.name} (not a managed role's passwordSecret, nor its application or superuser Secret)`, {
        lastStatus: "error",
      });
    }
    field = signal.field;
    last = signal.read(found);
    if (last === secret.resourceVersion) {
      options.log?.info({ cluster, secret: secret.name, field, elapsedMs: Date.now() - started }, "CNPG applied the Secret");
      return;
    }
    if (Date.now() - started >= options.timeoutMs) break;
    await sleep(Math.min(delay, Math.max(0, options.timeoutMs - (Date.now() - started))));
    delay = Math.min(delay * 2, options.maxDelayMs ?? 2_000);
  }
  const reasons = (await kube.readCluster(secret.namespace, cluster))?.status.managedRolesStatus?.cannotReconcile;
  const cannot = reasons ? Object.entries(reasons).map(([r, why]) => `${r}: ${why.join("; ")}`).join(", ") : "";
  throw new VerificationError(
    `CNPG did not apply Secret ${secret.namespace}/${secret.name} within ${Math.round(options.timeoutMs / 1000)}s: Cluster ${cluster} ` +
      `${field} is ${last === undefined ? "unset" : `"${last}"`}, expected "${secret.resourceVersion}"${cannot ? ` (CNPG cannot reconcile: ${cannot})` : ""}`,
    { lastStatus: "auth-failed" },
  );
}

/**
 * What the alternating strategy needs of the Cluster, checked before anything is written: it
 * exists, declares both roles as login roles whose passwordSecret is the one named, and makes
 * each a member of the role that owns the database objects (so objects stay usable by both).
 */
export function checkAlternatingCluster(cluster: CnpgCluster | undefined, namespace: string, name: string, roles: readonly ManagedRole[]): void {
  if (!cluster) throw new InputError(`Cluster ${namespace}/${name} (annotation cnpg-rotator.io/cluster) does not exist; nothing was written`);
  const owner = cluster.spec.bootstrap?.initdb?.owner ?? "app";
  const declared = cluster.spec.managed?.roles ?? [];
  for (const r of roles) {
    const spec = declared.find((d) => d.name === r.role);
    const where = `Cluster ${namespace}/${name}: spec.managed.roles`;
    if (!spec || spec.ensure === "absent") {
      throw new InputError(`${where} has no role ${r.role}; declare it (login: true, inRoles: [${owner}], passwordSecret: {name: ${r.secretName}}); nothing was written`);
    }
    if (spec.passwordSecret?.name !== r.secretName) {
      throw new InputError(`${where}[${r.role}].passwordSecret.name is "${spec.passwordSecret?.name ?? ""}", but the ExternalSecret names ${r.secretName}; nothing was written`);
    }
    if (spec.login !== true) throw new InputError(`${where}[${r.role}].login is not true: applications could not log in as it; nothing was written`);
    if (spec.disablePassword) throw new InputError(`${where}[${r.role}].disablePassword is set: CNPG would not apply a password; nothing was written`);
    if (!spec.inRoles?.includes(owner)) {
      throw new InputError(
        `${where}[${r.role}].inRoles does not contain ${owner}, the owner of the database: objects one role creates would not be usable by the other; nothing was written`,
      );
    }
  }
}
