// The AWS planner with its queue (triggers/queues-gcp.ts is GCP's): one module per cloud, so
// that no cloud's SDK reaches another's bundle.
import { sqsQueueFromEnvironment } from "../lib/queues/sqs.ts";
import { invokePlan, type PlanResponse } from "./fleet.ts";

/** AWS: the planner's schedule sends to the SQS queue of CNPG_ROTATOR_QUEUE_URL. */
export function planToSqs(event: unknown): Promise<PlanResponse> {
  return invokePlan(event, sqsQueueFromEnvironment);
}
