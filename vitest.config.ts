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
          include: ["test/integration/**/*.test.ts"],
          // lowkey-vault (the Azure Key Vault emulator) is not served by the Maven Central this
          // project can reach, so its tests run only where a jar is provided: npm run test:azure.
          exclude: ["test/integration/emulators.test.ts", "test/integration/store-azure.test.ts"],
          // One set of real servers per run, started before any file.
          globalSetup: ["test/infra/global-setup.ts"],
          setupFiles: ["test/integration/log-guard.ts"],
          testTimeout: 120_000,
          hookTimeout: 900_000,
        },
      },
      {
        test: {
          name: "azure-emulator",
          include: ["test/integration/store-azure.test.ts"],
          globalSetup: ["test/infra/global-setup.ts"],
          setupFiles: ["test/integration/log-guard.ts"],
          testTimeout: 120_000,
          hookTimeout: 900_000,
        },
      },
    ],
  },
});
