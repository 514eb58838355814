// Google Cloud Functions (2nd gen), registered with the Functions Framework:
//   rotate     — Pub/Sub: Cloud Scheduler messages ({"target": "ns/name"} or empty) and
//                Secret Manager notifications (SECRET_ROTATE; others acknowledged)
//   rotateHttp — HTTP: POST a manual payload, or Cloud Scheduler → HTTP
//   push       — Pub/Sub: Cloud Scheduler messages ({"target": "ns/PushSecret"} or empty)
//   statusHttp — HTTP: POST {} or {"target": "ns/name"}: where each rotation stands (read-only)
// Unwrapping lives in lib/rotation/events.ts; the engine call is the same as on AWS.
import * as functions from "@google-cloud/functions-framework";
import { createLogger } from "../../lib/log.ts";
import { answerHttp, deliver, pushFromPubSub, rotateFromPubSub } from "../../triggers/events.ts";
import { manifestsFromEnvironment } from "../../lib/rotation/files.ts";
import { invokePush, invokeRotate, invokeStatus } from "../../triggers/invoke.ts";

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

functions.cloudEvent("rotate", rotate);
functions.cloudEvent("push", push);
functions.http("rotateHttp", rotateHttp);
functions.http("statusHttp", statusHttp);
