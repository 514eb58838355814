// Setup file of the integration project: records everything written to stdout
// and stderr (the engine's logs included) and, after each test file, checks
// that no secret value the file saw appears in any of it, in any encoding
// (SPEC §5.6; leaks.ts: raw, JSON-escaped, base64, percent-encoded, .pgpass-escaped…).
import { afterAll, expect } from "vitest";
import { leakingLines } from "./leaks.ts";
import { logLines, seenSecrets } from "./support.ts";

for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    logLines.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof stream.write;
}

afterAll(() => {
  // Count only: a failure must not print the secret it found.
  expect(leakingLines(logLines, seenSecrets).length, "log lines holding a secret value (in some encoding)").toBe(0);
});
