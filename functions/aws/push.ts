// AWS Lambda: PushSecret schedules and manual payloads
// (`{"target": "namespace/pushsecret-name", "dryRun": true}`). One engine call.
import { InputError } from "../../lib/errors.ts";
import { engineFromEnvironment } from "../../lib/rotation/context.ts";
import type { Engine } from "../../lib/rotation/engine.ts";
import { type PushReport, push } from "../../lib/rotation/push.ts";
import { parseRotateRequest } from "../../lib/rotation/request.ts";

export interface PushResponse {
  readonly ok: boolean;
  readonly trigger?: "schedule" | "manual";
  readonly results: readonly PushReport[];
  readonly error?: { readonly type: string; readonly message: string };
}

let engine: Engine | undefined; // reused while the Lambda container stays warm

export async function handler(event: unknown): Promise<PushResponse> {
  let request: ReturnType<typeof parseRotateRequest>;
  try {
    request = parseRotateRequest(event);
    if (request.force !== undefined) throw new InputError("event.force: not a push option (a push always compares first)");
    engine ??= engineFromEnvironment();
    const { trigger, ...rest } = request;
    const results = await push(engine, rest);
    const failed = results.filter((r) => r.outcome === "failed");
    if (trigger === "schedule" && failed.length > 0) {
      throw new Error(`${failed.length} of ${results.length} pushes failed: ${failed.map((r) => `${r.remoteKey} (${r.error?.type})`).join(", ")}`);
    }
    return { ok: failed.length === 0, trigger, results };
  } catch (e) {
    if (e instanceof InputError) return { ok: false, results: [], error: { type: e.name, message: e.message } };
    throw e;
  }
}
