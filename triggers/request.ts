// What a trigger asks for, read from whatever a scheduler or a person sent.
// Anything we do not understand is refused before a single write.
import * as z from "zod";
import { InputError } from "../lib/errors.ts";
import type { RotateRequest } from "../lib/rotation/engine.ts";

const target = z.string().regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?\/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, {
  message: 'expected "namespace/name" of a target Secret',
});

const manualSchema = z.strictObject({
  /** A fleet's cluster (a KubernetesCluster's name); absent: the one the environment configures. */
  cluster: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, { message: "expected a KubernetesCluster name" }).optional(),
  target: target.optional(),
  targets: z.array(target).optional(),
  force: z.boolean().optional(),
  dryRun: z.boolean().optional(),
});

/** AWS EventBridge's scheduled event envelope (EventBridge rules and Scheduler's "aws.scheduler"). */
function isScheduledEvent(e: Record<string, unknown>): boolean {
  return (
    (e["detail-type"] === "Scheduled Event" && (e.source === "aws.events" || e.source === "aws.scheduler")) ||
    e.source === "aws.scheduler"
  );
}

/**
 * A scheduled event (rotate every target that is due), or a manual payload:
 * `{"target": "namespace/name", "force": true, "dryRun": true}`.
 */
export interface ParsedRequest extends RotateRequest {
  readonly trigger: "schedule" | "manual";
  /** The cluster the targets live in, when the payload names one. */
  readonly cluster?: string;
}

export function parseRotateRequest(event: unknown): ParsedRequest {
  if (event === undefined || event === null || (typeof event === "string" && event.trim() === "")) {
    return { trigger: "manual" };
  }
  let payload: unknown = event;
  if (typeof event === "string") {
    try {
      payload = JSON.parse(event);
    } catch {
      throw new InputError("event: expected a JSON object");
    }
  }
  if (typeof payload !== "object" || Array.isArray(payload) || payload === null) {
    throw new InputError(`event: expected a JSON object, found ${Array.isArray(payload) ? "an array" : typeof payload}`);
  }
  const record = payload as Record<string, unknown>;
  if (isScheduledEvent(record)) {
    const detail = record.detail;
    const inner = detail && typeof detail === "object" && Object.keys(detail).length > 0 ? detail : {};
    return { ...parseManual(inner, "event.detail"), trigger: "schedule" };
  }
  return { ...parseManual(record, "event"), trigger: "manual" };
}

function parseManual(payload: unknown, where: string): Omit<ParsedRequest, "trigger"> {
  const parsed = manualSchema.safeParse(payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = [where, ...issue.path.map(String)].join(".");
    const message =
      issue.code === "unrecognized_keys"
        ? `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")} (expected target, targets, cluster, force, dryRun)`
        : issue.message.replace(/^Invalid input: /, "");
    throw new InputError(`${path}: ${message}`);
  }
  const { target: one, targets, force, dryRun, cluster } = parsed.data;
  const all = [...(one ? [one] : []), ...(targets ?? [])];
  return {
    ...(cluster !== undefined ? { cluster } : {}),
    ...(all.length > 0 ? { targets: all } : {}),
    ...(force !== undefined ? { force } : {}),
    ...(dryRun !== undefined ? { dryRun } : {}),
  };
}
