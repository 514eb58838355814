import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
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
          include: ["test/integration/**/*.test.ts"],
          exclude: ["test/integration/emulators.test.ts"],
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
