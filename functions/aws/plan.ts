// AWS Lambda: the planner's schedule (and manual `serverless invoke -f plan`): every cluster's
// due targets, found with one metadata-only list per namespace, one SQS message each.
import type { PlanResponse } from "../../triggers/fleet.ts";
import { planToSqs } from "../../triggers/queues.ts";

export type { PlanResponse };

export function handler(event: unknown): Promise<PlanResponse> {
  return planToSqs(event);
}
