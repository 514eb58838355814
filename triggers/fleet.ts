// The fleet's front ends: the planner's schedule (any cloud, given its queue), SQS batches for
// the AWS rotate function (the Lambda event source mapping with ReportBatchItemFailures: the
// answer names the messages that failed, the queue deletes the others and delivers those
// again, up to its dead-letter queue) and Pub/Sub pushes for the GCP one (one message per
// request, its status the ack). Event shapes stay here; lib/fleet/ knows no cloud.
import { InputError, RotatorError } from "../lib/errors.ts";
import {
  consumeBatch,
  type Delivered,
  type Fleet,
  failedMessage,
  fleetFromEnvironment,
  type MessageResult,
  pushClusters,
  pushInCluster as pushOne,
  rotateOne,
  statusOne,
} from "../lib/fleet/fleet.ts";
import { type ClusterPlan, planAndEnqueue } from "../lib/fleet/plan.ts";
import { createLogger } from "../lib/log.ts";
import type { WorkQueue } from "../lib/queues/types.ts";
import { redactDeep, redactError } from "../lib/redact.ts";
import type { PushReport, PushRequest } from "../lib/rotation/push.ts";
import type { RotationResult } from "../lib/rotation/rotate.ts";
import type { Status } from "../lib/rotation/status.ts";

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

// --- Pub/Sub push → rotate (GCP) ----------------------------------------------------

/** What a push subscription POSTs: one message, its data base64. */
export interface PubSubPush {
  readonly message: { readonly messageId: string; readonly data?: string; readonly attributes?: Record<string, string> };
  readonly subscription?: string;
}

/** The message of a push envelope; InputError when the request is not one (Pub/Sub always sends messageId). */
export function pubSubPushMessage(body: unknown): Delivered {
  let value = body;
  if (typeof value === "string" || Buffer.isBuffer(value)) {
    try {
      value = JSON.parse(value.toString());
    } catch {
      throw new InputError('Pub/Sub push: expected a JSON envelope {"message": {"messageId", "data"}, "subscription"}, found a body that is not JSON');
    }
  }
  const message = (value as { message?: unknown } | null)?.message as Record<string, unknown> | undefined;
  if (!message || typeof message !== "object") throw new InputError('Pub/Sub push: expected {"message": {...}, "subscription"}, found no message');
  if (typeof message.messageId !== "string" || message.messageId === "") throw new InputError("Pub/Sub push: message.messageId: expected a string");
  if (message.data !== undefined && typeof message.data !== "string") throw new InputError(`Pub/Sub push ${message.messageId}: message.data: expected base64 text`);
  return { id: message.messageId, body: Buffer.from((message.data as string | undefined) ?? "", "base64").toString("utf8") };
}

export interface PushAnswer {
  /** 2xx acknowledges the message; anything else is a nack, and Pub/Sub delivers it again (up to the dead-letter topic). */
  readonly status: number;
  readonly body: MessageResult | { readonly outcome: "refused"; readonly error: { readonly type: string; readonly message: string } };
}

/**
 * One pushed message, one rotation. Rotated, not due, or held by another run: 200 (ack). Failed: 500, so Pub/Sub
 * redelivers with its retry policy's backoff and, after the subscription's max delivery attempts, forwards it to the
 * dead-letter topic. A message that is not one of ours (malformed): 200 with outcome `malformed` and an error line in the
 * log: it would never become valid, so it is acknowledged, not retried. A request that is not a push envelope: 400.
 */
export async function consumePubSubPush(body: unknown): Promise<PushAnswer> {
  let delivered: Delivered;
  try {
    delivered = pubSubPushMessage(body);
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    createLogger().error({ error: { type: e.name, message: e.message } }, "push request refused");
    return { status: 400, body: { outcome: "refused", error: { type: e.name, message: e.message } } };
  }
  let result: MessageResult;
  try {
    [result] = (await consumeBatch(fleet(), [delivered])) as [MessageResult];
  } catch (e) {
    const error = redactError(e instanceof Error ? e : new Error(String(e)));
    createLogger().error({ messageId: delivered.id, error: { type: error.name, message: error.message } }, "message refused");
    result = { id: delivered.id, outcome: "failed", error: { type: error.name, message: error.message } };
  }
  return redactDeep({ status: result.outcome === "failed" ? 500 : 200, body: result });
}

// --- Storage Queue → rotate (Azure) ------------------------------------------------

/** A failed rotation of one queue message: thrown, so the Functions host makes it visible again (then `<queue>-poison`). */
export class QueueMessageFailed extends RotatorError {
  override name = "QueueMessageFailed";
}

/**
 * One message of the storageQueue trigger (the host has decoded its base64: text, or JSON already parsed), `id` its
 * messageId from the trigger's metadata. Rotated, not due or locked: returns (the host deletes it). Failed: throws
 * QueueMessageFailed, so the host retries it and, after host.json's maxDequeueCount, moves it to `<queue>-poison`.
 * Malformed: returns, with an error line in the log (as on GCP: it would never become valid).
 */
export async function consumeQueueItem(item: unknown, id: string): Promise<MessageResult> {
  const body = typeof item === "string" ? item : Buffer.isBuffer(item) ? item.toString("utf8") : JSON.stringify(item ?? null);
  let result: MessageResult;
  try {
    [result] = (await consumeBatch(fleet(), [{ id, body }])) as [MessageResult];
  } catch (e) {
    const error = redactError(e instanceof Error ? e : new Error(String(e)));
    createLogger().error({ messageId: id, error: { type: error.name, message: error.message } }, "message refused");
    result = { id, outcome: "failed", error: { type: error.name, message: error.message } };
  }
  const answer = redactDeep(result);
  if (answer.outcome === "failed") {
    throw new QueueMessageFailed(`queue message ${id}${answer.target ? ` (${answer.cluster}/${answer.target})` : ""}: ${answer.error?.type}: ${answer.error?.message}`);
  }
  return answer;
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
 * (manifests, clusters, the queue's URL) is answered, with nothing sent. `queueFromEnvironment` is the cloud's
 * queue (passed in, so that no cloud's SDK reaches another's bundle).
 */
export async function invokePlan(_event: unknown, queueFromEnvironment: () => WorkQueue | Promise<WorkQueue>): Promise<PlanResponse> {
  try {
    queue ??= await queueFromEnvironment();
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

/** `{"cluster": "east", "target": "ns/name"}` for status: where those targets of that cluster stand (read-only). */
export async function statusInCluster(cluster: string, targets: readonly string[] | undefined): Promise<Status[]> {
  if (!targets?.length) throw new InputError("event.cluster: name the targets too (target or targets) for the status of another cluster");
  const f = fleet();
  const results: Status[] = [];
  for (const target of targets) results.push(...(await statusOne(f, cluster, target)));
  return results;
}

/** `{"cluster": "east"}` for push (optionally `target`s): that cluster's PushSecrets, through its connection. */
export function pushInCluster(cluster: string, request: PushRequest): Promise<PushReport[]> {
  return pushOne(fleet(), cluster, request);
}

/** The PushSecrets of every KubernetesCluster, each cluster failing alone (a schedule's run; the default cluster's are the engine's). */
export function pushOtherClusters(request: PushRequest): Promise<PushReport[]> {
  return pushClusters(fleet(), request);
}
