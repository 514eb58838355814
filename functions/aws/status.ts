// AWS Lambda: where each rotation stands (`{"target": "namespace/name"}` or all). Read-only.
import { invokeStatus, type StatusResponse } from "../../triggers/invoke.ts";

export type { StatusResponse };

export function handler(event: unknown): Promise<StatusResponse> {
  return invokeStatus(event);
}
