// One target's rotation (or rollback) under its Lease: observe → decide → act, repeated until
// decide.ts says done. Every write is fenced (act.ts); a write that finds the world moved on
// means observe again and decide again. A run that loses its Lease stops before its next write.
import { setTimeout as sleep } from "node:timers/promises";
import {
  ConflictError,
  InputError,
  LeaseLostError,
  OwnershipError,
  PermissionError,
  RotatorError,
  SecretMissingError,
  StoreStateError,
} from "../errors.ts";
import type { KubernetesClient, SecretObject } from "../kubernetes/index.ts";
import type { Logger } from "../log.ts";
import type { SecretStoreClient } from "../stores/types.ts";
import { rememberSecret } from "../redact.ts";
import { act, observe, observeRoles, observeStores, rememberSecretsOf, type Run, type Verifier } from "./act.ts";
import { appliedSignal, checkAlternatingCluster, waitApplied } from "./applied.ts";
import { type Done, decide, type Intent, newProgress, type Observation, type Refusal, type StepKind } from "./decide.ts";
import { dueCheck, lastRotationOf, successorId } from "./names.ts";
import { type Publication, type RotationTarget, remoteValue, targetName } from "./plan.ts";
import { fingerprint, generateValues, renderTarget } from "./render.ts";

export type { StepKind as Step } from "./decide.ts";

export interface RotationDeps {
  readonly kube: KubernetesClient;
  /** A client for a publication's store (the engine builds and caches them). */
  readonly storeFor: (publication: Publication) => Promise<SecretStoreClient>;
  /** Who holds the Lease: one id per invocation. */
  readonly holder: string;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Logs in with the new credentials (SPEC §5 test step); a VerificationError stops the rotation before promote. */
  readonly verify?: Verifier;
  /** After a failed test, put the store's current password back into the Secret (default false: the next run tests again). */
  readonly rollbackOnVerifyFailure?: boolean;
  /** Called after each step; tests use it to simulate a crash at a step boundary. */
  readonly afterStep?: (step: StepKind, target: RotationTarget) => void | Promise<void>;
  /** How long CNPG gets to report a password applied in its Cluster status (default 120 s). */
  readonly applyTimeoutMs?: number;
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
  readonly resumedAt?: StepKind;
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

/** Conflicting writes tolerated in one run before it gives up (each one means: observe again). */
const MAX_CONFLICTS = 6;
/** Steps one run may take; the table settles in far fewer, so more means a bug, not a busy target. */
const MAX_STEPS = 64;

/** Runs (or resumes) the rotation of one target under its Lease. */
export async function rotateTarget(target: RotationTarget, deps: RotationDeps, options: RotateOptions = {}): Promise<RotationResult> {
  const base = baseOf(target);
  const log = deps.log.child({ target: base.target });
  if (options.dryRun) {
    const { secret, rendered } = await prepare(target, deps);
    return dryRun(target, deps, options, secret, rendered);
  }
  // Prepared between the Lease's GET and its write (acquireLease's beforeTake): the Secret read
  // there is as good as one read under the Lease — the write goes ahead only if no other run took
  // the Lease meanwhile — so the run decides on it without reading it again. Reading it before
  // the Lease would not do: it may predate a rotation another run merged while it held the Lease,
  // and a stage or a publish is fenced on the stores alone, so a run deciding on it would rotate
  // that rotation's id again or push its old data over a newer one.
  let prepared: Prepared | undefined;
  const outcome = await underLease(
    target,
    deps,
    options.leaseSeconds,
    log,
    async (guard) => {
      if (!prepared) throw new RotatorError(`${targetName(target)}: the Lease was taken without preparing the run first; this is a bug, please report it`);
      const { secret, roles, freshValues, stores } = prepared;
      const obs: Observation = { secret, stores: await observeStores({ target, stores }), ...(roles ? { roles } : {}) };
      const now = deps.now?.() ?? new Date();
      const intent: Intent = { mode: "rotate", force: options.force === true, rollbackOnFailure: deps.rollbackOnVerifyFailure === true, now };
      const run: Run = {
        target,
        kube: deps.kube,
        stores,
        ...(deps.verify ? { verify: deps.verify } : {}),
        waitApplied: appliedWaiter(target, deps, obs.secret, log),
        now,
        freshValues,
        obs,
        progress: newProgress(stores.length),
      };
      try {
        const { done, conflicts } = await settle(run, intent, deps, guard, log);
        return toResult(run, done, conflicts, obs.secret?.data.password);
      } catch (e) {
        const failed = run.verificationError;
        if (!failed || e === failed) throw e;
        // The test failed and undoing it failed too: report the test; the next run tests again.
        const err = e instanceof Error ? e : new Error(String(e));
        log.error(
          { rotationId: failed.rotationId, error: { type: err.name, message: err.message } },
          "verification failed and the rollback failed too; the next run tests the rotation again",
        );
        throw failed;
      }
    },
    async () => {
      const p = await prepare(target, deps);
      prepared = { ...p, stores: await Promise.all(target.publications.map((pub) => deps.storeFor(pub))) };
    },
  );
  if (outcome === undefined) {
    log.info({ outcome: "locked" }, "another run holds the lease for this target");
    return { ...base, outcome: "locked", reason: "another run is rotating this Secret" };
  }
  log.info(
    { outcome: outcome.outcome, rotationId: outcome.rotationId, fingerprint: outcome.fingerprint, resumedAt: outcome.resumedAt, reason: outcome.reason },
    "rotation finished",
  );
  return outcome;
}

interface Prepared {
  readonly secret: SecretObject | undefined;
  readonly roles: (SecretObject | undefined)[] | undefined;
  readonly freshValues: Record<string, string>;
  readonly stores: SecretStoreClient[];
}

/**
 * Everything that can refuse the input, before the first write (the Lease's included): the
 * Secret (and, alternating, the roles' Secrets and the Cluster) read, the values of a new
 * rotation generated, rendered and read back, and each store's value of them.
 */
async function prepare(target: RotationTarget, deps: RotationDeps) {
  const es = target.externalSecret;
  const secret = await deps.kube.readSecret(target.namespace, target.secretName);
  if (!secret && es.target.creationPolicy === "Merge") throw missing(target);
  const freshValues = generateValues(es);
  rememberSecret(...Object.values(freshValues));
  rememberSecretsOf(target, secret);
  const strategy = target.strategy;
  const roles = await observeRoles({ target, kube: deps.kube });
  rememberSecretsOf(target, ...(roles ?? []));
  if (strategy.kind === "alternating") {
    const missingRole = strategy.roles.find((_, i) => !roles?.[i]);
    if (missingRole) {
      throw new InputError(
        `role ${missingRole.role}'s passwordSecret ${target.namespace}/${missingRole.secretName} does not exist; create it (type kubernetes.io/basic-auth, username ${missingRole.role}) as the Cluster's spec.managed.roles names it; nothing was written`,
      );
    }
    checkAlternatingCluster(await deps.kube.readCluster(target.namespace, strategy.cluster), target.namespace, strategy.cluster, strategy.roles);
  }
  const idle = idleRole(target, secret);
  const rendered = renderTarget(es, freshValues, secret?.data, idle ? { user: idle } : {});
  const binary = (secret?.binaryKeys ?? []).filter((k) => !(k in rendered.data));
  for (const p of target.publications) remoteValue(p, { ...secret?.data, ...rendered.data }, undefined, binary);
  return { secret, roles, freshValues, rendered: rendered.data };
}

/**
 * Takes the target's Lease (running `beforeTake` between its GET and its write, see
 * acquireLease), runs `body` with a guard that throws LeaseLostError once the Lease is lost or
 * about to lapse, keeps the Lease renewed meanwhile, releases it. Undefined when another run
 * holds it.
 */
export async function underLease<T>(
  target: RotationTarget,
  deps: Pick<RotationDeps, "kube" | "holder">,
  leaseSeconds: number | undefined,
  log: Logger,
  body: (guard: (step: string) => void) => Promise<T>,
  beforeTake?: () => Promise<void>,
): Promise<T | undefined> {
  const ttl = leaseSeconds ?? 60;
  const lease = await deps.kube.acquireLease(target.namespace, target.secretName, deps.holder, ttl, beforeTake);
  if (!lease) return undefined;
  let lost = false;
  let released = false;
  // A verified rotation may wait on CNPG for longer than the Lease lives: keep it renewed.
  const renewal = setInterval(() => {
    lease.renew().then(
      (held) => {
        if (!held && !released) {
          lost = true;
          log.warn({}, "lost the lease while rotating");
        }
      },
      (e: unknown) => log.warn({ error: (e as Error).message }, "could not renew the lease"),
    );
  }, (ttl * 1000) / 3);
  renewal.unref();
  // Stop writing while there is still time for one write to land before the Lease lapses.
  const margin = Math.min(5_000, (ttl * 1000) / 4);
  const guard = (step: string) => {
    if (lost || lease.expiresAt.getTime() - Date.now() < margin) {
      throw new LeaseLostError(
        `${targetName(target)}: this run no longer holds Lease ${lease.namespace}/${lease.name} (${lost ? "taken over" : "renewals failed"}); ` +
          `stopped before ${step}, so a newer run is never overwritten; the next run continues from what is there`,
      );
    }
  };
  let refused = false;
  try {
    return await body(guard);
  } catch (e) {
    refused = e instanceof InputError;
    throw e;
  } finally {
    clearInterval(renewal);
    released = true;
    // Bad input found only under the Lease (the Secret changed since the checks before it, a
    // store refusing a name): the Lease goes back as found, so an exit 2 leaves it unchanged too.
    await (refused ? lease.restore() : lease.release()).catch((e: unknown) =>
      log.warn({ error: (e as Error).message }, "could not release the lease"),
    );
  }
}

/** Alternating: the role a new rotation switches the consumer Secret to (the one it does not name now). */
function idleRole(target: RotationTarget, consumer: SecretObject | undefined): string | undefined {
  if (target.strategy.kind !== "alternating") return undefined;
  const [a, b] = target.strategy.roles;
  return consumer?.data.username === a.role ? b.role : a.role;
}

/**
 * The wait before a test step. Alternating: on the Cluster the ExternalSecret names, always.
 * Single-user: on the Cluster the annotation or the Secret's `cnpg.io/cluster` label names, when
 * it can be read and it reads this Secret; otherwise the test's login retries are the wait.
 */
function appliedWaiter(target: RotationTarget, deps: RotationDeps, secret: SecretObject | undefined, log: Logger) {
  const timeoutMs = deps.applyTimeoutMs ?? 120_000;
  if (target.strategy.kind === "alternating") {
    const cluster = target.strategy.cluster;
    return (s: SecretObject) => waitApplied(deps.kube, cluster, s, { timeoutMs, log });
  }
  const cluster = target.strategy.cluster ?? secret?.labels["cnpg.io/cluster"];
  if (!cluster) return undefined;
  return async (s: SecretObject) => {
    let found: Awaited<ReturnType<KubernetesClient["readCluster"]>>;
    try {
      found = await deps.kube.readCluster(s.namespace, cluster);
    } catch (e) {
      if (!(e instanceof PermissionError)) throw e;
      log.debug({ cluster }, "cannot read the Cluster (no get on clusters.postgresql.cnpg.io): the login retries are the wait");
      return;
    }
    if (!found || !appliedSignal(found, s.name)) return;
    await waitApplied(deps.kube, cluster, s, { timeoutMs, log });
  };
}

/** Observe → decide → act until decide says done; a refusal becomes its typed error. */
export async function settle(
  run: Run,
  intent: Intent,
  deps: Pick<RotationDeps, "afterStep">,
  guard: (step: string) => void,
  log: Logger,
): Promise<{ done: Done; conflicts: number }> {
  let conflicts = 0;
  for (let steps = 0; ; steps++) {
    const step = decide(run.target, run.obs, run.progress, intent);
    if (step.kind === "refuse") throw refusal(step);
    if (step.kind === "done") return { done: step, conflicts };
    if (steps >= MAX_STEPS) {
      throw new RotatorError(`${targetName(run.target)}: the protocol did not settle in ${MAX_STEPS} steps (next: ${step.kind}); this is a bug, please report it`);
    }
    guard(step.kind);
    try {
      await act(run, step);
    } catch (e) {
      if (!(e instanceof ConflictError)) throw e;
      conflicts++;
      if (conflicts > MAX_CONFLICTS) {
        throw new ConflictError(
          `${targetName(run.target)}: gave up after ${conflicts} conflicting writes in a row (last: ${e.message}); ${written(run)}`,
        );
      }
      log.info({ step: step.kind, conflicts, reason: e.message }, "the target changed since it was observed; observing again");
      await sleep(Math.min(1000, 25 * 2 ** (conflicts - 1)) * (0.5 + Math.random()));
      run.obs = await observe(run);
      continue;
    }
    run.progress.acted.push(step.kind);
    await deps.afterStep?.(step.kind, run.target);
  }
}

const READS: ReadonlySet<StepKind> = new Set(["recover", "read-current", "read-previous", "test"]);

/** What this run wrote so far, for an error that stops it. */
function written(run: Run): string {
  const writes = run.progress.acted.filter((k) => !READS.has(k));
  if (writes.length === 0) return "nothing was written";
  const id = run.progress.rotationId;
  return `written so far: ${[...new Set(writes)].join(", ")}${id ? ` of rotation ${id}` : ""}; the next run resumes from there`;
}

function refusal(step: Refusal): Error {
  switch (step.error) {
    case "SecretMissingError":
      return new SecretMissingError(step.message);
    case "OwnershipError":
      return new OwnershipError(step.message);
    case "StoreStateError":
      return new StoreStateError(step.message);
    case "InputError":
      return new InputError(step.message);
  }
}

function toResult(run: Run, done: Done, conflicts: number, previousPassword: string | undefined): RotationResult {
  const { target, progress } = run;
  const base = baseOf(target);
  const password = run.obs.secret?.data.password;
  const fp = password !== undefined ? { fingerprint: fingerprint(password) } : {};
  switch (done.outcome) {
    case "not-due":
      return {
        ...base,
        outcome: "not-due",
        ...(done.reason ? { reason: done.reason } : {}),
        ...(done.nextDue ? { nextDue: done.nextDue.toISOString() } : {}),
        ...(done.rotationId ? { rotationId: done.rotationId } : {}),
        ...fp,
      };
    case "verification-failed": {
      const error = run.verificationError!;
      error.rolledBack = progress.acted.some((k) => k === "restore" || k === "restore-role" || k === "mark-rolled-back");
      throw error;
    }
    case "rotated":
    case "resumed": {
      const first = progress.acted.find((k) => !READS.has(k) || k === "test");
      const merged = run.changedKeys !== undefined;
      return {
        ...base,
        outcome: done.outcome,
        ...(done.rotationId ? { rotationId: done.rotationId } : {}),
        ...(done.outcome === "resumed" && first ? { resumedAt: first } : {}),
        ...fp,
        ...(merged && previousPassword !== undefined ? { previousFingerprint: fingerprint(previousPassword) } : {}),
        ...(merged ? { changedKeys: run.changedKeys, conflicts } : {}),
        stores: storeReports(run),
      };
    }
    default:
      throw new RotatorError(`rotation ended as "${done.outcome}", which only a rollback ends as`);
  }
}

export function storeReports(run: Run): StoreVersionReport[] {
  return run.target.publications.map((p, i) => {
    const versionId = run.progress.promoted[i]?.versionId ?? run.obs.stores[i]?.current?.versionId;
    return {
      store: `${p.store.kind}/${p.store.metadata.name}`,
      provider: run.stores[i]!.provider,
      remoteKey: p.remoteKey,
      ...(versionId ? { versionId } : {}),
    };
  });
}

export function baseOf(t: RotationTarget): { target: string; externalSecret: string } {
  return { target: targetName(t), externalSecret: `${t.externalSecret.metadata.namespace}/${t.externalSecret.metadata.name}` };
}

function missing(target: RotationTarget): SecretMissingError {
  return new SecretMissingError(
    `Secret ${targetName(target)} does not exist and creationPolicy Merge never creates it; nothing was written ` +
      `(create the CNPG Cluster first, or use creationPolicy: CreateOrMerge)`,
  );
}

function dryRun(
  target: RotationTarget,
  deps: RotationDeps,
  options: RotateOptions,
  secret: SecretObject | undefined,
  rendered: Readonly<Record<string, string>>,
): RotationResult {
  const due = dueCheck(target.externalSecret, secret, deps.now?.() ?? new Date());
  const wouldRotate = due.due || options.force === true;
  return {
    ...baseOf(target),
    outcome: "dry-run",
    reason: wouldRotate ? `would rotate (${options.force && !due.due ? "forced" : due.reason})` : `would not rotate: ${due.reason}`,
    ...(due.nextDue ? { nextDue: due.nextDue.toISOString() } : {}),
    rotationId: successorId(
      target.namespace,
      target.secretName,
      secret?.uid ?? "",
      lastRotationOf(secret),
      target.strategy.kind === "alternating" ? "alternating" : "single-user",
    ),
    changedKeys: wouldRotate ? Object.keys(rendered) : [],
    ...(secret?.data.password !== undefined ? { previousFingerprint: fingerprint(secret.data.password) } : {}),
    stores: target.publications.map((p) => ({ store: `${p.store.kind}/${p.store.metadata.name}`, provider: p.store.provider.name, remoteKey: p.remoteKey })),
  };
}

