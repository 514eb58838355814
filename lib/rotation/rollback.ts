// Undoing a rotation that was merged into the Secret but never promoted (its
// test failed): the store's *current* value — still the old password, since
// nothing was promoted — is rendered back into the Secret, the pending value
// is discarded from every store, and the Secret records the rollback so the
// next run starts a new rotation with a new id. Afterwards the Secret, the
// store and the database (which keeps the old password when CNPG never applied
// the new one, and gets it back from the Secret when it did) agree.
//
// Steps, each safe to run again: restore (Secret ← old values, annotation
// `rolled-back: <id>`), discard (pending dropped), publish (store ← the Secret
// as it now is, when another key changed meanwhile). A run stopped after
// restore leaves a pending value that rotate.ts never promotes (it sees the
// annotation) and that the next rollback or rotation replaces.
import { randomUUID } from "node:crypto";
import { SecretMissingError, StoreStateError, VerificationError } from "../errors.ts";
import type { SecretObject } from "../kubernetes/index.ts";
import type { SecretStoreClient, StoredVersion } from "../stores/types.ts";
import { type Engine, forEachTarget, selectTargets } from "./engine.ts";
import { type Publication, type RotationTarget, readRemoteValue, remoteValue, targetName } from "./plan.ts";
import { fingerprint, renderTarget } from "./render.ts";
import { ANNOTATIONS, type RotationDeps, type StoreVersionReport, successorId } from "./rotate.ts";
import { storeClients } from "./stores.ts";

export type RollbackOutcome = "rolled-back" | "nothing-to-roll-back" | "locked" | "failed";
export type RollbackStep = "restore" | "discard" | "publish";

/** What a rollback did for one target. Fingerprints only, never values. */
export interface RollbackResult {
  readonly target: string;
  readonly externalSecret: string;
  readonly outcome: RollbackOutcome;
  /** The rotation rolled back (or found). */
  readonly rotationId?: string;
  readonly reason?: string;
  /** The password the Secret holds now. */
  readonly fingerprint?: string;
  /** The password that was rolled back, when a store still had it. */
  readonly discardedFingerprint?: string;
  readonly stores?: readonly StoreVersionReport[];
  readonly error?: { readonly type: string; readonly message: string };
}

export interface RollbackOptions {
  /** Only roll back this rotation: if the Secret has moved on, do nothing. */
  readonly expectRotationId?: string;
  /** Called after each step; tests use it to simulate a crash. */
  readonly afterStep?: (step: RollbackStep, target: RotationTarget) => void | Promise<void>;
}

export interface RollbackRequest {
  /** Secrets as "namespace/name" (or "name" in default); all targets when absent. */
  readonly targets?: readonly string[];
  /** Lease time to live, seconds (default 60). */
  readonly leaseSeconds?: number;
  readonly afterStep?: RollbackOptions["afterStep"];
}

/** Rolls back, for each target named, the rotation merged into its Secret and not promoted. */
export async function rollback(engine: Engine, request: RollbackRequest = {}): Promise<RollbackResult[]> {
  const targets = selectTargets(engine.manifests, request.targets);
  const holder = `cnpg-rotator-rollback-${randomUUID()}`;
  const clients = storeClients(engine);
  const deps: RotationDeps = {
    kube: engine.kube,
    holder,
    log: engine.log.child({ invocation: holder }),
    storeFor: clients.for,
    ...(engine.now ? { now: engine.now } : {}),
  };
  try {
    return await forEachTarget(
      engine,
      targets,
      deps.log,
      "rollback",
      (t) =>
        rollbackTarget(t, deps, {
          ...(request.leaseSeconds !== undefined ? { leaseSeconds: request.leaseSeconds } : {}),
          ...(request.afterStep ? { afterStep: request.afterStep } : {}),
        }),
      (t, _cause, error) => ({ ...baseOf(t), outcome: "failed", error }),
    );
  } finally {
    await clients.closeAll();
  }
}

/** Takes the target's Lease, then rolls back. */
export async function rollbackTarget(
  target: RotationTarget,
  deps: RotationDeps,
  options: RollbackOptions & { leaseSeconds?: number } = {},
): Promise<RollbackResult> {
  const lease = await deps.kube.acquireLease(target.namespace, target.secretName, deps.holder, options.leaseSeconds ?? 60);
  if (!lease) return { ...baseOf(target), outcome: "locked", reason: "another run holds this Secret's Lease" };
  try {
    const result = await rollbackLocked(target, deps, options);
    deps.log.info(
      { target: targetName(target), outcome: result.outcome, rotationId: result.rotationId, fingerprint: result.fingerprint, reason: result.reason },
      "rollback finished",
    );
    return result;
  } finally {
    await lease.release().catch((e: unknown) => deps.log.warn({ error: (e as Error).message }, "could not release the lease"));
  }
}

/**
 * RotationDeps.onVerifyFailure: after a VerificationError, rolls the Secret back
 * under the Lease the rotation holds, and marks the error `rolledBack`. A
 * rollback that fails is logged and left to the next run, which finds the
 * rotation merged but not promoted and tests it again.
 */
export const rollbackOnVerifyFailure: NonNullable<RotationDeps["onVerifyFailure"]> = async (error, { secret, target, deps }) => {
  if (!(error instanceof VerificationError)) return;
  const rotationId = secret.annotations[ANNOTATIONS.rotationId];
  try {
    const result = await rollbackLocked(target, deps, rotationId ? { expectRotationId: rotationId } : {});
    if (result.outcome === "rolled-back") error.rolledBack = true;
    deps.log.warn(
      { target: targetName(target), rotationId, outcome: result.outcome, fingerprint: result.fingerprint, reason: result.reason },
      result.outcome === "rolled-back"
        ? "verification failed: rolled back to the store's current password"
        : "verification failed; nothing to roll back",
    );
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    deps.log.error(
      { target: targetName(target), rotationId, error: { type: err.name, message: err.message } },
      "verification failed and the rollback failed too; the next run tests the rotation again",
    );
  }
};

interface StoreState {
  readonly publication: Publication;
  readonly store: SecretStoreClient;
  readonly current: StoredVersion | undefined;
  readonly pending: StoredVersion | undefined;
}

/** The rollback itself; the caller holds the target's Lease. */
export async function rollbackLocked(
  target: RotationTarget,
  deps: RotationDeps,
  options: RollbackOptions = {},
): Promise<RollbackResult> {
  const base = baseOf(target);
  const secret = await deps.kube.readSecret(target.namespace, target.secretName);
  if (!secret) {
    throw new SecretMissingError(`Secret ${targetName(target)} does not exist: there is nothing to roll back`);
  }
  const rotationId = secret.annotations[ANNOTATIONS.rotationId];
  const nothing = (reason: string): RollbackResult => ({
    ...base,
    outcome: "nothing-to-roll-back",
    reason,
    ...(rotationId ? { rotationId } : {}),
    ...(secret.data.password !== undefined ? { fingerprint: fingerprint(secret.data.password) } : {}),
  });
  if (!rotationId) return nothing("the Secret was never rotated");
  if (options.expectRotationId !== undefined && options.expectRotationId !== rotationId) {
    return nothing(`the Secret has moved on to rotation ${rotationId}`);
  }

  const states: StoreState[] = await Promise.all(
    target.publications.map(async (publication) => {
      const store = await deps.storeFor(publication);
      const [current, pending] = await Promise.all([
        store.getCurrent(publication.remoteKey),
        store.getPending(publication.remoteKey),
      ]);
      return { publication, store, current, pending };
    }),
  );
  const restored = secret.annotations[ANNOTATIONS.rolledBack] === rotationId;
  const pendingHere = states.filter((s) => s.pending?.rotationId === rotationId);
  if (pendingHere.length === 0) {
    if (restored) return nothing(`rotation ${rotationId} was already rolled back`);
    const next = successorId(target.namespace, target.secretName, rotationId);
    if (states.some((s) => s.pending?.rotationId === next)) {
      // Discarding it would let the next run stage the same id with another value (AWS refuses that).
      return nothing(
        `rotation ${next} is staged but not merged: the Secret still holds the current password, and the next rotation finishes it`,
      );
    }
    return nothing(`rotation ${rotationId} is promoted: no store holds it pending (rotate again to change the password)`);
  }
  if (!restored) {
    const promoted = states.filter((s) => s.pending?.rotationId !== rotationId && s.current?.rotationId === rotationId);
    if (promoted.length > 0) {
      throw new StoreStateError(
        `rotation ${rotationId} of ${targetName(target)} is already current in ${promoted.map(describe).join(", ")} ` +
          `but still pending in ${pendingHere.map(describe).join(", ")}: finish it with a rotation rather than roll it back`,
      );
    }
  }

  const newValues = valuesFrom(target, pendingHere, (s) => s.pending, "pending", false);
  const now = deps.now?.() ?? new Date();

  // restore: the template rendered again with the old values; derived keys rewritten to the old password.
  let secretNow: SecretObject = secret;
  if (!restored) {
    // The old generated values, read back from the stores' current values (as a resume reads the pending ones).
    const oldValues = valuesFrom(target, states, (s) => s.current, "current");
    const updated = await deps.kube.updateSecret(
      target.namespace,
      target.secretName,
      (current) => {
        if (current.annotations[ANNOTATIONS.rotationId] !== rotationId) return undefined;
        if (current.annotations[ANNOTATIONS.rolledBack] === rotationId) return undefined;
        const rendered = renderTarget(target.externalSecret, oldValues, current.data);
        const password = rendered.data.password ?? oldValues.password;
        return {
          data: { ...rendered.data },
          labels: { ...rendered.labels },
          annotations: {
            ...rendered.annotations,
            [ANNOTATIONS.rolledBack]: rotationId,
            [ANNOTATIONS.rolledBackAt]: now.toISOString(),
            [ANNOTATIONS.storeVersion]: states.map((s) => s.current?.versionId ?? "").join(", "),
            ...(password !== undefined ? { [ANNOTATIONS.fingerprint]: fingerprint(password) } : {}),
          },
        };
      },
      { initial: secret },
    );
    secretNow = updated.secret;
    if (secretNow.annotations[ANNOTATIONS.rotationId] !== rotationId) {
      return nothing(`the Secret moved on to rotation ${secretNow.annotations[ANNOTATIONS.rotationId]} meanwhile`);
    }
    await options.afterStep?.("restore", target);
  }

  // discard: the rolled-back value must never become current.
  for (const s of pendingHere) await s.store.discard(s.publication.remoteKey, rotationId, await s.store.observe(s.publication.remoteKey));
  await options.afterStep?.("discard", target);

  // publish: a key changed by someone else since the rotation read the Secret would
  // otherwise be in the Secret and not in the store (as finish() does after a promote).
  const versions = new Map<StoreState, string | undefined>();
  for (const s of states) {
    const value = remoteValue(s.publication, secretNow.data, s.current?.value);
    let versionId = s.current?.versionId;
    if (s.current && value !== s.current.value) {
      const pushed = await s.store.push(s.publication.remoteKey, value);
      versionId = pushed.versionId ?? versionId;
    }
    versions.set(s, versionId);
  }
  await options.afterStep?.("publish", target);

  const password = secretNow.data.password;
  const discarded = newValues.password;
  return {
    ...base,
    outcome: "rolled-back",
    rotationId,
    ...(password !== undefined ? { fingerprint: fingerprint(password) } : {}),
    ...(discarded !== undefined ? { discardedFingerprint: fingerprint(discarded) } : {}),
    stores: states.map((s) => {
      const versionId = versions.get(s);
      return {
        store: `${s.publication.store.kind}/${s.publication.store.metadata.name}`,
        provider: s.store.provider,
        remoteKey: s.publication.remoteKey,
        ...(versionId ? { versionId } : {}),
      };
    }),
  };
}

/**
 * The generated values one version of each store carries, found through the
 * target's recovery keys. With `required`, a value no store holds, or two
 * stores disagreeing on it, is a StoreStateError (no old password to go back to).
 */
function valuesFrom(
  target: RotationTarget,
  states: readonly StoreState[],
  pick: (s: StoreState) => StoredVersion | undefined,
  which: "current" | "pending",
  required = true,
): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [generated, secretKey] of Object.entries(target.recoveryKeys)) {
    const found = new Set<string>();
    for (const s of states) {
      const version = pick(s);
      const v = version ? readRemoteValue(s.publication, version.value)[secretKey] : undefined;
      if (v !== undefined) found.add(v);
    }
    if (found.size > 1 && required) {
      throw new StoreStateError(
        `${targetName(target)}: the stores' ${which} values disagree on "${secretKey}"; resolve by hand before rolling back`,
      );
    }
    const [v] = found;
    if (v === undefined) {
      if (!required) continue;
      throw new StoreStateError(
        `${targetName(target)}: no store holds a ${which} "${secretKey}", so there is no earlier password to roll back to ` +
          `(was the Secret created by this rotation?); resolve by hand`,
      );
    }
    values[generated] = v;
  }
  return values;
}

function describe(s: StoreState): string {
  return `${s.publication.store.kind}/${s.publication.store.metadata.name}:${s.publication.remoteKey}`;
}

function baseOf(t: RotationTarget): { target: string; externalSecret: string } {
  return {
    target: targetName(t),
    externalSecret: `${t.externalSecret.metadata.namespace}/${t.externalSecret.metadata.name}`,
  };
}
