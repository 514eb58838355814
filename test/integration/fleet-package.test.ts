// serverless.yml stays the same size whatever the fleet: `serverless package` (osls, offline)
// of 1 and of 10,000 ExternalSecrets in 2 clusters, pushed to Secrets Manager, gives the same
// CloudFormation resources, at most 30, and a template under 100 KB; the 10,000 targets ship
// compiled, and load from the zip's JSON.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { describe, expect, it } from "vitest";
import { readPlannedTargets, readTargetPart } from "../../lib/fleet/compiled.ts";
import { readManifests } from "../../lib/rotation/files.ts";
import { packageArtifact } from "../infra/artifact.ts";
import { writeFleet } from "../infra/fleet-manifests.ts";

const CLUSTERS = { east: "  kubeconfigFrom: aws:cnpg-rotator/east/kubeconfig\n", west: "  kubeconfigFrom: aws:cnpg-rotator/west/kubeconfig\n" };

interface Packaged {
  resources: Record<string, { Type: string }>;
  templateBytes: number;
  zipBytes: number;
  /** The compiled manifests the zip ships. */
  compiled: string;
  cleanup(): void;
}

/** `serverless package` of `targets` in a copy of the service (artifact.ts), so builds running beside it are untouched. */
async function packageFleet(targets: number): Promise<Packaged> {
  const work = mkdtempSync(join(tmpdir(), `fleet-package-${targets}-`));
  const manifests = join(work, "manifests");
  writeFleet({ dir: manifests, targets, namespaces: Math.min(targets, 100), clusters: CLUSTERS, awsPrefix: "fleet/" });
  // Both packages take ~1 min on a quiet machine; the 10,000 was seen past 5 under a loaded full suite.
  const artifact = await packageArtifact({ env: { CNPG_ROTATOR_MANIFESTS_DIR: manifests }, packageTimeoutMs: 720_000 });
  const template = readFileSync(join(artifact.packageDir!, "cloudformation-template-update-stack.json"), "utf8");
  return {
    resources: JSON.parse(template).Resources,
    templateBytes: Buffer.byteLength(template),
    zipBytes: artifact.bytes,
    compiled: join(dirname(artifact.bundle), "../../dist/aws/manifests"),
    cleanup: () => {
      artifact.cleanup();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

describe("serverless package of a fleet", () => {
  it("1 and 10,000 ExternalSecrets: the same ≤ 30 resources, a template under 100 KB", { timeout: 1_200_000 }, async () => {
    const one = await packageFleet(1);
    const many = await packageFleet(10_000);
    try {
      const types = (p: Packaged) => Object.entries(p.resources).map(([name, r]) => `${name} ${r.Type}`).sort();
      expect(types(many)).toEqual(types(one));
      expect(Object.keys(many.resources).length).toBeLessThanOrEqual(30);
      expect(many.templateBytes).toBeLessThan(100_000);
      // Not growing with N: the same resources, and the template differs only in descriptions' numbers.
      expect(Math.abs(many.templateBytes - one.templateBytes)).toBeLessThan(500);
      expect(types(many).filter((t) => t.endsWith("AWS::Events::Rule"))).toHaveLength(2); // the planner's and push's
      expect(types(many)).toContain("RotateEventSourceMappingSQSRotateQueue AWS::Lambda::EventSourceMapping");
      const mapping = (many.resources.RotateEventSourceMappingSQSRotateQueue as unknown as { Properties: Record<string, unknown> }).Properties;
      expect(mapping.FunctionResponseTypes).toEqual(["ReportBatchItemFailures"]);
      expect(mapping.ScalingConfig).toEqual({ MaximumConcurrency: 10 });
      const queue = (many.resources.RotateQueue as unknown as { Properties: { RedrivePolicy: { maxReceiveCount: number } } }).Properties;
      expect(queue.RedrivePolicy.maxReceiveCount).toBe(5);
      // The planner knows the queue; the rotate function gets its messages from the mapping.
      const envOf = (fn: string) => (many.resources[fn] as unknown as { Properties: { Environment: { Variables: Record<string, unknown> } } }).Properties.Environment.Variables;
      expect(envOf("PlanLambdaFunction").CNPG_ROTATOR_QUEUE_URL).toEqual({ Ref: "RotateQueue" });
      expect(envOf("RotateLambdaFunction").CNPG_ROTATOR_QUEUE_URL).toBeUndefined();
      // IAM: the clusters' stored kubeconfigs by name, the 10,000 pushed secrets by their store's prefix.
      const role = JSON.stringify(many.resources.IamRoleLambdaExecution);
      expect(role).toContain("secret:cnpg-rotator/east/kubeconfig-??????");
      expect(role).toContain("secret:fleet/*");
      expect(role).not.toContain("db-00001");
      console.error(`[fleet-package] resources ${Object.keys(many.resources).length}, template ${one.templateBytes} B (N=1) / ${many.templateBytes} B (N=10,000), rotate.zip ${one.zipBytes} B / ${many.zipBytes} B`);
      // The shipped snapshot holds every target and loads as the YAML does.
      const shipped = readManifests([many.compiled]);
      expect(shipped.externalSecrets).toHaveLength(10_000);
      expect(shipped.clusters.map((c) => c.metadata.name)).toEqual(["east", "west"]);
      // ... and one part per target: a consumer reads its message's target and the shared part only.
      expect(readdirSync(join(many.compiled, "targets"))).toHaveLength(10_000);
      const part = readTargetPart(many.compiled, "west", "team-0000/db-00001-app")!;
      expect(part.externalSecrets.map((es) => es.target.name)).toEqual(["db-00001-app"]);
      expect(part.pushSecrets).toHaveLength(1);
      expect(part.clusters).toHaveLength(2);
      expect(readTargetPart(many.compiled, "east", "team-0000/db-00001-app")).toBeUndefined(); // it lives in west
      // ... and the planner's part: each target's cluster, name and due rule, nothing else.
      const planned = readPlannedTargets(many.compiled);
      expect(planned).toHaveLength(10_000);
      expect(planned.find((t) => t.target === "team-0000/db-00001-app")).toEqual({
        cluster: "west",
        target: "team-0000/db-00001-app",
        rule: { refreshPolicy: "Periodic", refreshIntervalMs: expect.any(Number), specHash: expect.any(String), alternating: false },
      });
      expect(new Set(planned.map((t) => t.cluster))).toEqual(new Set(["east", "west"]));
    } finally {
      one.cleanup();
      many.cleanup();
    }
  });
});
