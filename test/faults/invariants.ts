// TEST ONLY: what must hold once a faulty run has been followed by clean runs until settled.
// Each check returns the violations it found as short sentences that never carry a value
// (fingerprints and rotation ids only), so the campaign's report can be printed and kept.
import { fingerprint } from "../../lib/rotation/render.ts";
import { leakingLines } from "../integration/leaks.ts";

/** One look at the target Secret: its rotation id and password (kept in memory only). */
export interface SecretSample {
  readonly resourceVersion: number;
  readonly rotationId: string | undefined;
  readonly password: string | undefined;
}

/** Passwords attributed to rotation ids, from every source a run has: Secret samples, store versions, invocation results. */
export class RotationLedger {
  readonly #byId = new Map<string, Map<string, string>>();

  /** `what` says where it was seen (never a value). */
  add(rotationId: string | undefined, fp: string | undefined, what: string): void {
    if (!rotationId || !fp) return;
    const seen = this.#byId.get(rotationId) ?? new Map<string, string>();
    this.#byId.set(rotationId, seen);
    if (!seen.has(fp)) seen.set(fp, what);
  }

  addPassword(rotationId: string | undefined, password: string | undefined, what: string): void {
    if (password !== undefined) this.add(rotationId, fingerprint(password), what);
  }

  violations(): string[] {
    const out: string[] = [];
    for (const [id, fps] of this.#byId) {
      if (fps.size > 1) out.push(`rotation ${id} has ${fps.size} passwords (${[...fps.values()].join(" / ")})`);
    }
    return out;
  }
}

/** The Secret's rotation id, sample by sample in resourceVersion order, never returns to one it left. */
export function rotationIdsMonotonic(samples: readonly SecretSample[]): string[] {
  const ordered = [...samples].sort((a, b) => a.resourceVersion - b.resourceVersion);
  const left = new Set<string>();
  let current: string | undefined;
  for (const s of ordered) {
    if (s.rotationId === current) continue;
    if (s.rotationId !== undefined && left.has(s.rotationId)) {
      return [`the Secret's rotation id went back to ${s.rotationId} (resourceVersion ${s.resourceVersion}) after it had moved on`];
    }
    if (current !== undefined) left.add(current);
    current = s.rotationId;
  }
  return [];
}

/** Keys nobody but the writer and the rotation may change: byte-identical to the start. */
export function keysKept(before: Readonly<Record<string, string>>, after: Readonly<Record<string, string>>, keys: readonly string[], where: string): string[] {
  const changed = keys.filter((k) => before[k] !== after[k]);
  return changed.length ? [`${where}: keys ${changed.join(", ")} changed (not the rotation's to change)`] : [];
}

/** Lines of `outputs` holding any form of any of `secrets` (lib/redact.ts's encodings): how many, per output name. */
export function leaks(outputs: Readonly<Record<string, string>>, secrets: Iterable<string>): string[] {
  const all = [...secrets];
  const out: string[] = [];
  for (const [name, text] of Object.entries(outputs)) {
    const n = leakingLines(text.split("\n"), all).length;
    if (n > 0) out.push(`${name}: ${n} line(s) hold a password in some encoding`);
  }
  return out;
}
