// Go's time.ParseDuration, which is what ESO uses for refreshInterval: the same
// grammar and the same arithmetic (integer nanoseconds, a fraction scaled as Go
// scales it), so "1.1h" is exactly 66 minutes, never 66.00000000000001.

const NS_PER: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  "µs": 1_000n, // U+00B5
  "μs": 1_000n, // U+03BC
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
const MAX_NS = (1n << 63n) - 1n;
const PART = /^(\d*)(?:\.(\d*))?([^\d.]+)/;

/** Go's leadingFraction: the digits it keeps (it stops before uint64 overflow) and their scale. */
function fraction(digits: string): [value: bigint, scale: number] {
  let value = 0n;
  let scale = 1;
  for (const c of digits) {
    const next = value * 10n + BigInt(c);
    if (next > 1n << 63n) break;
    value = next;
    scale *= 10;
  }
  return [value, scale];
}

/** Nanoseconds in a Go duration string ("24h", "1h30m", "1.5s", "0"), or undefined if Go would reject it. */
export function parseDurationNs(text: string): bigint | undefined {
  let s = text;
  let negative = false;
  if (s[0] === "-" || s[0] === "+") {
    negative = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0n;
  if (s === "") return undefined;
  let total = 0n;
  while (s !== "") {
    const m = PART.exec(s);
    if (!m) return undefined;
    const [whole, int = "", frac, unit = ""] = m;
    if (int === "" && !frac) return undefined; // no digits: ".s"
    const size = NS_PER[unit];
    if (size === undefined) return undefined;
    let v = BigInt(int || "0") * size;
    const [f, scale] = fraction(frac ?? "");
    // float64, as in Go: nanosecond-accurate for fractions of an hour.
    if (f > 0n) v += BigInt(Math.trunc(Number(f) * (Number(size) / scale)));
    total += v;
    if (total > 1n << 63n) return undefined;
    s = s.slice(whole.length);
  }
  if (negative) return -total;
  return total > MAX_NS ? undefined : total;
}

/** Milliseconds in a Go duration string ("24h", "1h30m", "30s", "0"), or undefined if it is not one. */
export function parseDuration(text: string): number | undefined {
  const ns = parseDurationNs(text);
  return ns === undefined ? undefined : Number(ns) / 1e6;
}

/** A duration for humans and logs, Go style: 24h0m0s → "24h", 90s → "1m30s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  let rest = Math.round(ms);
  const parts: string[] = [];
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1_000],
    ["ms", 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  return parts.join("");
}
