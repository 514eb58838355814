// What the GCP deployment script says (deploy/gcp/commands.ts): a fleet gets the planner's
// one job and a queue whose push subscription dead-letters, the same size whatever N.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MAX_DELIVERY_ATTEMPTS, plannerCron, script } from "../../deploy/gcp/commands.ts";
import { readManifests } from "../../lib/rotation/files.ts";
import { writeFleet } from "../infra/fleet-manifests.ts";

function fleetOf(n: number, refreshInterval = "24h") {
  const dir = mkdtempSync(join(tmpdir(), "deploy-gcp-"));
  writeFleet({ dir, targets: n, namespaces: 3, refreshInterval, clusters: { east: "  kubeconfigEnv: EAST\n", west: "  kubeconfigEnv: WEST\n" } });
  return readManifests([dir]);
}

describe("deploy/gcp/commands.ts, a fleet", () => {
  it("one planner job and one push job, the queue with its dead-letter topic, no job per ExternalSecret; the script does not grow with the ExternalSecrets", () => {
    const small = script(fleetOf(2), "manifests");
    const big = script(fleetOf(60), "manifests");
    for (const out of [small, big]) {
      expect(out.match(/^job 'cnpg-rotator-plan' /gm)).toHaveLength(1);
      expect(out).not.toMatch(/^job 'cnpg-rotator-rotate-/m);
      expect(out).toContain(`--dead-letter-topic cnpg-rotator-queue-dead --max-delivery-attempts ${MAX_DELIVERY_ATTEMPTS}`);
      expect(out).toContain("--entry-point rotateQueue --trigger-http --no-allow-unauthenticated");
      expect(out).toContain("CNPG_ROTATOR_TOPIC=projects/$PROJECT/topics/cnpg-rotator-queue");
    }
    // Only the header's counts differ.
    const body = (s: string) => s.split("\n").filter((l) => !l.startsWith("# cnpg-rotator on Google Cloud"));
    expect(body(big)).toEqual(body(small));
    expect(big.match(/^job /gm)).toEqual(["job ", "job "]); // the planner's and push's
  });

  it("plans at a quarter of the shortest refreshInterval, 1 minute to 1 hour; without clusters the per-target jobs stay", () => {
    expect(plannerCron(fleetOf(1, "24h"))).toBe("0 * * * *");
    expect(plannerCron(fleetOf(1, "1h"))).toBe("*/15 * * * *");
    expect(plannerCron(fleetOf(1, "2m"))).toBe("* * * * *");
    const dir = mkdtempSync(join(tmpdir(), "deploy-gcp-"));
    writeFleet({ dir, targets: 2, namespaces: 1 });
    const single = script(readManifests([dir]), "manifests");
    expect(single.match(/^job 'cnpg-rotator-rotate-/gm)).toHaveLength(2);
    expect(single).not.toContain("cnpg-rotator-queue");
  });
});
