// AWS Lambda: EventBridge schedules and manual `serverless invoke` payloads
// (`{"target": "namespace/name", "force": true, "dryRun": true}`).
import { invokeRotate, type RotateResponse } from "../../triggers/invoke.ts";

export type { RotateResponse };

export function handler(event: unknown): Promise<RotateResponse> {
  return invokeRotate(event);
}
