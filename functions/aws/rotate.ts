// AWS Lambda: SQS batches of the fleet's queue (one due target per message; the answer is a
// partial batch response), and manual `serverless invoke` payloads
// (`{"target": "namespace/name", "cluster": "east", "force": true, "dryRun": true}`).
import { consumeSqs, isSqsEvent, type SqsBatchResponse, type SqsEvent } from "../../triggers/fleet.ts";
import { invokeRotate, type RotateResponse } from "../../triggers/invoke.ts";

export type { RotateResponse, SqsBatchResponse };

export function handler(event: SqsEvent): Promise<SqsBatchResponse>;
export function handler(event: unknown): Promise<RotateResponse>;
export function handler(event: unknown): Promise<RotateResponse | SqsBatchResponse> {
  return isSqsEvent(event) ? consumeSqs(event) : invokeRotate(event);
}
