// Azure Functions, v4 programming model (the app's `main` is this file's bundle):
//   rotateTimer        — timer, NCRONTAB from app setting CNPG_ROTATOR_SCHEDULE (default daily 03:00 UTC)
//   pushTimer          — timer, CNPG_ROTATOR_PUSH_SCHEDULE (default daily 03:30 UTC)
//   rotateHttp         — HTTP POST with a manual payload (function key)
//   rotateOnNearExpiry — Event Grid: Microsoft.KeyVault.SecretNearExpiry (others acknowledged)
// A timer run is a scheduled trigger: it rotates every due target and a failure
// throws, so the retry policy below runs it again (each step is safe to re-run).
import { app, type HttpRequest, type RetryOptions, type Timer } from "@azure/functions";
import { createLogger } from "../../lib/log.ts";
import { answerHttp, deliver, rotateFromEventGrid, timerTick } from "../../triggers/events.ts";
import { manifestsFromEnvironment } from "../../lib/rotation/files.ts";
import { invokePush, invokeRotate, invokeStatus } from "../../triggers/invoke.ts";

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

app.timer("rotateTimer", { schedule: schedule("CNPG_ROTATOR_SCHEDULE", "0 0 3 * * *"), retry, handler: rotateTimer });
app.timer("pushTimer", { schedule: schedule("CNPG_ROTATOR_PUSH_SCHEDULE", "0 30 3 * * *"), retry, handler: pushTimer });
app.http("rotateHttp", { methods: ["POST"], authLevel: "function", handler: rotateHttp });
app.http("statusHttp", { methods: ["POST"], authLevel: "function", handler: statusHttp });
app.eventGrid("rotateOnNearExpiry", { handler: rotateOnNearExpiry });
