// The rotation protocol for one target Secret, as four named steps in the
// manner of the AWS rotation Lambdas — stage, merge, test, promote — each safe
// to run again. State lives where it belongs: the pending value in the store
// (keyed by rotation id), the rotation id on the Secret. A run that finds a
// rotation in flight finishes it with the same password.
import { createHash } from "node:crypto";
import { SecretMissingError, StoreStateError } from "../errors.ts";
import type { KubernetesClient, SecretObject } from "../kubernetes/index.ts";
import type { Logger } from "../log.ts";
import type { ExternalSecret } from "../manifests/index.ts";
import type { RemoteState, SecretStoreClient, StoredVersion, VersionRef } from "../stores/types.ts";
import { type Publication, type RotationTarget, readRemoteValue, remoteValue, targetName } from "./plan.ts";
import { fingerprint, generateValues, type RenderedTarget, renderTarget } from "./render.ts";

export const ANNOTATION_PREFIX = "cnpg-rotator.io/";
export const ANNOTATIONS = {
  rotationId: `${ANNOTATION_PREFIX}rotation-id`,
  rotatedAt: `${ANNOTATION_PREFIX}rotated-at`,
  externalSecret: `${ANNOTATION_PREFIX}external-secret`,
  store: `${ANNOTATION_PREFIX}store`,
  storeVersion: `${ANNOTATION_PREFIX}store-version`,
  fingerprint: `${ANNOTATION_PREFIX}password-fingerprint`,
  specHash: `${ANNOTATION_PREFIX}spec-hash`,
  // Set by rollback.ts: the rotation named here was merged, failed its test and was undone, so
  // the Secret holds the store's current password again. Cleared by the next merge.
  rolledBack: `${ANNOTATION_PREFIX}rolled-back`,
  rolledBackAt: `${ANNOTATION_PREFIX}rolled-back-at`,
} as const;

export type Step = "stage" | "merge" | "test" | "promote";

export interface RotationDeps {
  readonly kube: KubernetesClient;
  /** A client for a publication's store (the engine builds and caches them). */
  readonly storeFor: (publication: Publication) => Promise<SecretStoreClient>;
  /** Who holds the Lease: one id per invocation. */
  readonly holder: string;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Logs in with the new credentials (SPEC §5 test step); throwing stops the rotation before promote. */
  readonly verify?: (secret: SecretObject, target: RotationTarget) => Promise<void>;
  /**
   * Called when verify throws, still under the Lease and before the failure is
   * reported (rollback.ts's rollbackOnVerifyFailure puts the old password back).
   */
  readonly onVerifyFailure?: (
    error: unknown,
    context: { readonly secret: SecretObject; readonly target: RotationTarget; readonly deps: RotationDeps },
  ) => Promise<void>;
  /** Called after each step; tests use it to simulate a crash at a step boundary. */
  readonly afterStep?: (step: Step, target: RotationTarget) => void | Promise<void>;
}

export interface RotateOptions {
  /** Rotate even if not due. */
  readonly force?: boolean;
  /** Report what would change, write nothing. */
  readonly dryRun?: boolean;
  /** Lease time to live, seconds (default 60). */
  readonly leaseSeconds?: number;
}

export type Outcome = "rotated" | "resumed" | "not-due" | "locked" | "dry-run" | "failed";

export interface StoreVersionReport {
  readonly store: string;
  readonly provider: string;
  readonly remoteKey: string;
  readonly versionId?: string;
}

/** What a run did for one target. Fingerprints only, never values. */
export interface RotationResult {
  readonly target: string;
  readonly externalSecret: string;
  readonly outcome: Outcome;
  readonly rotationId?: string;
  /** For a resumed rotation: the first step this run carried out. */
  readonly resumedAt?: Step;
  readonly reason?: string;
  readonly nextDue?: string;
  readonly fingerprint?: string;
  readonly previousFingerprint?: string;
  readonly changedKeys?: readonly string[];
  readonly stores?: readonly StoreVersionReport[];
  readonly conflicts?: number;
  /** A failed verification whose merge was undone: the Secret holds the store's current password again. */
  readonly rolledBack?: boolean;
  readonly error?: { readonly type: string; readonly message: string };
}

/**
 * The id of the rotation that follows `previous` on this Secret. Every run
 * that sees the same state derives the same id, so duplicated or retried
 * triggers converge on one rotation (and AWS dedupes on it as ClientRequestToken).
 */
export function successorId(namespace: string, secretName: string, previous: string | undefined): string {
  const h = createHash("sha256").update(`${namespace}/${secretName}|${previous ?? "initial"}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Whether a rotation is due, and when the next one is. */
export function dueCheck(
  es: ExternalSecret,
  secret: SecretObject | undefined,
  now: Date,
): { due: boolean; reason: string; nextDue?: Date } {
  const last = secret?.annotations[ANNOTATIONS.rotatedAt];
  if (!secret || !last) return { due: true, reason: "never rotated" };
  // A rolled-back rotation changed nothing: whatever the policy, the password is still due a change.
  const lastId = secret.annotations[ANNOTATIONS.rotationId];
  if (lastId && secret.annotations[ANNOTATIONS.rolledBack] === lastId) {
    return { due: true, reason: `rotation ${lastId} was rolled back` };
  }
  const lastMs = Date.parse(last);
  if (Number.isNaN(lastMs)) return { due: true, reason: `unreadable ${ANNOTATIONS.rotatedAt}` };
  switch (es.refreshPolicy) {
    case "CreatedOnce":
      return { due: false, reason: "refreshPolicy CreatedOnce: generated once already" };
    case "OnChange":
      return secret.annotations[ANNOTATIONS.specHash] === es.specHash
        ? { due: false, reason: "refreshPolicy OnChange: the ExternalSecret has not changed" }
        : { due: true, reason: "refreshPolicy OnChange: the ExternalSecret changed" };
    case "Periodic": {
      if (es.refreshIntervalMs === 0) return { due: false, reason: "refreshInterval 0: generated once already" };
      // Schedulers fire at about, not exactly, the interval: a run slightly early still counts.
      const slack = Math.min(es.refreshIntervalMs * 0.1, 5 * 60_000);
      const nextDue = new Date(lastMs + es.refreshIntervalMs);
      return nextDue.getTime() - slack <= now.getTime()
        ? { due: true, reason: "refresh interval elapsed", nextDue }
        : { due: false, reason: "not due yet", nextDue };
    }
  }
}

interface Staged {
  readonly publication: Publication;
  readonly store: SecretStoreClient;
  version?: StoredVersion;
  /** The store's state as last observed or written by this run: what its next write is fenced on. */
  seen?: RemoteState;
}

/** A version the engine knows of; its value only once read (`describe` names versions without values). */
interface KnownVersion extends VersionRef {
  readonly value?: string;
}

/** One store's current and pending version of its remote key, as this run saw them. */
interface StoreView {
  current?: KnownVersion | undefined;
  pending?: KnownVersion | undefined;
  /** The observation the next write to this store is fenced on. */
  seen: RemoteState;
}

/** A store's state: one `observe` (no values). */
async function readView(s: Staged): Promise<StoreView> {
  const seen = await s.store.observe(s.publication.remoteKey);
  return { current: seen.current, pending: seen.pending, seen };
}

/** Whether `remoteValue` reads the remote current value: a `property` entry merges into it, unless an earlier entry replaced it. */
function readsCurrent(publication: Publication): boolean {
  let reads = true;
  for (const entry of publication.entries) if (entry.secretKey === undefined || entry.property === undefined) reads = false;
  return reads;
}

/** The current value `remoteValue` needs for this publication: read now if it needs one and `describe` left it out. */
async function currentValueFor(s: Staged, view: StoreView): Promise<string | undefined> {
  if (!view.current || !readsCurrent(s.publication)) return undefined;
  if (view.current.value === undefined) view.current = await s.store.getCurrent(s.publication.remoteKey);
  return view.current?.value;
}

/** Runs (or resumes) the rotation of one target under its Lease. */
export async function rotateTarget(
  target: RotationTarget,
  deps: RotationDeps,
  options: RotateOptions = {},
): Promise<RotationResult> {
  const es = target.externalSecret;
  const base = { target: targetName(target), externalSecret: `${es.metadata.namespace}/${es.metadata.name}` };
  const log = deps.log.child({ target: base.target });
  if (options.dryRun) return dryRun(target, deps, options, base);

  // Fail on a missing Secret before the Lease exists, so such a run creates nothing at all.
  if (target.externalSecret.target.creationPolicy === "Merge") {
    if (!(await deps.kube.readSecret(target.namespace, target.secretName))) throw missing(target);
  }
  const leaseSeconds = options.leaseSeconds ?? 60;
  const lease = await deps.kube.acquireLease(target.namespace, target.secretName, deps.holder, leaseSeconds);
  if (!lease) {
    log.info({ outcome: "locked" }, "another run holds the lease for this target");
    return { ...base, outcome: "locked", reason: "another run is rotating this Secret" };
  }
  // A verified rotation may wait on CNPG for longer than the Lease lives (and a rollback
  // follows it): keep the Lease renewed while this run holds it.
  let released = false;
  const renewal = setInterval(() => {
    lease.renew().then(
      (held) => held || released || log.warn({}, "lost the lease while rotating"),
      (e: unknown) => log.warn({ error: (e as Error).message }, "could not renew the lease"),
    );
  }, (leaseSeconds * 1000) / 3);
  renewal.unref();
  try {
    const result = await runLocked(target, deps, options, base);
    log.info(
      {
        outcome: result.outcome,
        rotationId: result.rotationId,
        fingerprint: result.fingerprint,
        resumedAt: result.resumedAt,
        reason: result.reason,
      },
      "rotation finished",
    );
    return result;
  } finally {
    clearInterval(renewal);
    released = true;
    await lease.release().catch((e: unknown) => log.warn({ error: (e as Error).message }, "could not release the lease"));
  }
}

async function runLocked(
  target: RotationTarget,
  deps: RotationDeps,
  options: RotateOptions,
  base: { target: string; externalSecret: string },
): Promise<RotationResult> {
  const es = target.externalSecret;
  const now = deps.now?.() ?? new Date();
  const secret = await deps.kube.readSecret(target.namespace, target.secretName);
  if (!secret && es.target.creationPolicy === "Merge") throw missing(target);

  const staged: Staged[] = await Promise.all(
    target.publications.map(async (publication) => ({ publication, store: await deps.storeFor(publication) })),
  );
  const states = await Promise.all(staged.map(readView));
  for (const [i, s] of staged.entries()) s.seen = states[i]!.seen;
  const lastId = secret?.annotations[ANNOTATIONS.rotationId];
  const previousFingerprint = secret?.data.password !== undefined ? fingerprint(secret.data.password) : undefined;

  // Merged but not promoted everywhere: finish it (test, promote) — unless rollback.ts undid
  // the merge: then a pending value it had no time to discard is never promoted, and the
  // new rotation below (successorId of the rolled-back id, so a fresh id) replaces it.
  const rolledBack = lastId !== undefined && secret?.annotations[ANNOTATIONS.rolledBack] === lastId;
  if (lastId && !rolledBack && states.some((st) => st.pending?.rotationId === lastId)) {
    const values = await recoverValues(target, staged, states, lastId);
    return finish(target, deps, base, { rotationId: lastId, values, secret: secret!, staged, from: "test" });
  }

  // Staged but not merged: merge the same password, then test and promote.
  const nextId = successorId(target.namespace, target.secretName, lastId);
  if (states.some((st) => st.pending?.rotationId === nextId)) {
    const values = await recoverValues(target, staged, states, nextId);
    return complete(target, deps, base, { rotationId: nextId, values, secret, staged, states, now, resumed: true });
  }

  const due = dueCheck(es, secret, now);
  if (!due.due && !options.force) {
    return {
      ...base,
      outcome: "not-due",
      reason: due.reason,
      ...(due.nextDue ? { nextDue: due.nextDue.toISOString() } : {}),
      ...(lastId ? { rotationId: lastId } : {}),
      ...(previousFingerprint ? { fingerprint: previousFingerprint } : {}),
    };
  }
  const values = generateValues(es);
  return complete(target, deps, base, { rotationId: nextId, values, secret, staged, states, now, resumed: false });
}

function missing(target: RotationTarget): SecretMissingError {
  return new SecretMissingError(
    `Secret ${targetName(target)} does not exist and creationPolicy Merge never creates it; nothing was written ` +
      `(create the CNPG Cluster first, or use creationPolicy: CreateOrMerge)`,
  );
}

/** stage → merge, then test → promote. */
async function complete(
  target: RotationTarget,
  deps: RotationDeps,
  base: { target: string; externalSecret: string },
  run: {
    rotationId: string;
    values: Record<string, string>;
    secret: SecretObject | undefined;
    staged: Staged[];
    states: StoreView[];
    now: Date;
    resumed: boolean;
  },
): Promise<RotationResult> {
  const es = target.externalSecret;
  const { rotationId, values, staged } = run;

  // A remote secret we have never written gets the Secret as it is now as its
  // current value first: consumers then read a password the database accepts,
  // never the staged one (AWS would otherwise make a first version current).
  await Promise.all(
    staged.map(async (s, i) => {
      if (run.secret && !run.states[i]!.current && !run.states[i]!.pending) {
        const value = remoteValue(s.publication, run.secret.data, undefined);
        const pushed = await s.store.push(s.publication.remoteKey, value, { seen: run.states[i]!.seen });
        run.states[i] = {
          current:
            pushed.versionId !== undefined
              ? { versionId: pushed.versionId, value }
              : await s.store.getCurrent(s.publication.remoteKey),
          seen: await s.store.observe(s.publication.remoteKey),
        };
      }
    }),
  );

  // stage: the value each store will hold once the Secret has changed.
  const rendered = renderTarget(es, values, run.secret?.data);
  const after = { ...run.secret?.data, ...rendered.data };
  await Promise.all(
    staged.map(async (s, i) => {
      const value = remoteValue(s.publication, after, await currentValueFor(s, run.states[i]!));
      const seen = run.states[i]!.seen;
      s.version = await s.store.stage(s.publication.remoteKey, value, rotationId, seen);
      s.seen = { ...seen, exists: true, owned: true, pending: { versionId: s.version.versionId, rotationId } };
    }),
  );
  await deps.afterStep?.("stage", target);

  // merge: only the rendered keys, labels and our annotations; re-rendered on a conflicting write.
  const password = rendered.data.password ?? values.password;
  let last: RenderedTarget = rendered;
  const merged = await deps.kube.updateSecret(
    target.namespace,
    target.secretName,
    (current) => {
      if (current.annotations[ANNOTATIONS.rotationId] === rotationId) return undefined;
      last = renderTarget(es, values, current.data);
      return {
        data: last.data,
        labels: { ...last.labels },
        annotations: {
          ...last.annotations,
          [ANNOTATIONS.rotationId]: rotationId,
          [ANNOTATIONS.rotatedAt]: run.now.toISOString(),
          [ANNOTATIONS.externalSecret]: base.externalSecret,
          [ANNOTATIONS.store]: staged.map((s) => storeLabel(s)).join(", "),
          [ANNOTATIONS.storeVersion]: staged.map((s) => s.version?.versionId ?? "").join(", "),
          [ANNOTATIONS.specHash]: es.specHash,
          ...(password !== undefined ? { [ANNOTATIONS.fingerprint]: fingerprint(password) } : {}),
          // A new rotation supersedes the record of an earlier rollback.
          [ANNOTATIONS.rolledBack]: null,
          [ANNOTATIONS.rolledBackAt]: null,
        },
      };
    },
    {
      ...(run.secret ? { initial: run.secret } : {}),
      ...(es.target.creationPolicy === "CreateOrMerge"
        ? { create: { type: es.target.template?.type ?? "Opaque", labels: {} } }
        : {}),
    },
  );
  const changedKeys = Object.keys(last.data).filter((k) => run.secret?.data[k] !== last.data[k]);
  await deps.afterStep?.("merge", target);

  const result = await finish(target, deps, base, {
    rotationId,
    values,
    secret: merged.secret,
    staged,
    from: run.resumed ? "stage" : undefined,
  });
  const previous = run.secret?.data.password;
  return {
    ...result,
    ...(previous !== undefined ? { previousFingerprint: fingerprint(previous) } : {}),
    changedKeys,
    conflicts: merged.conflicts,
  };
}

/** test → promote, then make sure each store carries the Secret as it finally is. */
async function finish(
  target: RotationTarget,
  deps: RotationDeps,
  base: { target: string; externalSecret: string },
  run: {
    rotationId: string;
    values: Record<string, string>;
    secret: SecretObject;
    staged: Staged[];
    from: Step | undefined;
  },
): Promise<RotationResult> {
  const { rotationId, staged, secret } = run;
  if (deps.verify) {
    try {
      await deps.verify(secret, target);
    } catch (e) {
      // Still under the Lease: the caller may undo the merge before the failure is reported.
      await deps.onVerifyFailure?.(e, { secret, target, deps });
      throw e;
    }
  }
  await deps.afterStep?.("test", target);

  for (const s of staged) {
    s.version = await s.store.promote(s.publication.remoteKey, rotationId, s.seen ?? (await s.store.observe(s.publication.remoteKey)));
  }
  // A write to another key between stage and merge is in the Secret but not in
  // the staged value: publish the Secret as it is now, so the store never lags it.
  for (const s of staged) {
    const value = remoteValue(s.publication, secret.data, s.version?.value);
    if (s.version && value !== s.version.value) {
      const pushed = await s.store.push(s.publication.remoteKey, value);
      if (pushed.versionId) s.version = { versionId: pushed.versionId, value, rotationId };
    }
  }
  await deps.afterStep?.("promote", target);

  const password = secret.data.password;
  return {
    ...base,
    outcome: run.from ? "resumed" : "rotated",
    rotationId,
    ...(run.from ? { resumedAt: run.from } : {}),
    ...(password !== undefined ? { fingerprint: fingerprint(password) } : {}),
    stores: staged.map((s) => ({
      store: `${s.publication.store.kind}/${s.publication.store.metadata.name}`,
      provider: s.store.provider,
      remoteKey: s.publication.remoteKey,
      ...(s.version ? { versionId: s.version.versionId } : {}),
    })),
  };
}

/** The generated values of a rotation in flight, read back from what was staged (reading pending values `describe` left out). */
async function recoverValues(
  target: RotationTarget,
  staged: readonly Staged[],
  states: StoreView[],
  rotationId: string,
): Promise<Record<string, string>> {
  await Promise.all(
    staged.map(async (s, i) => {
      if (states[i]!.pending?.rotationId === rotationId && states[i]!.pending?.value === undefined) {
        states[i]!.pending = await s.store.getPending(s.publication.remoteKey);
      }
    }),
  );
  const view: Record<string, string> = {};
  staged.forEach((s, i) => {
    const version = states[i]!.pending;
    if (version?.rotationId === rotationId && version.value !== undefined) {
      Object.assign(view, readRemoteValue(s.publication, version.value));
    }
  });
  const values: Record<string, string> = {};
  for (const [generated, secretKey] of Object.entries(target.recoveryKeys)) {
    const v = view[secretKey];
    if (v === undefined) {
      throw new StoreStateError(
        `rotation ${rotationId} of ${targetName(target)} is in flight but no store holds its staged "${secretKey}"; ` +
          `resolve by hand (compare the stores with the Secret) before the next run`,
      );
    }
    values[generated] = v;
  }
  return values;
}

function storeLabel(s: Staged): string {
  return `${s.publication.store.kind}/${s.publication.store.metadata.name}(${s.store.provider}):${s.publication.remoteKey}`;
}

async function dryRun(
  target: RotationTarget,
  deps: RotationDeps,
  options: RotateOptions,
  base: { target: string; externalSecret: string },
): Promise<RotationResult> {
  const es = target.externalSecret;
  const secret = await deps.kube.readSecret(target.namespace, target.secretName);
  if (!secret && es.target.creationPolicy === "Merge") throw missing(target);
  const due = dueCheck(es, secret, deps.now?.() ?? new Date());
  const rendered = renderTarget(es, generateValues(es), secret?.data);
  const wouldRotate = due.due || options.force === true;
  return {
    ...base,
    outcome: "dry-run",
    reason: wouldRotate ? `would rotate (${options.force && !due.due ? "forced" : due.reason})` : `would not rotate: ${due.reason}`,
    ...(due.nextDue ? { nextDue: due.nextDue.toISOString() } : {}),
    rotationId: successorId(target.namespace, target.secretName, secret?.annotations[ANNOTATIONS.rotationId]),
    changedKeys: wouldRotate ? Object.keys(rendered.data) : [],
    ...(secret?.data.password !== undefined ? { previousFingerprint: fingerprint(secret.data.password) } : {}),
    stores: target.publications.map((p) => ({
      store: `${p.store.kind}/${p.store.metadata.name}`,
      provider: p.store.provider.name,
      remoteKey: p.remoteKey,
    })),
  };
}
