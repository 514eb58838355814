// What every cloud handler does with a request once it has unwrapped its
// cloud's event: build (or reuse) the engine, run, and answer in one shape.
// Handlers stay thin; the response is the same JSON on AWS, GCP and Azure.
import { InputError } from "../lib/errors.ts";
import { redactDeep, redactError } from "../lib/redact.ts";
import { engineFromEnvironment } from "../lib/rotation/context.ts";
import { type Engine, rotate } from "../lib/rotation/engine.ts";
import { type PushReport, push } from "../lib/rotation/push.ts";
import { pushInCluster, pushOtherClusters, rotateInCluster, statusInCluster } from "./fleet.ts";
import { type ParsedRequest, parseRotateRequest } from "./request.ts";
import type { RotationResult } from "../lib/rotation/rotate.ts";
import { type Status, status } from "../lib/rotation/status.ts";

export interface InvocationResponse<R> {
  readonly ok: boolean;
  readonly trigger?: "schedule" | "manual";
  readonly results: readonly R[];
  readonly error?: { readonly type: string; readonly message: string };
}

export type RotateResponse = InvocationResponse<RotationResult>;
export type PushResponse = InvocationResponse<PushReport>;
export type StatusResponse = InvocationResponse<Status>;

/** A scheduled run whose targets failed: thrown so the platform retries (each step is safe to re-run). */
export class ScheduledRunFailed extends Error {
  override name = "ScheduledRunFailed";
}

let cached: Promise<Engine> | undefined; // reused while the function instance stays warm

function engine(): Promise<Engine> {
  cached ??= engineFromEnvironment().catch((e: unknown) => {
    cached = undefined; // a failed cold start is retried by the next invocation
    throw e;
  });
  return cached;
}

/** For tests: forget the warm engine (e.g. after changing the environment). */
export function resetEngine(): void {
  cached = undefined;
}

/**
 * The one secret boundary for every cloud front end: whatever an invocation answers or throws
 * passes lib/redact.ts, which knows every value this process handled, in every encoding.
 */
async function bounded<T>(answer: () => Promise<T>): Promise<T> {
  try {
    return redactDeep(await answer());
  } catch (e) {
    throw redactError(e);
  }
}

/** Runs a request; the single-cluster engine is built only when asked for (a fleet's manual run needs none). */
type Run<R> = (engine: () => Promise<Engine>, request: Omit<ParsedRequest, "trigger">) => Promise<R[]>;

function invoke<R extends { outcome: string; error?: { type: string } }>(
  event: unknown,
  run: Run<R>,
  describe: (r: R) => string,
): Promise<InvocationResponse<R>> {
  return bounded(() => answer(event, run, describe));
}

async function answer<R extends { outcome: string; error?: { type: string } }>(
  event: unknown,
  run: Run<R>,
  describe: (r: R) => string,
): Promise<InvocationResponse<R>> {
  let trigger: "schedule" | "manual" | undefined;
  try {
    const { trigger: t, ...request } = parseRotateRequest(event);
    trigger = t;
    const results = await run(engine, request);
    const failed = results.filter((r) => r.outcome === "failed");
    if (trigger === "schedule" && failed.length > 0) {
      throw new ScheduledRunFailed(`${failed.length} of ${results.length} failed: ${failed.map(describe).join(", ")}`);
    }
    return { ok: failed.length === 0, trigger, results };
  } catch (e) {
    // Bad input never retries into success: answer it instead of throwing.
    if (e instanceof InputError) {
      return { ok: false, ...(trigger ? { trigger } : {}), results: [], error: { type: e.name, message: e.message } };
    }
    throw e;
  }
}

/** Rotate: a scheduled event (`detail.target` optional) or a manual `{"target", "force", "dryRun"}`. */
export function invokeRotate(event: unknown): Promise<RotateResponse> {
  return invoke(
    event,
    async (e, { cluster, ...request }) => (cluster !== undefined ? rotateInCluster(cluster, request) : rotate(await e(), request)),
    (r) => `${r.target} (${r.error?.type})`,
  );
}

/** Push: a scheduled event or a manual `{"target": "<namespace>/<PushSecret>", "dryRun"}` (with `cluster`: that cluster's). */
export function invokePush(event: unknown): Promise<PushResponse> {
  return invoke(
    event,
    async (e, { cluster, ...request }) => {
      if (request.force !== undefined) throw new InputError("event.force: not a push option (a push always compares first)");
      if (cluster !== undefined) return pushInCluster(cluster, request);
      const engine = await e();
      const results = await push(engine, request);
      // A run of every PushSecret (the schedule's) covers the fleet's other clusters too, each with its own connection.
      return engine.manifests.clusters.length > 0 && !request.targets?.length ? [...results, ...(await pushOtherClusters(request))] : results;
    },
    (r) => `${r.remoteKey} (${r.error?.type})`,
  );
}

/** Status: `{"target": "<namespace>/<name>"}` of an ExternalSecret, PushSecret or target Secret, or all; with `cluster`, target Secrets of that cluster. Read-only. */
export function invokeStatus(event: unknown): Promise<StatusResponse> {
  return bounded(() => statusOf(event));
}

async function statusOf(event: unknown): Promise<StatusResponse> {
  try {
    const { targets, force, dryRun, cluster } = parseRotateRequest(event);
    if (force !== undefined || dryRun !== undefined) throw new InputError("event: status takes only target or targets (and cluster)");
    const results = cluster !== undefined ? await statusInCluster(cluster, targets) : await status(await engine(), targets ? { targets } : {});
    return { ok: results.every((r) => r.ready), results };
  } catch (e) {
    if (e instanceof InputError) return { ok: false, results: [], error: { type: e.name, message: e.message } };
    throw e;
  }
}
