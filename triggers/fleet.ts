// The fleet's front end on AWS: the planner's schedule, and SQS batches for the rotate
// function (the Lambda event source mapping with ReportBatchItemFailures: the answer names
// the messages that failed, the queue deletes the others and delivers those again, up to
// its dead-letter queue). Event shapes stay here; lib/fleet/ knows no cloud.
import { InputError } from "../lib/errors.ts";
import { consumeBatch, type Delivered, type Fleet, failedMessage, fleetFromEnvironment, type MessageResult, rotateOne } from "../lib/fleet/fleet.ts";
import { type ClusterPlan, planAndEnqueue } from "../lib/fleet/plan.ts";
import { createLogger } from "../lib/log.ts";
import { sqsQueueFromEnvironment } from "../lib/queues/sqs.ts";
import type { WorkQueue } from "../lib/queues/types.ts";
import { redactDeep, redactError } from "../lib/redact.ts";
import type { RotationResult } from "../lib/rotation/rotate.ts";

let cached: Fleet | undefined; // reused while the function instance stays warm
let queue: WorkQueue | undefined;

/** The warm fleet, loaded and checked at the first call (an InputError then is bad manifests: nothing runs). */
export function fleet(): Fleet {
  cached ??= fleetFromEnvironment({ log: createLogger() });
  return cached;
}

/** For tests and the bench: forget the warm fleet and queue (e.g. after changing the environment). */
export async function resetFleet(replacement?: { fleet?: Fleet; queue?: WorkQueue }): Promise<void> {
  const old = cached;
  cached = replacement?.fleet;
  queue = replacement?.queue;
  if (old && old !== cached) await old.close();
}

// --- SQS → rotate ----------------------------------------------------------------

export interface SqsBatchResponse {
  readonly batchItemFailures: readonly { readonly itemIdentifier: string }[];
}

/** The fields of an SQS event we read. */
export interface SqsEvent {
  readonly Records: readonly { readonly eventSource: "aws:sqs"; readonly messageId: string; readonly body: string }[];
}

/** An SQS event as the Lambda event source mapping delivers it. */
export function isSqsEvent(event: unknown): event is SqsEvent {
  if (!event || typeof event !== "object" || !Array.isArray((event as { Records?: unknown }).Records)) return false;
  const records = (event as { Records: unknown[] }).Records;
  return records.length > 0 && records.every((r) => (r as { eventSource?: unknown })?.eventSource === "aws:sqs");
}

/** The records of an SQS event; a record without a messageId or body cannot be answered for, so the batch is refused. */
export function sqsRecords(event: unknown): Delivered[] {
  if (!isSqsEvent(event)) throw new InputError('SQS event: expected {"Records": [...]} with eventSource "aws:sqs"');
  return (event.Records as readonly Record<string, unknown>[]).map((r, i) => {
    if (typeof r.messageId !== "string" || r.messageId === "") throw new InputError(`SQS event: Records[${i}].messageId: expected a string`);
    if (typeof r.body !== "string") throw new InputError(`SQS event: Records[${i}].body: expected a string`);
    return { id: r.messageId, body: r.body };
  });
}

/**
 * One SQS batch: each message's target rotated (lib/fleet/fleet.ts), the failed ones named in
 * the partial batch response. Manifests that do not load fail every message (each then reaches
 * the DLQ with the error in the log): nothing is written.
 */
export async function consumeSqs(event: unknown): Promise<SqsBatchResponse & { results: readonly MessageResult[] }> {
  const records = sqsRecords(event);
  let results: MessageResult[];
  try {
    results = await consumeBatch(fleet(), records);
  } catch (e) {
    const error = redactError(e instanceof Error ? e : new Error(String(e)));
    createLogger().error({ error: { type: error.name, message: error.message } }, "batch refused");
    results = records.map((r) => ({ id: r.id, outcome: "failed", error: { type: error.name, message: error.message } }));
  }
  return redactDeep({
    batchItemFailures: results.filter(failedMessage).map((r) => ({ itemIdentifier: r.id })),
    results,
  });
}

// --- the planner's schedule -------------------------------------------------------

export interface PlanResponse {
  readonly ok: boolean;
  readonly clusters: readonly ClusterPlan[];
  readonly enqueued: number;
  readonly error?: { readonly type: string; readonly message: string };
}

/**
 * Any event (the schedule's, or a manual `{}`): plan every cluster and send one message per due
 * target. A cluster that cannot be listed is reported and left to the next schedule; bad input
 * (manifests, clusters, the queue's URL) is answered, with nothing sent.
 */
export async function invokePlan(_event: unknown): Promise<PlanResponse> {
  try {
    queue ??= sqsQueueFromEnvironment();
    const plan = await planAndEnqueue(fleet(), queue);
    return redactDeep({ ok: plan.clusters.every((c) => !c.error), clusters: plan.clusters, enqueued: plan.messages.length });
  } catch (e) {
    if (e instanceof InputError) return { ok: false, clusters: [], enqueued: 0, error: { type: e.name, message: e.message } };
    throw redactError(e);
  }
}

// --- manual runs naming a cluster -------------------------------------------------

/** `{"cluster": "east", "target": "ns/name", "force", "dryRun"}`: those targets of that cluster, now. */
export async function rotateInCluster(
  cluster: string,
  request: { readonly targets?: readonly string[]; readonly force?: boolean; readonly dryRun?: boolean },
): Promise<RotationResult[]> {
  if (!request.targets?.length) {
    throw new InputError("event.cluster: name the targets too (target or targets); the planner's schedule rotates every due one");
  }
  const f = fleet();
  const results: RotationResult[] = [];
  for (const target of request.targets) {
    results.push(
      await rotateOne(f, {
        cluster,
        target,
        ...(request.force !== undefined ? { force: request.force } : {}),
        ...(request.dryRun !== undefined ? { dryRun: request.dryRun } : {}),
      }),
    );
  }
  return results;
}
