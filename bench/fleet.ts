// Fleet bench (issue 13): N targets across 2 local clusters, end to end as deployed —
// manifests compiled per target as `serverless package` ships them, the planner (one
// metadata-only list per namespace per cluster) sending to moto's SQS, and consumer
// containers as separate processes (bench/fleet-child.ts) running the rotate handler on
// batches they receive and delete, the way the event source mapping does. Checks every
// target rotated exactly once (its rotation id is the first one derived from its Secret).
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { CreateSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { CreateQueueCommand } from "@aws-sdk/client-sqs";
import { buildAppSecretData } from "../lib/cnpg/index.ts";
import { splitCompiled } from "../lib/fleet/compiled.ts";
import { connectCluster, type KubernetesClient } from "../lib/kubernetes/index.ts";
import { createSqsClient } from "../lib/queues/sqs.ts";
import { compileManifests } from "../lib/rotation/files.ts";
import { ANNOTATIONS, successorId } from "../lib/rotation/names.ts";
import { packageArtifact } from "../test/infra/artifact.ts";
import { writeFleet } from "../test/infra/fleet-manifests.ts";
import { renderKubeconfig, startEtcd, startKubeApiserver, startTestInfra } from "../test/infra/servers.ts";
import { mapLimit, mb, quantile, round } from "./stats.ts";

export interface FleetOptions {
  readonly sizes: readonly number[];
  /** Consumer containers at once (the event source mapping's MaximumConcurrency). */
  readonly consumers?: number;
  /** Namespaces per cluster, the same for every size: the planner's requests should not move with N. */
  readonly namespaces?: number;
  /** --max-old-space-size of each consumer (as a memory-limited container would cap its heap); default none. */
  readonly heapMb?: number;
  readonly log: (line: string) => void;
}

export interface FleetRow {
  readonly n: number;
  readonly clusters: number;
  readonly namespacesPerCluster: number;
  readonly consumers: number;
  readonly heapMb?: number;
  /** Planner start to the last consumer's exit. */
  readonly seconds: number;
  readonly plannerSeconds: number;
  /** Of which sending the messages (SendMessageBatch to moto). */
  readonly plannerSendSeconds: number;
  /** Requests the planner sent to each API server. */
  readonly plannerRequests: Record<string, number>;
  /** Peak RSS of the planner's process (it reads every target). */
  readonly plannerPeakRssMb: number;
  readonly messages: number;
  readonly outcomes: Record<string, number>;
  readonly rotatedOnce: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** The highest peak RSS of one consumer process (each a warm container serving many invocations). */
  readonly peakRssMb: number;
  /** The highest RSS seen after any one invocation, over all consumers. */
  readonly maxInvocationRssMb: number;
  /** Live heap after a full GC, after a consumer's first and its last invocation (the largest over consumers): a leak would grow it. */
  readonly liveHeapMb: { readonly first: number; readonly last: number };
  readonly batches: number;
  readonly loadAverage: { readonly before: number[]; readonly after: number[] };
}

const ROOT = join(import.meta.dirname, "..");
const NODE = process.execPath;

export async function benchFleet(options: FleetOptions): Promise<FleetRow[]> {
  const log = options.log;
  const consumers = options.consumers ?? 4;
  const nsPerCluster = options.namespaces ?? 10;
  log("fleet: npx serverless package (the rotate bundle the consumers run)...");
  const artifact = await packageArtifact({ log });
  const infra = await startTestInfra();
  const westDir = join(infra.tmpDir, "west");
  mkdirSync(westDir);
  const westEtcd = await startEtcd(westDir);
  const westApi = await startKubeApiserver(westDir, westEtcd.endpoint);
  const aws = {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: infra.awsEndpoint,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_SESSION_TOKEN: "testing",
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
  };
  Object.assign(process.env, aws);
  const eastYaml = renderKubeconfig(infra, { user: "admin", token: infra.adminToken });
  const westYaml = renderKubeconfig(westApi, { user: "admin", token: westApi.tokens.admin });
  const kube: Record<string, KubernetesClient> = { east: connectCluster({ kubeconfigYaml: eastYaml }), west: connectCluster({ kubeconfigYaml: westYaml }) };
  const sm = new SecretsManagerClient({ region: "us-east-1" });
  await sm.send(new CreateSecretCommand({ Name: "bench-west-kubeconfig", SecretString: westYaml }));
  const sqs = createSqsClient("us-east-1", { endpoint: infra.awsEndpoint });
  const rows: FleetRow[] = [];
  try {
    for (const n of options.sizes) {
      const work = mkdtempSync(join(os.tmpdir(), `bench-fleet-${n}-`));
      try {
        rows.push(await runSize(n));
      } finally {
        rmSync(work, { recursive: true, force: true });
      }

      async function runSize(size: number): Promise<FleetRow> {
        const prefix = `b${size}`;
        const dir = join(work, "manifests");
        const targets = writeFleet({
          dir,
          targets: size,
          namespaces: nsPerCluster,
          namespacePrefix: prefix,
          awsPrefix: `${prefix}/`,
          clusters: { east: "  kubeconfigEnv: BENCH_EAST_KUBECONFIG\n", west: "  kubeconfigFrom: aws:bench-west-kubeconfig\n" },
        });
        // As serverless/derive.cjs ships them.
        const compiled = join(work, "compiled");
        const { set, files } = compileManifests([dir]);
        for (const [part, text] of splitCompiled(set, files)) {
          mkdirSync(dirname(join(compiled, part)), { recursive: true });
          writeFileSync(join(compiled, part), text);
        }
        log(`fleet n=${size}: creating ${size} Secrets in 2 clusters...`);
        for (const c of ["east", "west"]) {
          for (const ns of new Set(targets.filter((t) => t.cluster === c).map((t) => t.namespace))) await kube[c]!.ensureNamespace(ns);
        }
        await mapLimit(targets, 16, (t) =>
          kube[t.cluster]!.createSecret(t.namespace, t.secret, {
            type: "kubernetes.io/basic-auth",
            data: buildAppSecretData({ clusterName: t.secret, namespace: t.namespace, username: "app", dbname: "app", password: `initial-${t.secret}` }),
            labels: { "cnpg.io/cluster": t.secret },
          }),
        );
        const url = (await sqs.send(new CreateQueueCommand({ QueueName: `bench-fleet-${size}`, Attributes: { VisibilityTimeout: "120" } }))).QueueUrl!;
        const env = {
          ...process.env,
          ...aws,
          CNPG_ROTATOR_MANIFESTS: compiled,
          BENCH_EAST_KUBECONFIG: eastYaml,
          CNPG_ROTATOR_QUEUE_URL: url,
          BENCH_SQS_ENDPOINT: infra.awsEndpoint,
          CNPG_ROTATOR_LOG_LEVEL: "warn",
          BENCH_HANDLER: artifact.bundle,
        };
        const before = os.loadavg();
        const start = performance.now();
        // The planner, as its function runs it (compiled manifests, every cluster), in a fresh process of its own.
        const plan = await new Promise<{ seconds: number; sendSeconds: number; messages: number; requests: Record<string, number>; peakRssBytes: number }>((resolve, reject) =>
          execFile(NODE, [join(ROOT, "bench/fleet-planner-child.ts")], { cwd: ROOT, env, maxBuffer: 16 * 1024 * 1024, timeout: 3_600_000 }, (err, stdout) =>
            err ? reject(err) : resolve(JSON.parse(stdout.trim().split("\n").pop()!)),
          ),
        );
        const plannerSeconds = (performance.now() - start) / 1000;
        const plannerSendSeconds = plan.sendSeconds;
        log(`fleet n=${size}: planned in ${round(plannerSeconds, 1)} s, ${plan.messages} messages, planner peak RSS ${mb(plan.peakRssBytes)} MB; ${consumers} consumers...`);
        const planner = {
          n: size,
          clusters: 2,
          namespacesPerCluster: nsPerCluster,
          consumers,
          plannerSeconds: round(plannerSeconds, 2),
          plannerSendSeconds: round(plannerSendSeconds, 2),
          plannerRequests: plan.requests,
          plannerPeakRssMb: mb(plan.peakRssBytes),
          messages: plan.messages,
        };
        if (consumers === 0) {
          // --fleet-consumers=0: the planner alone (its memory and requests at this N), nothing consumed.
          const row = { ...planner, seconds: round(plannerSeconds, 1), outcomes: {}, rotatedOnce: 0, p50Ms: 0, p99Ms: 0, peakRssMb: 0, maxInvocationRssMb: 0, liveHeapMb: { first: 0, last: 0 }, batches: 0, loadAverage: { before: before.map((x) => round(x, 2)), after: os.loadavg().map((x) => round(x, 2)) } };
          log(`fleet n=${size} (planner only): ${JSON.stringify(row)}`);
          return row;
        }
        const children = await Promise.all(
          Array.from({ length: consumers }, () =>
            new Promise<{ batches: number; outcomes: Record<string, number>; durations: number[]; peakRssBytes: number; invocationRss: number[]; liveHeap: number[] }>(
              (resolve, reject) =>
                execFile(NODE, ["--expose-gc", ...(options.heapMb ? [`--max-old-space-size=${options.heapMb}`] : []), join(ROOT, "bench/fleet-child.ts")], { cwd: ROOT, env, maxBuffer: 64 * 1024 * 1024, timeout: 3_600_000 }, (err, stdout) =>
                  err ? reject(err) : resolve(JSON.parse(stdout.trim().split("\n").pop()!)),
                ),
            ),
          ),
        );
        const seconds = (performance.now() - start) / 1000;
        const after = os.loadavg();
        // Exactly once: each Secret's rotation id is the first one derived from it (a second rotation would have another).
        let rotatedOnce = 0;
        for (const c of ["east", "west"]) {
          const mine = targets.filter((t) => t.cluster === c);
          for (const ns of new Set(mine.map((t) => t.namespace))) {
            for (const item of await kube[c]!.listSecretMetadata(ns, "cnpg.io/reload=true")) {
              if (item.annotations[ANNOTATIONS.rotationId] === successorId(ns, item.name, item.uid, undefined)) rotatedOnce++;
            }
          }
        }
        const outcomes: Record<string, number> = {};
        for (const ch of children) for (const [k, v] of Object.entries(ch.outcomes)) outcomes[k] = (outcomes[k] ?? 0) + v;
        const durations = children.flatMap((ch) => ch.durations);
        const row: FleetRow = {
          ...planner,
          ...(options.heapMb ? { heapMb: options.heapMb } : {}),
          seconds: round(seconds, 1),
          outcomes,
          rotatedOnce,
          p50Ms: round(quantile(durations, 0.5), 0),
          p99Ms: round(quantile(durations, 0.99), 0),
          peakRssMb: mb(Math.max(...children.map((ch) => ch.peakRssBytes))),
          maxInvocationRssMb: mb(Math.max(...children.flatMap((ch) => ch.invocationRss))),
          liveHeapMb: { first: mb(Math.max(...children.map((ch) => ch.liveHeap[0] ?? 0))), last: mb(Math.max(...children.map((ch) => ch.liveHeap.at(-1) ?? 0))) },
          batches: children.reduce((a, ch) => a + ch.batches, 0),
          loadAverage: { before: before.map((x) => round(x, 2)), after: after.map((x) => round(x, 2)) },
        };
        log(`fleet n=${size}: ${JSON.stringify(row)}`);
        if (rotatedOnce !== size || (outcomes.rotated ?? 0) !== size) {
          throw new Error(`fleet n=${size}: ${rotatedOnce} of ${size} Secrets rotated exactly once, outcomes ${JSON.stringify(outcomes)}`);
        }
        return row;
      }
    }
  } finally {
    sqs.destroy();
    sm.destroy();
    for (const k of Object.values(kube)) await k.close().catch(() => {});
    await westApi.stop();
    await westEtcd.stop();
    await infra.stop();
    artifact.cleanup();
  }
  return rows;
}
