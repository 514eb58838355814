// Where a rotation's CPU goes: this process's CPU per request of each client the
// engine uses, next to a bare node:http(s) request to the same server (the floor for
// one request over a kept-alive connection), the AWS SDK with its defaults next to the
// client lib/stores/aws-client.ts makes, and the CPU of a rotation's pure work (generate,
// render, check). Requests run one at a time after a warm-up, the operations of a group
// taking turns in short rounds (medians), so that a drift in the machine's load moves
// them alike.
import { type Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { DescribeSecretCommand, GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { connectCluster } from "../lib/kubernetes/index.ts";
import { loadManifests } from "../lib/manifests/index.ts";
import { planRotations } from "../lib/rotation/plan.ts";
import { fingerprint, generateValues, renderTarget } from "../lib/rotation/render.ts";
import { createSecretsManagerClient } from "../lib/stores/aws-client.ts";
import { type Bench, createTargets, manifestFiles } from "./fixtures.ts";
import { median, round } from "./stats.ts";

export interface ClientCosts {
  /** CPU ms per operation (user + system of this process). */
  cpuMsPerOp: Record<string, number>;
  ops: number;
}

async function cpuPerOp(ops: number, fn: () => Promise<unknown>): Promise<number> {
  return (await interleaved(ops, { op: fn })).op!;
}

/** CPU ms per call of each operation: `ops` calls each, in 10 rounds taking turns (after 30 unmeasured each); medians. */
async function interleaved(ops: number, fns: Record<string, () => Promise<unknown>>): Promise<Record<string, number>> {
  const rounds = 10;
  const per = Math.max(1, Math.round(ops / rounds));
  const samples: Record<string, number[]> = {};
  for (const fn of Object.values(fns)) for (let i = 0; i < Math.min(30, ops); i++) await fn();
  for (let r = 0; r < rounds; r++) {
    for (const [name, fn] of Object.entries(fns)) {
      const start = process.cpuUsage();
      for (let i = 0; i < per; i++) await fn();
      const used = process.cpuUsage(start);
      samples[name] = [...(samples[name] ?? []), (used.user + used.system) / 1000 / per];
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, round(median(v), 3)]));
}

function readBody(res: NodeJS.ReadableStream): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (d: Buffer) => chunks.push(d));
    res.on("end", () => resolve(JSON.parse(Buffer.concat(chunks).toString("utf8"))));
    res.on("error", reject);
  });
}

export async function benchClientCosts(bench: Bench, ops = 200): Promise<ClientCosts> {
  const set = await createTargets(bench, 1, "bench-clients");
  const { namespace } = set;
  const { secretName, remoteKey } = set.targets[0]!;
  const cpu: Record<string, number> = {};

  const kube = connectCluster({ kubeconfigYaml: bench.kubeconfigYaml });
  const agent = new HttpsAgent({ keepAlive: true, ca: bench.infra.caPem });
  const url = new URL(`${bench.infra.server}/api/v1/namespaces/${namespace}/secrets/${secretName}`);
  const headers = { authorization: `Bearer ${bench.infra.adminToken}`, accept: "application/json" };
  Object.assign(
    cpu,
    await interleaved(ops, {
      "kube: readSecret (engine's client)": () => kube.readSecret(namespace, secretName),
      "kube: GET Secret, bare node:https + JSON.parse": () =>
        new Promise((resolve, reject) => {
          const req = httpsRequest(url, { agent, headers }, (res) => readBody(res).then(resolve, reject));
          req.on("error", reject);
          req.end();
        }),
    }),
  );
  await kube.close();
  agent.destroy();

  // moto answers "Connection: close", so each of these opens a new TCP connection, the SDK's calls as the bare one.
  const moto = new URL(bench.infra.awsEndpoint);
  const body = JSON.stringify({ SecretId: remoteKey });
  const sdkDefaults = new SecretsManagerClient({ region: bench.awsEnv.AWS_REGION });
  const ours = createSecretsManagerClient(bench.awsEnv.AWS_REGION!);
  Object.assign(
    cpu,
    await interleaved(ops, {
      "store: DescribeSecret (AWS SDK, its defaults)": () => sdkDefaults.send(new DescribeSecretCommand({ SecretId: remoteKey })),
      "store: DescribeSecret (lib/stores/aws-client.ts)": () => ours.send(new DescribeSecretCommand({ SecretId: remoteKey })),
      "store: GetSecretValue (lib/stores/aws-client.ts)": () =>
        ours.send(new GetSecretValueCommand({ SecretId: remoteKey, VersionStage: "AWSCURRENT" })),
      "store: DescribeSecret, bare node:http, unsigned": () =>
        new Promise((resolve, reject) => {
          const req = httpRequest(
            {
              host: moto.hostname,
              port: moto.port,
              method: "POST",
              path: "/",
              agent: false as unknown as HttpAgent,
              headers: {
                "content-type": "application/x-amz-json-1.1",
                "x-amz-target": "secretsmanager.DescribeSecret",
                authorization:
                  "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
              },
            },
            (res) => readBody(res).then(resolve, reject),
          );
          req.on("error", reject);
          req.end(body);
        }),
    }),
  );
  sdkDefaults.destroy();
  ours.destroy();

  const manifests = loadManifests(manifestFiles(set.targets), { namespace });
  const target = planRotations(manifests)[0]!;
  const secret = (await bench.kube.readSecret(namespace, secretName))!;
  cpu["engine: generate + render + fingerprint (per rotation)"] = await cpuPerOp(ops * 10, async () => {
    const values = generateValues(target.externalSecret);
    const rendered = renderTarget(target.externalSecret, values, secret.data);
    return fingerprint(rendered.data.password ?? "");
  });
  return { cpuMsPerOp: cpu, ops };
}
