// Setup file of the integration project: records everything written to stdout
// and stderr (the engine's logs included) and, after each test file, checks
// that no secret value the file saw appears in any of it (SPEC §5.6).
import { afterAll, expect } from "vitest";
import { logLines, seenSecrets } from "./support.ts";

for (const stream of [process.stdout, process.stderr]) {
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    logLines.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof stream.write;
}

afterAll(() => {
  const leaked = logLines.filter((line) => [...seenSecrets].some((secret) => secret.length >= 8 && line.includes(secret)));
  // Count only: a failure must not print the secret it found.
  expect(leaked.length, "log lines holding a secret value").toBe(0);
});
