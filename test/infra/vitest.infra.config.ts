// For running the integration tests on their own:
//   npx vitest run --config test/infra/vitest.infra.config.ts
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    root: `${import.meta.dirname}/../..`,
    include: ["test/integration/**/*.test.ts"],
    globalSetup: ["test/infra/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 600_000,
  },
});
