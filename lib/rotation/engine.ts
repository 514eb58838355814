// The one entry point every front end (cloud handlers, CLI) calls: plan the
// rotations a set of manifests asks for, then run each under its Lease with
// bounded concurrency.
import { randomUUID } from "node:crypto";
import pLimit from "p-limit";
import { InputError, RotatorError, VerificationError } from "../errors.ts";
import { redactError } from "../redact.ts";
import type { KubernetesClient } from "../kubernetes/index.ts";
import type { Logger } from "../log.ts";
import type { ManifestSet } from "../manifests/index.ts";
import { planRotations, type RotationTarget, targetName } from "./plan.ts";
import { type StoreClients, type StoreFactory, storeClients } from "./stores.ts";

export type { StoreFactory };
import { type RotateOptions, type RotationDeps, type RotationResult, rotateTarget } from "./rotate.ts";

export interface RotateRequest extends RotateOptions {
  /** Secrets to rotate as "namespace/name" (or "name" in the default namespace); all when absent. */
  readonly targets?: readonly string[];
}


export interface Engine {
  readonly manifests: ManifestSet;
  readonly kube: KubernetesClient;
  readonly log: Logger;
  readonly createStore: StoreFactory;
  /** Targets rotated at once (default 8). */
  readonly concurrency?: number;
  readonly verify?: RotationDeps["verify"];
  /** After a failed test, undo the merge (the table's rollback rows); otherwise the next run tests again. */
  readonly rollbackOnVerifyFailure?: boolean;
  readonly afterStep?: RotationDeps["afterStep"];
  /** How long CNPG gets to report a password applied (default 120 s). */
  readonly applyTimeoutMs?: number;
  readonly now?: () => Date;
}

/** Picks the targets a request names; an unknown name is an InputError before anything runs. */
export function selectTargets(set: ManifestSet, names: readonly string[] | undefined): RotationTarget[] {
  const all = planRotations(set);
  if (!names || names.length === 0) return all;
  return names.map((name) => {
    const full = name.includes("/") ? name : `default/${name}`;
    const found = all.find((t) => targetName(t) === full);
    if (!found) {
      throw new InputError(
        `target "${name}": no ExternalSecret targets Secret ${full}; known targets: ${all.map(targetName).join(", ") || "none"}`,
      );
    }
    return found;
  });
}

/** What one invocation's targets share: a Lease holder of its own, its logger, its store clients (the caller closes them). */
export function invocation(engine: Engine, holderPrefix: string, extra: Partial<RotationDeps>): { deps: RotationDeps; clients: StoreClients } {
  const holder = `${holderPrefix}${randomUUID()}`;
  const clients = storeClients(engine);
  const log = engine.log.child({ invocation: holder });
  return { deps: { kube: engine.kube, holder, log, storeFor: clients.for, ...(engine.now ? { now: engine.now } : {}), ...extra }, clients };
}

export async function rotate(engine: Engine, request: RotateRequest = {}): Promise<RotationResult[]> {
  const targets = selectTargets(engine.manifests, request.targets);
  const { deps, clients } = invocation(engine, "cnpg-rotator-", {
    ...(engine.verify ? { verify: engine.verify } : {}),
    ...(engine.rollbackOnVerifyFailure ? { rollbackOnVerifyFailure: true } : {}),
    ...(engine.afterStep ? { afterStep: engine.afterStep } : {}),
    ...(engine.applyTimeoutMs !== undefined ? { applyTimeoutMs: engine.applyTimeoutMs } : {}),
  });
  try {
    return await forEachTarget(engine, targets, deps.log, "rotation", (t) => rotateTarget(t, deps, request), (t, e, error) => ({
      target: targetName(t),
      externalSecret: `${t.externalSecret.metadata.namespace}/${t.externalSecret.metadata.name}`,
      outcome: "failed",
      // A failed test names its rotation and whether its merge was undone (rollback.ts).
      ...(e instanceof VerificationError && e.rotationId ? { rotationId: e.rotationId } : {}),
      ...(e instanceof VerificationError ? { rolledBack: e.rolledBack } : {}),
      error,
    }));
  } finally {
    await clients.closeAll();
  }
}

/**
 * Runs `run` for each target, at most `engine.concurrency` at once. Bad input is the caller's
 * to see whole (rethrown); any other error becomes that target's `failed` result, logged by type
 * and message only.
 */
export async function forEachTarget<R>(
  engine: Pick<Engine, "concurrency">,
  targets: readonly RotationTarget[],
  log: Logger,
  what: string,
  run: (target: RotationTarget) => Promise<R>,
  failed: (target: RotationTarget, cause: unknown, error: { type: string; message: string }) => R,
): Promise<R[]> {
  const limit = pLimit(engine.concurrency ?? 8);
  return Promise.all(
    targets.map((t) =>
      limit(async () => {
        try {
          return await run(t);
        } catch (e) {
          if (e instanceof InputError) throw e;
          const error = redactError(e instanceof Error ? e : new Error(String(e)));
          const reported = { type: e instanceof RotatorError ? error.name : "Error", message: error.message };
          log.error({ target: targetName(t), error: { type: error.name, message: error.message } }, `${what} failed`);
          return failed(t, e, reported);
        }
      }),
    ),
  );
}
