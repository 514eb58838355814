// The GCP planner with its queue (triggers/queues.ts is AWS's): Pub/Sub, topic CNPG_ROTATOR_TOPIC.
import { pubSubQueueFromEnvironment } from "../lib/queues/pubsub.ts";
import { invokePlan, type PlanResponse } from "./fleet.ts";

export function planToPubSub(event: unknown): Promise<PlanResponse> {
  return invokePlan(event, pubSubQueueFromEnvironment);
}
