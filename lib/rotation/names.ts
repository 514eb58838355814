// The names the engine shares with every front end and with a human reading the
// Secret: our annotations, how a rotation is named, and when the next one is due.
import { createHash } from "node:crypto";
import type { SecretObject } from "../kubernetes/index.ts";
import type { ExternalSecret } from "../manifests/index.ts";

export const ANNOTATION_PREFIX = "cnpg-rotator.io/";
export const ANNOTATIONS = {
  rotationId: `${ANNOTATION_PREFIX}rotation-id`,
  rotatedAt: `${ANNOTATION_PREFIX}rotated-at`,
  externalSecret: `${ANNOTATION_PREFIX}external-secret`,
  store: `${ANNOTATION_PREFIX}store`,
  storeVersion: `${ANNOTATION_PREFIX}store-version`,
  fingerprint: `${ANNOTATION_PREFIX}password-fingerprint`,
  specHash: `${ANNOTATION_PREFIX}spec-hash`,
  // Set by rollback.ts: the rotation named here was merged, failed its test and was undone, so
  // the Secret holds the store's current password again. Cleared by the next merge.
  rolledBack: `${ANNOTATION_PREFIX}rolled-back`,
  rolledBackAt: `${ANNOTATION_PREFIX}rolled-back-at`,
  /** On a consumer Secret of the alternating strategy (absent: single-user). */
  strategy: `${ANNOTATION_PREFIX}strategy`,
} as const;

/**
 * The rotation a Secret's next one follows: its last, or — when a later one was rolled back
 * before it reached the Secret (alternating) — that one, whose id is spent.
 */
export function lastRotationOf(secret: SecretObject | undefined): string | undefined {
  return secret?.annotations[ANNOTATIONS.rolledBack] ?? secret?.annotations[ANNOTATIONS.rotationId];
}

/**
 * The id of the rotation that follows `previous` on this Secret object. Every run that sees the
 * same state derives the same id, so duplicated or retried triggers converge on one rotation
 * (and AWS dedupes on it as ClientRequestToken). The Secret's uid (metadata.uid; "" before
 * CreateOrMerge creates it) makes the ids of a deleted and recreated Secret new ones: AWS
 * refuses a token reused with another value, so replayed ids would stop that Secret rotating
 * there for good. The alternating strategy's ids differ from the single-user ones, so a run
 * always knows which strategy staged a rotation in flight.
 */
export function successorId(
  namespace: string,
  secretName: string,
  uid: string,
  previous: string | undefined,
  strategy: "single-user" | "alternating" = "single-user",
): string {
  const which = strategy === "alternating" ? "|alternating" : "";
  return uuidShaped(`${namespace}/${secretName}|${uid}|${previous ?? "initial"}${which}`);
}

/**
 * The ids a single-user rotation following `previous` may have been staged under: successorId's,
 * and the one of releases that derived ids without the uid, so a rotation staged before an
 * upgrade still resumes with its password.
 */
export function successorIds(namespace: string, secretName: string, uid: string, previous: string | undefined): [string, string] {
  return [successorId(namespace, secretName, uid, previous), uuidShaped(`${namespace}/${secretName}|${previous ?? "initial"}`)];
}

function uuidShaped(input: string): string {
  const h = createHash("sha256").update(input).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** What the due check reads of an ExternalSecret: all the planner keeps of a target (lib/fleet/plan.ts). */
export interface DueRule {
  readonly refreshPolicy: ExternalSecret["refreshPolicy"];
  readonly refreshIntervalMs: number;
  readonly specHash: string;
  readonly alternating: boolean;
}

export function dueRule(es: ExternalSecret): DueRule {
  const { refreshPolicy, refreshIntervalMs, specHash } = es;
  return { refreshPolicy, refreshIntervalMs, specHash, alternating: es.metadata.annotations[`${ANNOTATION_PREFIX}strategy`] === "alternating" };
}

/** Whether a rotation of `es`'s target is due, and when the next one is. */
export function dueCheck(es: ExternalSecret, secret: Pick<SecretObject, "annotations"> | undefined, now: Date): DueCheck {
  return dueUnder(dueRule(es), secret, now);
}

export interface DueCheck {
  readonly due: boolean;
  readonly reason: string;
  readonly nextDue?: Date;
}

/** The due check under `rule`; annotations only, so a planner decides from a metadata-only list. */
export function dueUnder(rule: DueRule, secret: Pick<SecretObject, "annotations"> | undefined, now: Date): DueCheck {
  const last = secret?.annotations[ANNOTATIONS.rotatedAt];
  if (!secret || !last) return { due: true, reason: "never rotated" };
  // A rolled-back rotation changed nothing: whatever the policy, the password is still due a change.
  // (Single-user: the rolled-back rotation is the Secret's last; alternating: the one after it,
  // which never reached the consumer Secret.) The next successful write clears the record.
  const rolledBack = secret.annotations[ANNOTATIONS.rolledBack];
  if (rolledBack) return { due: true, reason: `rotation ${rolledBack} was rolled back` };
  const lastMs = Date.parse(last);
  if (Number.isNaN(lastMs)) return { due: true, reason: `unreadable ${ANNOTATIONS.rotatedAt}` };
  switch (rule.refreshPolicy) {
    case "CreatedOnce":
      return { due: false, reason: "refreshPolicy CreatedOnce: generated once already" };
    case "OnChange":
      return secret.annotations[ANNOTATIONS.specHash] === rule.specHash
        ? { due: false, reason: "refreshPolicy OnChange: the ExternalSecret has not changed" }
        : { due: true, reason: "refreshPolicy OnChange: the ExternalSecret changed" };
    case "Periodic": {
      if (rule.refreshIntervalMs === 0) return { due: false, reason: "refreshInterval 0: generated once already" };
      // Schedulers fire at about, not exactly, the interval: a run slightly early still counts —
      // except for the alternating strategy, whose promise is that a role's password lives one
      // whole interval after applications were switched off it (rotated-at is the switch).
      const slack = rule.alternating ? 0 : Math.min(rule.refreshIntervalMs * 0.1, 5 * 60_000);
      const nextDue = new Date(lastMs + rule.refreshIntervalMs);
      return nextDue.getTime() - slack <= now.getTime()
        ? { due: true, reason: "refresh interval elapsed", nextDue }
        : { due: false, reason: "not due yet", nextDue };
    }
  }
}
