// Runs the emulator proof tests alone: npx vitest run -c test/infra/emulators/vitest.emulators.config.ts
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // The config sits three levels down; patterns are relative to the repo root.
    root: fileURLToPath(new URL("../../..", import.meta.url)),
    include: ["test/integration/emulators.test.ts"],
    testTimeout: 60_000,
    // Outside CI a first run builds missing emulators (Vault takes ~10+ min on 2 cores).
    hookTimeout: 1_800_000,
    // Google clients must never probe the GCE metadata server from a test.
    env: { METADATA_SERVER_DETECTION: "none" },
  },
});
