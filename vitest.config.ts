import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // CI also writes a machine-readable report, from which .ci/run prints its closing line.
    reporters: process.env.CI === "true" ? ["default", ["json", { outputFile: ".test-results.json" }]] : ["default"],
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "integration",
          // Every store's suite, Azure's too: lowkey-vault runs from a jar built from its tagged
          // source (test/infra/emulators/servers.ts, findLowkeyJar), and a missing one fails.
          include: ["test/integration/**/*.test.ts"],
          // One set of real servers per run, started before any file.
          globalSetup: ["test/infra/global-setup.ts"],
          setupFiles: ["test/integration/log-guard.ts"],
          testTimeout: 120_000,
          hookTimeout: 900_000,
        },
      },
    ],
  },
});
