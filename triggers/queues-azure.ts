// The Azure planner with its queue (triggers/queues.ts is AWS's): Queue Storage, the function app's own account.
import { azureQueueFromEnvironment } from "../lib/queues/azure-queue.ts";
import { invokePlan, type PlanResponse } from "./fleet.ts";

export function planToAzureQueue(event: unknown): Promise<PlanResponse> {
  return invokePlan(event, azureQueueFromEnvironment);
}
