// AWS Lambda: PushSecret schedules and manual payloads
// (`{"target": "namespace/pushsecret-name", "dryRun": true}`).
import { invokePush, type PushResponse } from "../../triggers/invoke.ts";

export type { PushResponse };

export function handler(event: unknown): Promise<PushResponse> {
  return invokePush(event);
}
