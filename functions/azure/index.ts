// Azure Functions, v4 programming model (the app's `main` is this file's bundle):
//   rotateTimer        — timer, NCRONTAB from app setting CNPG_ROTATOR_SCHEDULE (default daily 03:00 UTC)
//   pushTimer          — timer, CNPG_ROTATOR_PUSH_SCHEDULE (default daily 03:30 UTC)
//   rotateHttp         — HTTP POST with a manual payload (function key)
//   rotateOnNearExpiry — Event Grid: Microsoft.KeyVault.SecretNearExpiry (others acknowledged)
// A fleet (app setting CNPG_ROTATOR_FLEET=1) registers, instead of rotateTimer:
//   planTimer          — timer, CNPG_ROTATOR_PLAN_SCHEDULE (default every 15 minutes): one message per due target
//   rotateQueue        — Storage Queue trigger on CNPG_ROTATOR_QUEUE_NAME (default cnpg-rotator-queue), one message
//                        per invocation; a failure throws, host.json's maxDequeueCount then `<queue>-poison`
// A timer run is a scheduled trigger: it rotates every due target and a failure
// throws, so the retry policy below runs it again (each step is safe to re-run).
import { app, type HttpRequest, type InvocationContext, type RetryOptions, type Timer } from "@azure/functions";
import { createLogger } from "../../lib/log.ts";
import { answerHttp, deliver, rotateFromEventGrid, timerTick } from "../../triggers/events.ts";
import { manifestsFromEnvironment } from "../../lib/rotation/files.ts";
import { invokePush, invokeRotate, invokeStatus } from "../../triggers/invoke.ts";
import { consumeQueueItem } from "../../triggers/fleet.ts";
import { planToAzureQueue } from "../../triggers/queues-azure.ts";

const log = createLogger().child({ platform: "azure" });
// The manifests the engine reads (as context.ts finds them), to map a Key Vault secret to its
// targets. A rare event: read afresh, and without needing the cluster.
const manifests = () => manifestsFromEnvironment();
const retry: RetryOptions = { strategy: "exponentialBackoff", maxRetryCount: 3, minimumInterval: { seconds: 30 }, maximumInterval: { minutes: 10 } };

/** `%NAME%` (the host reads the app setting) when it is set, else the default: a binding expression has no fallback. */
const schedule = (setting: string, fallback: string) => (process.env[setting] ? `%${setting}%` : fallback);

export const rotateTimer = (_timer: Timer) => deliver(timerTick, invokeRotate, log);

export const pushTimer = (_timer: Timer) => deliver(timerTick, invokePush, log);

export const rotateHttp = async (request: HttpRequest) => {
  const answer = await answerHttp(
    { method: request.method, header: (name) => request.headers.get(name) ?? undefined, body: await request.text() },
    invokeRotate,
    log,
  );
  return { status: answer.status, headers: answer.headers, jsonBody: answer.body };
};

export const statusHttp = async (request: HttpRequest) => {
  const answer = await answerHttp(
    { method: request.method, header: (name) => request.headers.get(name) ?? undefined, body: await request.text() },
    invokeStatus,
    log,
  );
  return { status: answer.status, headers: answer.headers, jsonBody: answer.body };
};

export const rotateOnNearExpiry = (event: unknown) => deliver(() => rotateFromEventGrid(event, manifests), invokeRotate, log);

/** A plan that could not run at all (bad manifests, no storage setting) is logged; a failed put throws, and the retry policy plans again. */
export const planTimer = async (_timer: Timer) => {
  const answer = await planToAzureQueue(_timer);
  if (answer.error) log.error({ error: answer.error }, "plan refused: nothing enqueued");
  else log.info({ enqueued: answer.enqueued, clusters: answer.clusters }, "plan enqueued");
};

/** The host has decoded the message's base64 (text, or JSON parsed); its id is in the trigger's metadata. */
export const rotateQueue = (item: unknown, context: InvocationContext) => consumeQueueItem(item, String(context.triggerMetadata?.id ?? context.invocationId));

/** The queue's name: `%CNPG_ROTATOR_QUEUE_NAME%` when set, as the planner reads it (lib/queues/azure-queue.ts). */
const queueName = process.env.CNPG_ROTATOR_QUEUE_NAME ? "%CNPG_ROTATOR_QUEUE_NAME%" : "cnpg-rotator-queue";

if (process.env.CNPG_ROTATOR_FLEET === "1") {
  app.timer("planTimer", { schedule: schedule("CNPG_ROTATOR_PLAN_SCHEDULE", "0 */15 * * * *"), retry, handler: planTimer });
  app.storageQueue("rotateQueue", { queueName, connection: "AzureWebJobsStorage", handler: rotateQueue });
} else {
  app.timer("rotateTimer", { schedule: schedule("CNPG_ROTATOR_SCHEDULE", "0 0 3 * * *"), retry, handler: rotateTimer });
}
app.timer("pushTimer", { schedule: schedule("CNPG_ROTATOR_PUSH_SCHEDULE", "0 30 3 * * *"), retry, handler: pushTimer });
app.http("rotateHttp", { methods: ["POST"], authLevel: "function", handler: rotateHttp });
app.http("statusHttp", { methods: ["POST"], authLevel: "function", handler: statusHttp });
app.eventGrid("rotateOnNearExpiry", { handler: rotateOnNearExpiry });
