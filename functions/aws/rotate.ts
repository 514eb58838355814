// AWS Lambda: EventBridge schedules and manual `serverless invoke` payloads.
// Translates the event into one engine call and returns the per-target results.
import { InputError } from "../../lib/errors.ts";
import { type Engine, rotate } from "../../lib/rotation/engine.ts";
import { engineFromEnvironment } from "../../lib/rotation/context.ts";
import { parseRotateRequest } from "../../lib/rotation/request.ts";
import type { RotationResult } from "../../lib/rotation/rotate.ts";

export interface RotateResponse {
  readonly ok: boolean;
  readonly trigger?: "schedule" | "manual";
  readonly results: readonly RotationResult[];
  readonly error?: { readonly type: string; readonly message: string };
}

let engine: Engine | undefined; // reused while the Lambda container stays warm

export async function handler(event: unknown): Promise<RotateResponse> {
  let request: ReturnType<typeof parseRotateRequest>;
  try {
    request = parseRotateRequest(event);
    engine ??= engineFromEnvironment();
  } catch (e) {
    // Bad input never retries into success: answer it instead of throwing.
    if (e instanceof InputError) return { ok: false, results: [], error: { type: e.name, message: e.message } };
    throw e;
  }
  const { trigger, ...rest } = request;
  try {
    const results = await rotate(engine, rest);
    const failed = results.filter((r) => r.outcome === "failed");
    // A failed scheduled run throws, so Lambda's own retries resume it (every step is safe to re-run).
    if (trigger === "schedule" && failed.length > 0) {
      throw new Error(`${failed.length} of ${results.length} rotations failed: ${failed.map((r) => `${r.target} (${r.error?.type})`).join(", ")}`);
    }
    return { ok: failed.length === 0, trigger, results };
  } catch (e) {
    if (e instanceof InputError) return { ok: false, trigger, results: [], error: { type: e.name, message: e.message } };
    throw e;
  }
}
