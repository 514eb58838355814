// A fleet end to end against real servers: two kube-apiservers (the run's, and a second one
// started here with its own etcd), moto's SQS with a dead-letter queue, and Secrets Manager
// holding one cluster's kubeconfig. Planner → queue → the rotate handler, invoked the way the
// Lambda event source mapping invokes it (test/infra/fleet-poller.ts).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateSecretCommand } from "@aws-sdk/client-secrets-manager";
import { CreateQueueCommand, GetQueueAttributesCommand, PurgeQueueCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { handler } from "../../functions/aws/rotate.ts";
import { handler as pushHandler } from "../../functions/aws/push.ts";
import { handler as statusHandler } from "../../functions/aws/status.ts";
import { main } from "../../lib/cli/main.ts";
import { InputError } from "../../lib/errors.ts";
import { consumeBatch, type Fleet, fleetFromEnvironment, pushClusters } from "../../lib/fleet/fleet.ts";
import { encodeMessage } from "../../lib/fleet/messages.ts";
import { planAndEnqueue } from "../../lib/fleet/plan.ts";
import { connectCluster, type KubernetesClient } from "../../lib/kubernetes/index.ts";
import { loadManifests, type ManifestSet } from "../../lib/manifests/index.ts";
import { createSqsClient, SqsQueue } from "../../lib/queues/sqs.ts";
import { readManifests } from "../../lib/rotation/files.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import { createSecretsManagerClient } from "../../lib/stores/aws-client.ts";
import { type consumeSqs, resetFleet } from "../../triggers/fleet.ts";
import { type FleetTarget, writeFleet } from "../infra/fleet-manifests.ts";
import { drain } from "../infra/fleet-poller.ts";
import { type EtcdServer, freePort, type KubeApiserver, renderKubeconfig, startEtcd, startKubeApiserver } from "../infra/servers.ts";
import { capturingLogger, createAppSecret, logLines, uniqueName } from "./support.ts";

const infra = inject("infra");
let west: { etcd: EtcdServer; api: KubeApiserver; dir: string };
let sqs: SQSClient;
const kube: Record<string, KubernetesClient> = {};

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "fleet-west-"));
  const etcd = await startEtcd(dir);
  const api = await startKubeApiserver(dir, etcd.endpoint);
  west = { etcd, api, dir };
  kube.east = connectCluster({ kubeconfigPath: infra.kubeconfigPath });
  kube.west = connectCluster({ kubeconfigYaml: renderKubeconfig(api, { user: "admin", token: api.tokens.admin }) });
  sqs = createSqsClient("us-east-1", { endpoint: infra.awsEndpoint });
  // The west cluster's connection lives in Secrets Manager, as kubeconfigFrom reads it.
  await createSecretsManagerClient("us-east-1", { endpoint: infra.awsEndpoint }).send(
    new CreateSecretCommand({ Name: "fleet-west-kubeconfig", SecretString: renderKubeconfig(api, { user: "admin", token: api.tokens.admin }) }),
  ).catch((e: Error) => {
    if (e.name !== "ResourceExistsException") throw e;
  });
}, 300_000);

afterAll(async () => {
  await resetFleet();
  for (const k of Object.values(kube)) await k.close();
  sqs?.destroy();
  await west?.api.stop();
  await west?.etcd.stop();
  if (west) rmSync(west.dir, { recursive: true, force: true });
});

/** A queue with a DLQ after `maxReceiveCount` deliveries, messages invisible for `visibility` s once received. */
async function queues(maxReceiveCount = 3, visibility = 1): Promise<{ queue: SqsQueue; dlq: SqsQueue }> {
  const name = uniqueName("fleet");
  const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq` }))).QueueUrl!;
  const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ["QueueArn"] }))).Attributes!.QueueArn!;
  const url = (
    await sqs.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: { VisibilityTimeout: String(visibility), RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount }) },
      }),
    )
  ).QueueUrl!;
  return { queue: new SqsQueue(url, sqs), dlq: new SqsQueue(dlqUrl, sqs) };
}

const CLUSTERS = {
  east: "  kubeconfigEnv: FLEET_EAST_KUBECONFIG\n  maxConcurrentRotations: 3\n",
  west: "  kubeconfigFrom: aws:fleet-west-kubeconfig\n  maxConcurrentRotations: 2\n",
};

interface Setup {
  readonly set: ManifestSet;
  readonly targets: FleetTarget[];
  readonly fleet: Fleet;
  readonly storePath: string;
}

/** `n` targets over both clusters in `namespaces` namespaces, their CNPG Secrets created (except `missing`), and the fleet. */
async function setup(n: number, namespaces: number, options: { clusters?: Record<string, string>; missing?: string[] } = {}): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), "fleet-manifests-"));
  const storePath = join(dir, "store.json");
  const targets = writeFleet({ dir, targets: n, namespaces, clusters: options.clusters ?? CLUSTERS, storePath, namespacePrefix: uniqueName("fl") });
  const set = readManifests([dir]);
  for (const t of targets) {
    if (!kube[t.cluster]) continue;
    await kube[t.cluster]!.ensureNamespace(t.namespace);
    if (!options.missing?.includes(t.secret)) await createAppSecret(kube[t.cluster]!, t.namespace, { name: t.secret });
  }
  const env = { ...process.env, FLEET_EAST_KUBECONFIG: readFileSync(infra.kubeconfigPath, "utf8"), CNPG_ROTATOR_CLUSTER_TIMEOUT_MS: "2000" };
  const fleet = fleetFromEnvironment({ manifestSet: set, env, log: capturingLogger() });
  await resetFleet({ fleet });
  return { set, targets, fleet, storePath };
}

async function annotations(t: FleetTarget): Promise<Record<string, string>> {
  return (await kube[t.cluster]!.readSecret(t.namespace, t.secret))!.annotations;
}

async function depth(queue: SqsQueue): Promise<number> {
  const a = (
    await sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queue.url,
        AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
      }),
    )
  ).Attributes!;
  return Number(a.ApproximateNumberOfMessages) + Number(a.ApproximateNumberOfMessagesNotVisible) + Number(a.ApproximateNumberOfMessagesDelayed);
}

describe("a fleet of two clusters", () => {
  it("plans with one metadata list per namespace, enqueues each due target once, and every target rotates once", async () => {
    const { targets, fleet } = await setup(24, 3);
    const { queue } = await queues();
    const plan = await planAndEnqueue(fleet, queue, { spreadSeconds: 2 });
    expect(plan.clusters.map((c) => c.error)).toEqual([undefined, undefined]);
    expect(plan.clusters.map((c) => [c.cluster, c.targets, c.namespaces, c.requests, c.due])).toEqual([
      ["east", 12, 3, 3, 12],
      ["west", 12, 3, 3, 12],
    ]);
    expect(plan.messages).toHaveLength(24);
    // Spread: each cluster's messages over [0, 2) s.
    expect(new Set(plan.messages.map((m) => m.delaySeconds))).toEqual(new Set([0, 1]));
    const drained = await drain(queue, handler, { waitSeconds: 1 });
    expect(drained).toMatchObject({ received: 24, failedDeliveries: 0 });
    for (const t of targets) expect((await annotations(t))[ANNOTATIONS.rotationId], `${t.cluster} ${t.secret}`).toBeDefined();
    // Nothing is due any more: the next plan lists again (one request per namespace) and sends nothing.
    const again = await planAndEnqueue(fleet, queue, { spreadSeconds: 2 });
    expect(again.messages).toHaveLength(0);
    expect(again.clusters.map((c) => c.requests)).toEqual([3, 3]);
    expect(await depth(queue)).toBe(0);
  });

  it("a list is paginated and reads no Secret data (PartialObjectMetadataList)", async () => {
    const ns = uniqueName("fl-page");
    await kube.east!.ensureNamespace(ns);
    for (let i = 0; i < 5; i++) await createAppSecret(kube.east!, ns, { name: `s${i}`, reloadLabel: true });
    await createAppSecret(kube.east!, ns, { name: "unlabelled" });
    const before = kube.east!.requestCount;
    const items = await kube.east!.listSecretMetadata(ns, "cnpg.io/reload=true", 2);
    expect(items.map((i) => i.name).sort()).toEqual(["s0", "s1", "s2", "s3", "s4"]);
    expect(kube.east!.requestCount - before).toBe(3);
    expect(items[0]).toEqual({ name: expect.any(String), uid: expect.any(String), labels: expect.any(Object), annotations: expect.any(Object) });
    expect(Object.keys(items[0]!)).not.toContain("data");
  });

  it("a duplicated delivery (at least once) gives one password per period", async () => {
    const { targets, fleet } = await setup(2, 1);
    const { queue } = await queues();
    const t = targets[0]!;
    const body = encodeMessage({ cluster: t.cluster, target: `${t.namespace}/${t.secret}`, due: new Date().toISOString() });
    // Three copies: two in one batch (concurrent: the Lease), one after (the due check).
    await queue.send([{ body, delaySeconds: 0 }, { body, delaySeconds: 0 }]);
    await drain(queue, handler, { waitSeconds: 1 });
    const first = await annotations(t);
    await queue.send([{ body, delaySeconds: 0 }]);
    const results = await consumeBatch(fleet, [{ id: "again", body }]);
    expect(results[0]!.outcome).toBe("not-due");
    await drain(queue, handler, { waitSeconds: 1 });
    const after = await annotations(t);
    expect(after[ANNOTATIONS.rotationId]).toBe(first[ANNOTATIONS.rotationId]);
    expect(after[ANNOTATIONS.fingerprint]).toBe(first[ANNOTATIONS.fingerprint]);
    expect(after[ANNOTATIONS.rotatedAt]).toBe(first[ANNOTATIONS.rotatedAt]);
    expect(await depth(queue)).toBe(0);
  });

  it("a poisoned target ends in the dead-letter queue after maxReceiveCount and does not block the rest", async () => {
    const { targets, fleet } = await setup(8, 2, { missing: ["db-00003-app"] });
    const { queue, dlq } = await queues(2, 1);
    await planAndEnqueue(fleet, queue, { spreadSeconds: 0 });
    const drained = await drain(queue, handler, { waitSeconds: 1, idleRounds: 4, deadlineMs: 60_000 });
    expect(drained.failedDeliveries).toBe(2); // delivered twice, then moved by the redrive policy
    for (const t of targets.filter((x) => x.secret !== "db-00003-app")) expect((await annotations(t))[ANNOTATIONS.rotationId]).toBeDefined();
    // moto moves a message on the receive after its last allowed one.
    await queue.receive(10, 1);
    const dead = await dlq.receive(10, 1);
    expect(dead.map((m) => JSON.parse(m.body).target)).toEqual([`${targets[3]!.namespace}/db-00003-app`]);
    expect(await depth(queue)).toBe(0);
  });

  it("push names a cluster, or runs every cluster's PushSecrets through its own connection; an unreachable cluster fails alone", async () => {
    const closed = await freePort(); // nothing listens there
    process.env.FLEET_DOWN_KUBECONFIG = renderKubeconfig({ server: `https://127.0.0.1:${closed}`, caPem: west.api.caPem }, { user: "x", token: "t" });
    try {
      const { targets, fleet } = await setup(4, 1, { clusters: { west: CLUSTERS.west, down: "  kubeconfigEnv: FLEET_DOWN_KUBECONFIG\n" } });
      const pushName = (t: FleetTarget) => `${t.namespace}/${t.secret}-push`;
      const westTargets = targets.filter((t) => t.cluster === "west");
      const named = await pushHandler({ cluster: "west" });
      expect(named.ok).toBe(true);
      expect(named.results.map((r) => [r.pushSecret, r.outcome, r.remoteKey]).sort()).toEqual(
        westTargets.map((t) => [pushName(t), "pushed", `west-${t.namespace}-${t.secret}`]).sort(),
      );
      // The schedule's run over every cluster: west's already pushed, down's fail, named, with nothing written.
      const all = await pushClusters(fleet);
      expect(all.map((r) => [r.pushSecret, r.outcome]).sort()).toEqual(
        targets.map((t) => [pushName(t), t.cluster === "west" ? "unchanged" : "failed"]).sort(),
      );
      for (const r of all.filter((x) => x.outcome === "failed")) expect(r.error?.message).toMatch(/^cluster "down": /);
      expect(await pushHandler({ cluster: "nowhere" })).toMatchObject({ ok: false, error: { type: "InputError", message: expect.stringMatching(/cluster "nowhere"/) } });
    } finally {
      delete process.env.FLEET_DOWN_KUBECONFIG;
    }
  });

  it("an unreachable cluster: its targets fail and stay queued for a retry; the other cluster's all rotate", async () => {
    const closed = await freePort(); // nothing listens there
    const down = renderKubeconfig({ server: `https://127.0.0.1:${closed}`, caPem: west.api.caPem }, { user: "x", token: "t" });
    process.env.FLEET_DOWN_KUBECONFIG = down;
    try {
      const { targets, fleet } = await setup(12, 2, { clusters: { west: CLUSTERS.west, down: "  kubeconfigEnv: FLEET_DOWN_KUBECONFIG\n  maxConcurrentRotations: 1\n" } });
      const { queue, dlq } = await queues(5, 30);
      const plan = await planAndEnqueue(fleet, queue, { spreadSeconds: 0 });
      const downPlan = plan.clusters.find((c) => c.cluster === "down")!;
      // The planner cannot list it: reported, nothing sent for it, the other cluster planned.
      expect(downPlan.error?.message).toMatch(/127\.0\.0\.1:\d+ failed|ECONNREFUSED/);
      expect(plan.messages).toHaveLength(6);
      // Messages for it anyway (an earlier plan, or the cluster going down meanwhile), in the same batches as west's.
      const downTargets = targets.filter((t) => t.cluster === "down");
      await queue.send(downTargets.map((t) => ({ body: encodeMessage({ cluster: "down", target: `${t.namespace}/${t.secret}`, due: new Date().toISOString() }), delaySeconds: 0 })));
      const start = Date.now();
      const drained = await drain(queue, handler, { waitSeconds: 0, idleRounds: 1, deadlineMs: 20_000 });
      expect(Date.now() - start).toBeLessThan(20_000);
      for (const t of targets.filter((x) => x.cluster === "west")) expect((await annotations(t))[ANNOTATIONS.rotationId]).toBeDefined();
      expect(drained).toMatchObject({ received: 12, failedDeliveries: 6 });
      // Not deleted: in flight until their visibility timeout, then delivered again (up to the DLQ).
      expect(await depth(queue)).toBe(6);
      expect(await depth(dlq)).toBe(0);
      // The breaker: one batch's later messages of the cluster fail at once, without their own timeouts.
      expect(logLines.filter((l) => l.includes("failed without a try")).length).toBeGreaterThan(0);
      await sqs.send(new PurgeQueueCommand({ QueueUrl: queue.url }));
    } finally {
      delete process.env.FLEET_DOWN_KUBECONFIG;
    }
  });
});

describe("bad input: a clear error, nothing enqueued or written", () => {
  const password = "apiVersion: generators.external-secrets.io/v1alpha1\nkind: Password\nmetadata: {name: pg-password}\nspec: {length: 20}\n";
  const cluster = (name: string) => `apiVersion: cnpg-rotator.io/v1alpha1\nkind: KubernetesCluster\nmetadata: {name: ${name}}\nspec:\n  kubeconfigEnv: X\n`;

  it("a target naming an unknown cluster, two clusters with one name: refused at load", () => {
    const dir = mkdtempSync(join(tmpdir(), "fleet-bad-"));
    writeFleet({ dir, targets: 2, namespaces: 1, clusters: CLUSTERS });
    const files = readManifests([dir]);
    expect(files.clusters).toHaveLength(2);
    const es = `apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata:\n  name: x\n  annotations: {cnpg-rotator.io/kubernetes-cluster: north}\nspec:\n  target: {name: x}\n  dataFrom: [{sourceRef: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: pg-password}}}]\n`;
    expect(() => loadManifests([{ file: "a.yaml", text: `${password}---\n${cluster("east")}---\n${es}` }])).toThrow(
      /a\.yaml: document 3 \(ExternalSecret\/x\): metadata\.annotations\["cnpg-rotator\.io\/kubernetes-cluster"\]: no KubernetesCluster "north"/,
    );
    expect(() => loadManifests([{ file: "a.yaml", text: `${cluster("east")}---\n${cluster("east")}` }])).toThrow(/duplicate KubernetesCluster "east"/);
  });

  it("a malformed queue message fails alone, named, with nothing written; the handler reports only it", async () => {
    const { targets } = await setup(2, 1);
    const t = targets[1]!;
    const before = (await kube[t.cluster]!.readSecret(t.namespace, t.secret))!.resourceVersion;
    const good = targets[0]!;
    const goodBody = encodeMessage({ cluster: good.cluster, target: `${good.namespace}/${good.secret}`, due: new Date().toISOString() });
    const event = {
      Records: [
        { eventSource: "aws:sqs" as const, messageId: "m-bad-json", body: "{not json" },
        { eventSource: "aws:sqs" as const, messageId: "m-bad-field", body: JSON.stringify({ v: 1, cluster: t.cluster, target: `${t.namespace}/${t.secret}`, due: "soon" }) },
        { eventSource: "aws:sqs" as const, messageId: "m-unknown-cluster", body: encodeMessage({ cluster: "north", target: `${t.namespace}/${t.secret}`, due: new Date().toISOString() }) },
        { eventSource: "aws:sqs" as const, messageId: "m-unknown-target", body: encodeMessage({ cluster: t.cluster, target: `${t.namespace}/nope`, due: new Date().toISOString() }) },
        { eventSource: "aws:sqs" as const, messageId: "m-good", body: goodBody },
      ],
    };
    const answer = (await handler(event)) as Awaited<ReturnType<typeof consumeSqs>>;
    expect(answer.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(["m-bad-field", "m-bad-json", "m-unknown-cluster", "m-unknown-target"]);
    const byId = Object.fromEntries(answer.results.map((r) => [r.id, r]));
    expect(byId["m-bad-json"]!.error!.message).toMatch(/^queue message m-bad-json: expected a JSON object/);
    expect(byId["m-bad-field"]!.error!.message).toMatch(/^queue message m-bad-field: due:/);
    expect(byId["m-unknown-cluster"]!.error!.message).toMatch(/cluster "north": no KubernetesCluster of that name/);
    expect(byId["m-unknown-target"]!.error!.message).toMatch(/no ExternalSecret targets Secret .*\/nope there/);
    expect(byId["m-good"]!.outcome).toBe("rotated");
    expect((await kube[t.cluster]!.readSecret(t.namespace, t.secret))!.resourceVersion).toBe(before);
  });

  it("bad manifests fail the planner before anything is sent", async () => {
    const { queue } = await queues();
    const dir = mkdtempSync(join(tmpdir(), "fleet-bad-"));
    writeFleet({ dir, targets: 2, namespaces: 1, clusters: { east: "  server: https://127.0.0.1:1\n  identity: gke\n  certificateAuthorityData: bm9wZQ==\n" } });
    expect(() => fleetFromEnvironment({ manifestSet: readManifests([dir]), log: capturingLogger() })).toThrow(InputError);
    expect(() => fleetFromEnvironment({ manifestSet: readManifests([dir]), log: capturingLogger() })).toThrow(
      /KubernetesCluster\/east\): spec: certificateAuthorityData: expected a CA certificate/,
    );
    expect(await depth(queue)).toBe(0);
  });

  it("status names a cluster: where that cluster's targets stand, read with its own connection; a target of another cluster is refused", async () => {
    const { targets, fleet } = await setup(2, 1);
    const [east, west] = [targets.find((t) => t.cluster === "east")!, targets.find((t) => t.cluster === "west")!];
    const name = (t: FleetTarget) => `${t.namespace}/${t.secret}`;
    const before = await statusHandler({ cluster: "west", target: name(west) });
    // Its Secret exists, its store does not have the key yet.
    expect(before.ok).toBe(false);
    expect(before.results[0]).toMatchObject({ kind: "ExternalSecret", target: name(west), ready: false, reason: "Drift" });
    await consumeBatch(fleet, [{ id: "w", body: encodeMessage({ cluster: "west", target: name(west), due: new Date().toISOString() }) }]);
    const after = await statusHandler({ cluster: "west", target: name(west) });
    expect(after.ok).toBe(true);
    expect(after.results.map((r) => [r.kind, r.reason])).toEqual([
      ["ExternalSecret", "SecretSynced"],
      ["PushSecret", "SecretSynced"],
    ]);
    expect(await statusHandler({ cluster: "east", target: name(west) })).toMatchObject({ ok: false, error: { type: "InputError" } });
    expect(await statusHandler({ cluster: "west" })).toMatchObject({ ok: false, error: { type: "InputError", message: expect.stringMatching(/name the targets/) } });
    // The east target is untouched, seen through east's connection.
    const eastStatus = await statusHandler({ cluster: "east", target: name(east) });
    expect(eastStatus.ok).toBe(false);
    expect(eastStatus.results[0]).toMatchObject({ kind: "ExternalSecret", target: name(east), ready: false, reason: "Drift" });
  });

  it("cnpg-rotator validate connects to every KubernetesCluster and asks for the planner's list; --skip-clusters connects to none", async () => {
    const dir = mkdtempSync(join(tmpdir(), "fleet-validate-"));
    const closed = await freePort(); // nothing listens there
    writeFleet({
      dir,
      targets: 8,
      namespaces: 2,
      namespacePrefix: uniqueName("fl-val"),
      clusters: {
        east: "  kubeconfigEnv: FLEET_EAST_KUBECONFIG\n",
        west: "  kubeconfigFrom: aws:fleet-west-kubeconfig\n",
        limited: "  kubeconfigEnv: FLEET_LIMITED_KUBECONFIG\n",
        gone: "  kubeconfigEnv: FLEET_GONE_KUBECONFIG\n",
      },
    });
    vi.stubEnv("FLEET_EAST_KUBECONFIG", readFileSync(infra.kubeconfigPath, "utf8"));
    vi.stubEnv("FLEET_LIMITED_KUBECONFIG", renderKubeconfig(infra, { user: "limited", token: infra.tokens.limited }));
    vi.stubEnv("FLEET_GONE_KUBECONFIG", renderKubeconfig({ ...infra, server: `https://127.0.0.1:${closed}` }, { user: "admin", token: infra.adminToken }));
    vi.stubEnv("CNPG_ROTATOR_CLUSTER_TIMEOUT_MS", "2000");
    try {
      const lines: string[] = [];
      const code = await main(["validate", "-f", dir], (t) => lines.push(t), (t) => lines.push(t));
      const text = lines.join("\n");
      expect(code, text).toBe(1);
      expect(text).toMatch(/4 KubernetesClusters/);
      expect(text).toMatch(/cluster east: connected; may list Secrets in its 2 namespaces/);
      expect(text).toMatch(/cluster west: connected; may list Secrets in its 2 namespaces/);
      expect(text).toMatch(/cluster limited: connected; may not: fl-val-\w+-0000: list secrets; fl-val-\w+-0001: list secrets/);
      expect(text).toMatch(new RegExp(`cluster gone: unreachable: \\w+: .*127\\.0\\.0\\.1:${closed}`));

      const skipped: string[] = [];
      expect(await main(["validate", "-f", dir, "--skip-clusters"], (t) => skipped.push(t), (t) => skipped.push(t))).toBe(0);
      expect(skipped.join("\n")).not.toMatch(/cluster /);
    } finally {
      vi.unstubAllEnvs();
    }
  });
});
