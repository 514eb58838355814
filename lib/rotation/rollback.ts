// Undoing a rotation that was merged into the Secret but never promoted (its test failed): the
// rollback rows of decide.ts, run under the target's Lease like a rotation. The stores' current
// values — still the old password, since nothing was promoted — are rendered back into the
// Secret (annotation `rolled-back: <id>`, so the next run starts a new rotation with a new id),
// the pending value is discarded everywhere, and a store lagging the Secret is published. Each
// step is safe to run again; a rollback stopped half way is finished by the next one.
import { observeStores, type Run } from "./act.ts";
import { newProgress, type StepKind } from "./decide.ts";
import { type Engine, forEachTarget, invocation, selectTargets } from "./engine.ts";
import type { RotationTarget } from "./plan.ts";
import { fingerprint } from "./render.ts";
import { baseOf, type RotationDeps, type StoreVersionReport, settle, storeReports, underLease } from "./rotate.ts";

export type RollbackOutcome = "rolled-back" | "nothing-to-roll-back" | "locked" | "failed";

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
  readonly stores?: readonly StoreVersionReport[];
  readonly error?: { readonly type: string; readonly message: string };
}

export interface RollbackRequest {
  /** Secrets as "namespace/name" (or "name" in default); all targets when absent. */
  readonly targets?: readonly string[];
  /** Lease time to live, seconds (default 60). */
  readonly leaseSeconds?: number;
  /** Called after each step; tests use it to simulate a crash. */
  readonly afterStep?: (step: StepKind, target: RotationTarget) => void | Promise<void>;
}

/** Rolls back, for each target named, the rotation merged into its Secret and not promoted. */
export async function rollback(engine: Engine, request: RollbackRequest = {}): Promise<RollbackResult[]> {
  const targets = selectTargets(engine.manifests, request.targets);
  const { deps, clients } = invocation(engine, "cnpg-rotator-rollback-", request.afterStep ? { afterStep: request.afterStep } : {});
  try {
    return await forEachTarget(
      engine,
      targets,
      deps.log,
      "rollback",
      (t) => rollbackTarget(t, deps, request.leaseSeconds),
      (t, _cause, error) => ({ ...baseOf(t), outcome: "failed", error }),
    );
  } finally {
    await clients.closeAll();
  }
}

/** Takes the target's Lease, then rolls back. */
export async function rollbackTarget(target: RotationTarget, deps: RotationDeps, leaseSeconds?: number): Promise<RollbackResult> {
  const log = deps.log.child({ target: baseOf(target).target });
  const stores = await Promise.all(target.publications.map((p) => deps.storeFor(p)));
  const result = await underLease(target, deps, leaseSeconds, log, async (guard) => {
    const run: Run = {
      target,
      kube: deps.kube,
      stores,
      now: deps.now?.() ?? new Date(),
      freshValues: {},
      obs: {
        secret: await deps.kube.readSecret(target.namespace, target.secretName),
        stores: await observeStores({ target, stores }),
      },
      progress: newProgress(stores.length),
    };
    const intent = { mode: "rollback", force: false, rollbackOnFailure: true, now: run.now } as const;
    const { done } = await settle(run, intent, deps, guard, log);
    const password = run.obs.secret?.data.password;
    return {
      ...baseOf(target),
      outcome: done.outcome === "rolled-back" ? "rolled-back" : "nothing-to-roll-back",
      ...(done.rotationId ? { rotationId: done.rotationId } : {}),
      ...(done.reason ? { reason: done.reason } : {}),
      ...(password !== undefined ? { fingerprint: fingerprint(password) } : {}),
      ...(done.outcome === "rolled-back" ? { stores: storeReports(run) } : {}),
    } satisfies RollbackResult;
  });
  if (!result) return { ...baseOf(target), outcome: "locked", reason: "another run holds this Secret's Lease" };
  log.info({ outcome: result.outcome, rotationId: result.rotationId, fingerprint: result.fingerprint, reason: result.reason }, "rollback finished");
  return result;
}
