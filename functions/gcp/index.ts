// Google Cloud Functions (2nd gen), registered with the Functions Framework:
//   rotate     — Pub/Sub: Cloud Scheduler messages ({"target": "ns/name"} or empty) and
//                Secret Manager notifications (SECRET_ROTATE; others acknowledged)
//   rotateHttp — HTTP: POST a manual payload, or Cloud Scheduler → HTTP
//   push       — Pub/Sub: Cloud Scheduler messages ({"target": "ns/PushSecret"} or empty)
//   statusHttp — HTTP: POST {} or {"target": "ns/name"}: where each rotation stands (read-only)
//   plan       — Pub/Sub: the fleet planner's Cloud Scheduler tick: one message per due target to CNPG_ROTATOR_TOPIC
//   rotateQueue — HTTP: the fleet queue's push subscription, one message per request (2xx ack, 500 redeliver)
// Unwrapping lives in lib/rotation/events.ts; the engine call is the same as on AWS.
import * as functions from "@google-cloud/functions-framework";
import { createLogger } from "../../lib/log.ts";
import { answerHttp, deliver, pushFromPubSub, rotateFromPubSub } from "../../triggers/events.ts";
import { manifestsFromEnvironment } from "../../lib/rotation/files.ts";
import { invokePush, invokeRotate, invokeStatus } from "../../triggers/invoke.ts";
import { consumePubSubPush } from "../../triggers/fleet.ts";
import { planToPubSub } from "../../triggers/queues-gcp.ts";

const log = createLogger().child({ platform: "gcp" });
// The manifests the engine reads (as context.ts finds them), to map a Secret Manager secret to its
// targets. A rare event: read afresh, and without needing the cluster.
const manifests = () => manifestsFromEnvironment();

export const rotate = (event: functions.CloudEvent<unknown>) => deliver(() => rotateFromPubSub(event, manifests), invokeRotate, log);

export const push = (event: functions.CloudEvent<unknown>) => deliver(() => pushFromPubSub(event), invokePush, log);

export const rotateHttp: functions.HttpFunction = async (req, res) => {
  const answer = await answerHttp({ method: req.method, header: (name) => req.get(name), body: req.body }, invokeRotate, log);
  res.status(answer.status).set(answer.headers).send(JSON.stringify(answer.body));
};

export const statusHttp: functions.HttpFunction = async (req, res) => {
  const answer = await answerHttp({ method: req.method, header: (name) => req.get(name), body: req.body }, invokeStatus, log);
  res.status(answer.status).set(answer.headers).send(JSON.stringify(answer.body));
};

/** A plan that could not run at all (bad manifests or topic) is logged and acknowledged; a failed publish throws, and the tick is delivered again. */
export const plan = async (_event: functions.CloudEvent<unknown>) => {
  const answer = await planToPubSub(_event);
  if (answer.error) log.error({ error: answer.error }, "plan refused: nothing published");
  else log.info({ enqueued: answer.enqueued, clusters: answer.clusters }, "plan published");
};

export const rotateQueue: functions.HttpFunction = async (req, res) => {
  if (req.method !== "POST") {
    res.status(405).set({ allow: "POST" }).send("");
    return;
  }
  const answer = await consumePubSubPush(req.body);
  res.status(answer.status).set({ "content-type": "application/json" }).send(JSON.stringify(answer.body));
};

functions.cloudEvent("rotate", rotate);
functions.cloudEvent("plan", plan);
functions.http("rotateQueue", rotateQueue);
functions.cloudEvent("push", push);
functions.http("rotateHttp", rotateHttp);
functions.http("statusHttp", statusHttp);
