import { describe, expect, it } from "vitest";
import { isNetworkError, isTransientStatus, withRetry } from "../../lib/retry.ts";

class Transient extends Error {
  override name = "Transient";
}

describe("withRetry", () => {
  it("retries a transient failure and returns the first success", async () => {
    let calls = 0;
    const retried: number[] = [];
    const out = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw new Transient("reset");
        return "ok";
      },
      { what: "test", isTransient: (e) => e instanceof Transient, minDelayMs: 1, maxDelayMs: 2, onRetry: (i) => retried.push(i.attempt) },
    );
    expect(out).toBe("ok");
    expect(calls).toBe(3);
    expect(retried).toEqual([1, 2]);
  });

  it("fails at once, with the error itself, when it is not transient", async () => {
    let calls = 0;
    const error = new RangeError("bad input");
    await expect(
      withRetry(
        async () => {
          calls++;
          throw error;
        },
        { what: "test", isTransient: () => false, minDelayMs: 1 },
      ),
    ).rejects.toBe(error);
    expect(calls).toBe(1);
  });

  it("gives up after its retries with the last error", async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw new Transient(`attempt ${calls}`);
        },
        { what: "test", isTransient: () => true, retries: 2, minDelayMs: 1, maxDelayMs: 1 },
      ),
    ).rejects.toThrow("attempt 3");
    expect(calls).toBe(3);
  });
});

describe("transient errors", () => {
  it("knows network errors, also as a cause", () => {
    expect(isNetworkError(Object.assign(new Error("x"), { code: "ECONNRESET" }))).toBe(true);
    expect(isNetworkError(new Error("wrapped", { cause: Object.assign(new Error("y"), { code: "ETIMEDOUT" }) }))).toBe(true);
    expect(isNetworkError(new Error("plain"))).toBe(false);
  });
  it("knows throttling and server errors, not client errors", () => {
    expect([408, 429, 500, 502, 503, 504].every(isTransientStatus)).toBe(true);
    expect([400, 401, 403, 404, 409, 412, 501].some(isTransientStatus)).toBe(false);
    expect(isTransientStatus(undefined)).toBe(false);
  });
});
