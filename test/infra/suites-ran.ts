// After the suite: what it passed, and under CI=true that the Azure suites ran and passed (by
// name, from .test-results.json). A run where they did not run is not green, even with every
// test that ran passing.
import { readFileSync } from "node:fs";

interface Results {
  numTotalTests: number;
  numPassedTests: number;
  numFailedTests: number;
  testResults: { name: string; assertionResults: { fullName: string; status: string }[] }[];
}

const r = JSON.parse(readFileSync(".test-results.json", "utf8")) as Results;
console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
let ok = r.numTotalTests > 0;
for (const [file, title] of [["store-azure.test.ts", ""], ["functions-azure.test.ts", ""], ["fleet-azure.test.ts", ""], ["emulators.test.ts", "Azure Key Vault"]] as const) {
  const tests = r.testResults
    .filter((t) => t.name.endsWith(`/test/integration/${file}`))
    .flatMap((t) => t.assertionResults)
    .filter((a) => a.fullName.includes(title));
  const passed = tests.filter((a) => a.status === "passed").length;
  console.log(`azure: ${file}${title ? ` (${title})` : ""}: ${passed} passed, ${tests.length - passed} not passed`);
  if (passed === 0 || passed < tests.length) ok = false;
}
if (!ok && process.env.CI === "true") process.exit(1);
