// The one retry policy for transient failures (a reset connection, a timeout, 429, 5xx) of
// any server the engine talks to. Conflicts are not transient: a write refused because the
// remote moved on goes back to the engine, which observes again and decides again.
import pRetry, { AbortError } from "p-retry";

export interface RetryOptions {
  /** What is being retried, for the log line of each retry (never a value). */
  readonly what: string;
  /** Whether an error is worth another try; anything else fails at once. */
  readonly isTransient: (error: unknown) => boolean;
  /** Retries after the first attempt (default 3). */
  readonly retries?: number;
  /** First pause (default 100 ms), doubled each time up to maxDelayMs (default 2 s), with jitter. */
  readonly minDelayMs?: number;
  readonly maxDelayMs?: number;
  /** No retry starts after this long since the first attempt (default 20 s). */
  readonly maxRetryTimeMs?: number;
  readonly signal?: AbortSignal;
  /** Told of each failed attempt that will be retried (type and message only). */
  readonly onRetry?: (info: { what: string; attempt: number; error: { type: string; message: string } }) => void;
}

export const RETRY_DEFAULTS = { retries: 3, minDelayMs: 100, maxDelayMs: 2_000, maxRetryTimeMs: 20_000 } as const;

/** Runs `fn`, again after a transient failure, up to the policy's bounds; other errors pass through untouched. */
export function withRetry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  return pRetry(
    async (attempt) => {
      try {
        return await fn(attempt);
      } catch (error) {
        // Not transient: p-retry stops and rejects with the error itself, unwrapped.
        if (!options.isTransient(error)) throw new AbortError(error instanceof Error ? error : new Error(String(error)));
        throw error;
      }
    },
    {
      retries: options.retries ?? RETRY_DEFAULTS.retries,
      minTimeout: options.minDelayMs ?? RETRY_DEFAULTS.minDelayMs,
      maxTimeout: options.maxDelayMs ?? RETRY_DEFAULTS.maxDelayMs,
      maxRetryTime: options.maxRetryTimeMs ?? RETRY_DEFAULTS.maxRetryTimeMs,
      randomize: true,
      ...(options.signal ? { signal: options.signal } : {}),
      onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
        if (retriesLeft > 0) {
          options.onRetry?.({
            what: options.what,
            attempt: attemptNumber,
            error: { type: error.name, message: error.message },
          });
        }
      },
    },
  );
}

const TRANSIENT_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "ENETUNREACH",
  "EHOSTUNREACH",
  "UND_ERR_SOCKET",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
]);

/** A failure below HTTP: the connection was refused, reset or timed out (here or in a cause). */
export function isNetworkError(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && TRANSIENT_CODES.has(code)) return true;
    const name = (e as { name?: unknown }).name;
    if (name === "TimeoutError" || name === "RequestTimeoutError") return true;
  }
  return false;
}

/** HTTP statuses a later identical request may get past: throttling and server-side failures. */
export function isTransientStatus(status: number | undefined): boolean {
  return status === 408 || status === 429 || (status !== undefined && status >= 500 && status <= 599 && status !== 501);
}
