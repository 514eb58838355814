// Where a rotation's CPU goes: this process's CPU per request of each client the
// engine uses, next to a bare node:http(s) request to the same server (the floor for
// one request over a kept-alive connection), and the CPU of a rotation's pure work
// (generate, render, check). Requests run one at a time after a warm-up.
import { type Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { DescribeSecretCommand, GetSecretValueCommand } from "@aws-sdk/client-secrets-manager";
import { connectCluster } from "../lib/kubernetes/index.ts";
import { loadManifests } from "../lib/manifests/index.ts";
import { planRotations } from "../lib/rotation/plan.ts";
import { fingerprint, generateValues, renderTarget } from "../lib/rotation/render.ts";
import { type Bench, createTargets, manifestFiles } from "./fixtures.ts";
import { round } from "./stats.ts";

export interface ClientCosts {
  /** CPU ms per operation (user + system of this process). */
  cpuMsPerOp: Record<string, number>;
  ops: number;
}

async function cpuPerOp(ops: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(30, ops); i++) await fn();
  const start = process.cpuUsage();
  for (let i = 0; i < ops; i++) await fn();
  const used = process.cpuUsage(start);
  return round((used.user + used.system) / 1000 / ops, 3);
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
  cpu["kube: readSecret (engine's client)"] = await cpuPerOp(ops, () => kube.readSecret(namespace, secretName));
  await kube.close();

  const agent = new HttpsAgent({ keepAlive: true, ca: bench.infra.caPem });
  const url = new URL(`${bench.infra.server}/api/v1/namespaces/${namespace}/secrets/${secretName}`);
  const headers = { authorization: `Bearer ${bench.infra.adminToken}`, accept: "application/json" };
  cpu["kube: GET Secret, bare node:https + JSON.parse"] = await cpuPerOp(
    ops,
    () =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(url, { agent, headers }, (res) => readBody(res).then(resolve, reject));
        req.on("error", reject);
        req.end();
      }),
  );
  agent.destroy();

  cpu["store: DescribeSecret (AWS SDK)"] = await cpuPerOp(ops, () => bench.sm.send(new DescribeSecretCommand({ SecretId: remoteKey })));
  cpu["store: GetSecretValue (AWS SDK)"] = await cpuPerOp(ops, () =>
    bench.sm.send(new GetSecretValueCommand({ SecretId: remoteKey, VersionStage: "AWSCURRENT" })),
  );
  // moto answers "Connection: close", so this floor includes a new TCP connection per request, as the SDK's calls do here.
  const moto = new URL(bench.infra.awsEndpoint);
  const body = JSON.stringify({ SecretId: remoteKey });
  cpu["store: DescribeSecret, bare node:http, unsigned"] = await cpuPerOp(
    ops,
    () =>
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
  );

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
