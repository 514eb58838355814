// Small numeric helpers shared by the benchmarks.

/** The q-quantile (0..1) by linear interpolation between closest ranks; NaN for no samples. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export const median = (values: readonly number[]): number => quantile(values, 0.5);

/** Rounds to `digits` decimals (keeps the JSON readable). */
export function round(value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export const mb = (bytes: number): number => round(bytes / (1024 * 1024), 1);

/** Runs `fn` over `items` with at most `limit` in flight, keeping order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * The peak resident set size of this process between start and stop(): the kernel's
 * high-water mark (maxRSS) when it rose meanwhile, else the highest sample taken
 * every `everyMs` (sampling is cheap at 100 ms; reading /proc much more often is not).
 */
export function sampleRss(everyMs = 100): { stop(): number } {
  const maxBefore = process.resourceUsage().maxRSS * 1024;
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      const maxAfter = process.resourceUsage().maxRSS * 1024;
      return Math.max(peak, process.memoryUsage.rss(), maxAfter > maxBefore ? maxAfter : 0);
    },
  };
}
