// Observe and act: the I/O half of the protocol (decide.ts is the other, pure half). `observe`
// reads the Secret and each store's state once. `act` carries out one step and folds what its
// write returned into the observation, so the next decision needs no second read: every write
// is fenced on the state it was decided on (the Secret's resourceVersion, the store's versions),
// so what it returns is exactly the new state — or it throws a ConflictError having written
// nothing, and the loop observes again.
import { StoreConflictError, StoreStateError, VerificationError } from "../errors.ts";
import { rememberSecret } from "../redact.ts";
import type { KubernetesClient, SecretChange, SecretObject } from "../kubernetes/index.ts";
import type { LoginResult } from "../postgres/index.ts";
import type { RemoteState, SecretStoreClient, StoredVersion } from "../stores/types.ts";
import { type Observation, type Progress, previousPasswordOf, type Step } from "./decide.ts";
import { ANNOTATIONS } from "./names.ts";
import { type Publication, type RotationTarget, readRemoteValue, remoteValue, targetName } from "./plan.ts";
import { fingerprint, renderTarget } from "./render.ts";

/**
 * Logs in with the Secret's new credentials (the test step); throws VerificationError when it
 * cannot. `beforeLogin` runs first, only for a target whose verification is on.
 */
export type Verifier = ((secret: SecretObject, target: RotationTarget, options?: { beforeLogin?: () => Promise<void> }) => Promise<void>) & {
  /** One login without retries (status): undefined when verification is off for the target. */
  readonly probe?: (secret: SecretObject, target: RotationTarget) => Promise<LoginResult | undefined>;
};

/** One run on one target: its clients, what it last observed and what it has done. */
export interface Run {
  readonly target: RotationTarget;
  readonly kube: KubernetesClient;
  /** `stores[i]` writes `target.publications[i]`. */
  readonly stores: readonly SecretStoreClient[];
  readonly verify?: Verifier;
  /** Waits until CNPG reports it applied this Secret (alternating: always; single-user: before a verified test). */
  readonly waitApplied?: (secret: SecretObject) => Promise<void>;
  readonly now: Date;
  /** Values generated (and checked) before the Lease, for a rotation this run starts. */
  readonly freshValues: Readonly<Record<string, string>>;
  obs: Observation;
  readonly progress: Progress;
  /** The keys the merge changed, once merged. */
  changedKeys?: string[];
  /** The VerificationError of a failed test. */
  verificationError?: VerificationError;
}

export async function observeStores(run: Pick<Run, "target" | "stores">): Promise<RemoteState[]> {
  return Promise.all(run.stores.map((s, i) => s.observe(run.target.publications[i]!.remoteKey)));
}

/** Alternating: each managed role's passwordSecret. */
export async function observeRoles(run: Pick<Run, "target" | "kube">): Promise<(SecretObject | undefined)[] | undefined> {
  const { strategy, namespace } = run.target;
  if (strategy.kind !== "alternating") return undefined;
  return Promise.all(strategy.roles.map((r) => run.kube.readSecret(namespace, r.secretName)));
}

export async function observe(run: Pick<Run, "target" | "stores" | "kube">): Promise<Observation> {
  const [secret, stores, roles] = await Promise.all([
    run.kube.readSecret(run.target.namespace, run.target.secretName),
    observeStores(run),
    observeRoles(run),
  ]);
  rememberSecretsOf(run.target, secret, ...(roles ?? []));
  return { secret, stores, ...(roles ? { roles } : {}) };
}

/** The generated values a target's Secrets hold (its recovery keys; a role Secret's password), for the secret boundary. */
export function rememberSecretsOf(target: RotationTarget, ...secrets: (SecretObject | undefined)[]): void {
  for (const s of secrets) {
    if (!s) continue;
    rememberSecret(s.data.password, ...Object.values(target.recoveryKeys).map((k) => s.data[k]));
  }
}

/** Every generated value a store version carries, for the secret boundary. */
function rememberVersions(target: RotationTarget, versions: readonly (StoredVersion | undefined)[]): void {
  versions.forEach((v, i) => {
    if (!v) return;
    const carried = readRemoteValue(target.publications[i]!, v.value);
    rememberSecret(carried.password, ...Object.values(target.recoveryKeys).map((k) => carried[k]));
  });
}

/** Carries out one step (not `done` / `refuse`). */
export async function act(run: Run, step: Exclude<Step, { kind: "done" | "refuse" }>): Promise<void> {
  const { target, progress } = run;
  switch (step.kind) {
    case "seed": {
      // The Secret as it is now becomes the current value of a remote secret never written.
      const i = step.store;
      const value = remoteValue(target.publications[i]!, run.obs.secret!.data, undefined, run.obs.secret!.binaryKeys);
      const pushed = await run.stores[i]!.push(key(run, i), value, { seen: run.obs.stores[i]! });
      setStore(run, i, pushed.versionId !== undefined ? { exists: true, owned: true, current: { versionId: pushed.versionId } } : await run.stores[i]!.observe(key(run, i)));
      return;
    }
    case "stage": {
      const i = step.store;
      if (progress.values === undefined) {
        progress.values = { ...run.freshValues };
        progress.started = true;
      }
      rememberSecret(...Object.values(progress.values));
      progress.rotationId = step.rotationId;
      const publication = target.publications[i]!;
      const secret = run.obs.secret;
      // The store gets the target Secret as it will be: alternating, switched to the idle role.
      const rendered = renderTarget(target.externalSecret, progress.values, secret?.data, switchTo(run));
      const after = { ...secret?.data, ...rendered.data };
      const current = readsCurrent(publication) ? (await run.stores[i]!.getCurrent(key(run, i)))?.value : undefined;
      const binary = (secret?.binaryKeys ?? []).filter((k) => !(k in rendered.data));
      const value = remoteValue(publication, after, current, binary);
      const staged = await run.stores[i]!.stage(key(run, i), value, step.rotationId, run.obs.stores[i]!);
      if (staged.value !== value) {
        // Someone staged this rotation first, with other values: ours are void. Observe again
        // and resume theirs (recover reads them back), never merge ours under their id.
        progress.values = undefined;
        progress.started = false;
        throw new StoreConflictError(`rotation ${step.rotationId} was already staged in ${where(publication)} by another run`);
      }
      setStore(run, i, { exists: true, owned: true, ...withCurrent(run.obs.stores[i]!), pending: { versionId: staged.versionId, rotationId: step.rotationId } });
      return;
    }
    case "recover": {
      progress.values = await recoverValues(run, step.rotationId);
      rememberSecret(...Object.values(progress.values));
      progress.rotationId = step.rotationId;
      return;
    }
    case "merge": {
      const secret = run.obs.secret;
      const values = progress.values!;
      const rendered = renderTarget(target.externalSecret, values, secret?.data);
      const password = rendered.data.password ?? values.password;
      const es = target.externalSecret;
      const change: SecretChange = {
        data: rendered.data,
        labels: { ...rendered.labels },
        annotations: {
          ...rendered.annotations,
          ...rotationAnnotations(run, step.rotationId, password),
          [ANNOTATIONS.externalSecret]: `${es.metadata.namespace}/${es.metadata.name}`,
        },
      };
      const merged = secret
        ? await run.kube.patchSecret(secret, change)
        : await run.kube.createSecretIfMissing(target.namespace, target.secretName, {
            type: es.target.template?.type ?? "Opaque",
            data: { ...change.data },
            labels: { ...change.labels },
            annotations: present(change.annotations),
          });
      run.changedKeys = Object.keys(rendered.data).filter((k) => secret?.data[k] !== rendered.data[k]);
      run.obs = { ...run.obs, secret: merged };
      return;
    }
    case "test": {
      try {
        if (step.role !== undefined) {
          // Alternating: CNPG must have applied the idle role's new password before anyone is switched to it.
          const role = run.obs.roles![step.role]!;
          await run.waitApplied?.(role);
          await run.verify?.(asLogin(run.obs.secret!, role), target);
        } else {
          const secret = run.obs.secret!;
          const wait = run.waitApplied;
          await run.verify?.(secret, target, wait ? { beforeLogin: () => wait(secret) } : {});
        }
        progress.tested = step.rotationId;
      } catch (e) {
        if (!(e instanceof VerificationError)) throw e;
        run.verificationError = e;
        progress.failedTest = step.rotationId;
      }
      return;
    }
    case "merge-role": {
      // The idle role's new password, where CNPG reads it; CNPG applies it to the role.
      const strategy = alternating(target);
      const role = run.obs.roles![step.role]!;
      const password = progress.values!.password!;
      const merged = await run.kube.patchSecret(role, {
        data: { username: strategy.roles[step.role]!.role, password },
        labels: { "cnpg.io/reload": "true" },
        annotations: {
          [ANNOTATIONS.rotationId]: step.rotationId,
          [ANNOTATIONS.rotatedAt]: run.now.toISOString(),
          [ANNOTATIONS.fingerprint]: fingerprint(password),
          [ANNOTATIONS.rolledBack]: null,
          [ANNOTATIONS.rolledBackAt]: null,
        },
      });
      setRole(run, step.role, merged);
      return;
    }
    case "switch": {
      // The consumer Secret moves to the role CNPG has applied and a login has proven.
      const secret = run.obs.secret!;
      const values = progress.values!;
      const user = alternating(target).roles[step.role]!.role;
      const rendered = renderTarget(target.externalSecret, values, secret.data, { user });
      const es = target.externalSecret;
      const switched = await run.kube.patchSecret(secret, {
        data: rendered.data,
        labels: { ...rendered.labels },
        annotations: {
          ...rendered.annotations,
          ...rotationAnnotations(run, step.rotationId, values.password),
          [ANNOTATIONS.externalSecret]: `${es.metadata.namespace}/${es.metadata.name}`,
          [ANNOTATIONS.strategy]: "alternating",
        },
      });
      run.changedKeys = Object.keys(rendered.data).filter((k) => secret.data[k] !== rendered.data[k]);
      run.obs = { ...run.obs, secret: switched };
      return;
    }
    case "read-previous": {
      progress.previousValues = await Promise.all(run.stores.map((s, i) => s.getPrevious(key(run, i))));
      rememberVersions(target, progress.previousValues);
      return;
    }
    case "restore-role": {
      const role = run.obs.roles![step.role]!;
      const password = previousPasswordOf(target, progress, step.role)!;
      const restored = await run.kube.patchSecret(role, {
        data: { password },
        annotations: {
          [ANNOTATIONS.rolledBack]: step.rotationId,
          [ANNOTATIONS.rolledBackAt]: run.now.toISOString(),
          [ANNOTATIONS.fingerprint]: fingerprint(password),
        },
      });
      setRole(run, step.role, restored);
      return;
    }
    case "mark-rolled-back": {
      // The consumer Secret keeps its data (the active role works): it records the rollback, so the
      // next run starts a rotation with a new id and knows the target is due.
      const marked = await run.kube.patchSecret(run.obs.secret!, {
        annotations: { [ANNOTATIONS.rolledBack]: step.rotationId, [ANNOTATIONS.rolledBackAt]: run.now.toISOString() },
      });
      run.obs = { ...run.obs, secret: marked };
      return;
    }
    case "promote": {
      const i = step.store;
      const promoted = await run.stores[i]!.promote(key(run, i), step.rotationId, run.obs.stores[i]!);
      progress.rotationId = step.rotationId;
      progress.promoted[i] = promoted;
      setStore(run, i, { exists: true, owned: true, current: { versionId: promoted.versionId, rotationId: step.rotationId } });
      return;
    }
    case "publish": {
      // A key written by someone else since the stage is in the Secret but not in the store.
      const i = step.store;
      const base = progress.promoted[i] ?? progress.currentValues?.[i];
      const value = remoteValue(target.publications[i]!, run.obs.secret!.data, base?.value, run.obs.secret!.binaryKeys);
      const pushed = await run.stores[i]!.push(key(run, i), value, { seen: run.obs.stores[i]! });
      progress.published[i] = true;
      if (pushed.versionId !== undefined) {
        const version = { versionId: pushed.versionId, ...(base?.rotationId ? { rotationId: base.rotationId } : {}) };
        setStore(run, i, { ...run.obs.stores[i]!, current: version });
        if (progress.promoted[i]) progress.promoted[i] = { ...version, value };
      }
      return;
    }
    case "read-current": {
      progress.currentValues = await Promise.all(run.stores.map((s, i) => s.getCurrent(key(run, i))));
      rememberVersions(target, progress.currentValues);
      progress.rotationId ??= run.obs.secret?.annotations[ANNOTATIONS.rotationId];
      return;
    }
    case "restore": {
      // The template rendered again with the old values: every derived key back on the old password.
      const secret = run.obs.secret!;
      const old = valuesFrom(target, progress.currentValues!, "current");
      const rendered = renderTarget(target.externalSecret, old, secret.data);
      const password = rendered.data.password ?? old.password;
      const restored = await run.kube.patchSecret(secret, {
        data: { ...rendered.data },
        labels: { ...rendered.labels },
        annotations: {
          ...rendered.annotations,
          [ANNOTATIONS.rolledBack]: step.rotationId,
          [ANNOTATIONS.rolledBackAt]: run.now.toISOString(),
          [ANNOTATIONS.storeVersion]: progress.currentValues!.map((v) => v?.versionId ?? "").join(", "),
          ...(password !== undefined ? { [ANNOTATIONS.fingerprint]: fingerprint(password) } : {}),
        },
      });
      progress.rotationId = step.rotationId;
      run.obs = { ...run.obs, secret: restored };
      return;
    }
    case "discard": {
      const i = step.store;
      const seen = run.obs.stores[i]!;
      await run.stores[i]!.discard(key(run, i), step.rotationId, seen);
      progress.rotationId = step.rotationId;
      // A remote secret that never had a current value goes with its pending one.
      setStore(run, i, seen.current ? { exists: true, owned: true, current: seen.current } : { exists: false, owned: false });
      return;
    }
    default: {
      const unknown: never = step;
      throw new Error(`no act for step ${JSON.stringify(unknown)}`);
    }
  }
}

/** What a rotation records on the Secret it changes (our annotations; a new rotation supersedes a rollback's record). */
function rotationAnnotations(run: Run, rotationId: string, password: string | undefined): Record<string, string | null> {
  const { target } = run;
  return {
    [ANNOTATIONS.rotationId]: rotationId,
    [ANNOTATIONS.rotatedAt]: run.now.toISOString(),
    [ANNOTATIONS.store]: target.publications.map((p, i) => storeLabel(p, run.stores[i]!)).join(", "),
    [ANNOTATIONS.storeVersion]: run.obs.stores.map((s) => s.pending?.versionId ?? "").join(", "),
    [ANNOTATIONS.specHash]: target.externalSecret.specHash,
    ...(password !== undefined ? { [ANNOTATIONS.fingerprint]: fingerprint(password) } : {}),
    [ANNOTATIONS.rolledBack]: null,
    [ANNOTATIONS.rolledBackAt]: null,
  };
}

function alternating(target: RotationTarget) {
  if (target.strategy.kind !== "alternating") throw new Error(`${targetName(target)} is not an alternating target`);
  return target.strategy;
}

/** Alternating: the role the consumer Secret will be switched to (the one it does not name now). */
function switchTo(run: Run): { user?: string } {
  if (run.target.strategy.kind !== "alternating") return {};
  const roles = run.target.strategy.roles;
  const active = roles.findIndex((r) => r.role === run.obs.secret?.data.username);
  return { user: roles[active === 0 ? 1 : 0]!.role };
}

/** The consumer Secret's connection details with a role's credentials: how the test logs in as that role. */
export function asLogin(consumer: SecretObject, role: SecretObject): SecretObject {
  const { uri: _u, ...rest } = consumer.data;
  return { ...consumer, data: { ...rest, username: role.data.username ?? "", password: role.data.password ?? "" } };
}

function setRole(run: Run, i: number, secret: SecretObject): void {
  const roles = [...(run.obs.roles ?? [])];
  roles[i] = secret;
  run.obs = { ...run.obs, roles };
}

function key(run: Run, i: number): string {
  return run.target.publications[i]!.remoteKey;
}

function setStore(run: Run, i: number, state: RemoteState): void {
  const stores = [...run.obs.stores];
  stores[i] = state;
  run.obs = { ...run.obs, stores };
}

function withCurrent(state: RemoteState): Pick<RemoteState, "current"> {
  return state.current ? { current: state.current } : {};
}

function present(a: SecretChange["annotations"]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(a ?? {})) if (v !== null) out[k] = v;
  return out;
}

/** Whether `remoteValue` reads the remote current value: a `property` entry merges into it, unless an earlier entry replaced it. */
function readsCurrent(publication: Publication): boolean {
  let reads = true;
  for (const entry of publication.entries) if (entry.secretKey === undefined || entry.property === undefined) reads = false;
  return reads;
}

/** The generated values of a rotation in flight, read back from every store that staged it. */
async function recoverValues(run: Run, rotationId: string): Promise<Record<string, string>> {
  const versions = await Promise.all(
    run.stores.map((s, i) => (run.obs.stores[i]!.pending?.rotationId === rotationId ? s.getPending(key(run, i)) : undefined)),
  );
  const staged = versions.map((v) => (v?.rotationId === rotationId ? v : undefined));
  if (staged.every((v) => v === undefined)) {
    throw new StoreConflictError(`rotation ${rotationId} of ${targetName(run.target)} is no longer pending anywhere`);
  }
  return valuesFrom(run.target, staged, "pending");
}

/**
 * The generated values that one version per store carries, found through the target's recovery
 * keys. A value no store holds, or stores disagreeing on it, is a StoreStateError.
 */
export function valuesFrom(
  target: RotationTarget,
  versions: readonly (StoredVersion | undefined)[],
  which: "current" | "pending",
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [generated, secretKey] of Object.entries(target.recoveryKeys)) {
    const found = new Set<string>();
    versions.forEach((v, i) => {
      const carried = v ? readRemoteValue(target.publications[i]!, v.value)[secretKey] : undefined;
      if (carried !== undefined) found.add(carried);
    });
    if (found.size > 1) {
      throw new StoreStateError(`${targetName(target)}: the stores' ${which} values disagree on "${secretKey}"; resolve by hand`);
    }
    const [v] = found;
    if (v === undefined) {
      throw new StoreStateError(
        which === "pending"
          ? `a rotation of ${targetName(target)} is in flight but no store holds its staged "${secretKey}"; resolve by hand (compare the stores with the Secret) before the next run`
          : `${targetName(target)}: no store holds a current "${secretKey}", so there is no earlier password to roll back to (was the Secret created by this rotation?); resolve by hand`,
      );
    }
    values[generated] = v;
  }
  return values;
}

function where(p: Publication): string {
  return `${p.store.kind}/${p.store.metadata.name}:${p.remoteKey}`;
}

/** How a store appears in the Secret's annotation: `SecretStore/name(provider):remoteKey`. */
export function storeLabel(p: Publication, store: SecretStoreClient): string {
  return `${p.store.kind}/${p.store.metadata.name}(${store.provider}):${p.remoteKey}`;
}
