// The one Go-duration parser (lib/manifests/duration.ts), against Go's time.ParseDuration:
// go-reference/durations.json holds each input and Go's nanoseconds, or "error".

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatDuration, parseDuration } from "../../lib/manifests/index.ts";
import { parseDurationNs } from "../../lib/manifests/duration.ts";

const go = JSON.parse(readFileSync(new URL("go-reference/durations.json", import.meta.url), "utf8")) as [
  input: string,
  ns: string,
][];

describe("parseDuration reads what Go's time.ParseDuration reads", () => {
  it.each(go)("%j → %s", (input, ns) => {
    const ours = parseDurationNs(input);
    expect(ours === undefined ? "error" : String(ours)).toBe(ns);
  });

  it("gives whole milliseconds where Go's nanoseconds are whole milliseconds", () => {
    expect(parseDuration("1.1h")).toBe(66 * 60_000);
    expect(parseDuration("0.1s")).toBe(100);
    expect(parseDuration("1h30m")).toBe(90 * 60_000);
    expect(parseDuration("1.5ns")).toBe(0.000001);
    expect(parseDuration("24 h")).toBeUndefined();
  });

  it("formats for humans", () => {
    expect([86_400_000, 90_000, 0, 1_500].map(formatDuration)).toEqual(["24h", "1m30s", "0s", "1s500ms"]);
  });
});
