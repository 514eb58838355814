// Which lines of some output hold a secret value in any form it can take in text (raw,
// JSON-escaped, JSON inside JSON, base64, base64url, percent-encoded, URI userinfo and query,
// .pgpass-escaped: lib/redact.ts's encodings). Pure: the integration suite's log guard and the
// fault campaign's "no password in any output" check both use it; test/unit/log-guard.test.ts
// plants a leak in each form.
import { encodings } from "../../lib/redact.ts";

/** Values shorter than this are not looked for (they would match ordinary words). */
export const MIN_SECRET_LENGTH = 8;

/** The indexes of the lines of `lines` that hold any form of any of `secrets`. */
export function leakingLines(lines: readonly string[], secrets: Iterable<string>): number[] {
  const forms = new Set<string>();
  for (const s of secrets) if (s.length >= MIN_SECRET_LENGTH) for (const f of encodings(s)) forms.add(f);
  if (forms.size === 0) return [];
  const all = [...forms];
  return lines.flatMap((line, i) => (all.some((f) => line.includes(f)) ? [i] : []));
}
