// The servers and the targets the benchmarks rotate: CNPG app Secrets in a fresh
// namespace, the seed's Password + ExternalSecret per Secret, a PushSecret per Secret
// into one AWS Secrets Manager store (moto), and each remote secret already holding
// the Secret as cnpg-rotator's first push leaves it, so every rotation measured is a
// steady-state one (the scheduled case), not a first-ever one.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CreateSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { parse as parseYaml, stringify as toYaml } from "yaml";
import { buildAppSecretData } from "../lib/cnpg/index.ts";
import { connectCluster, type KubernetesClient } from "../lib/kubernetes/index.ts";
import type { ManifestFile } from "../lib/manifests/index.ts";
import { wholeSecretJson } from "../lib/rotation/plan.ts";
import { PUSH_TOKEN_PREFIX } from "../lib/stores/aws.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE } from "../lib/stores/types.ts";
import { renderKubeconfig, startTestInfra, type TestInfra } from "../test/infra/servers.ts";
import { mapLimit } from "./stats.ts";

const SEED_DIR = join(import.meta.dirname, "../examples/seed");
const seed = (file: string) => readFileSync(join(SEED_DIR, file), "utf8");

export const STORE_NAME = "aws-backend";
export const AWS_REGION = "us-east-1";

export interface Bench {
  readonly infra: TestInfra;
  /** Admin kubeconfig YAML (what CNPG_ROTATOR_KUBECONFIG carries on Lambda). */
  readonly kubeconfigYaml: string;
  /** AWS SDK settings that reach moto with dummy credentials. */
  readonly awsEnv: Record<string, string>;
  /** Clients for setup and checks only: their requests are never in a measurement. */
  readonly kube: KubernetesClient;
  readonly sm: SecretsManagerClient;
  stop(): Promise<void>;
}

export async function startBench(): Promise<Bench> {
  const infra = await startTestInfra();
  const awsEnv = {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: infra.awsEndpoint,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_SESSION_TOKEN: "testing",
    AWS_REGION,
    AWS_DEFAULT_REGION: AWS_REGION,
  };
  // The store builds its own SecretsManagerClient from the SDK's env chain, as on Lambda.
  Object.assign(process.env, awsEnv);
  const kubeconfigYaml = renderKubeconfig(infra, { user: "admin", token: infra.adminToken });
  const kube = connectCluster({ kubeconfigYaml });
  const sm = new SecretsManagerClient({ region: AWS_REGION });
  return {
    infra,
    kubeconfigYaml,
    awsEnv,
    kube,
    sm,
    async stop() {
      sm.destroy();
      await kube.close().catch(() => {});
      await infra.stop();
    },
  };
}

/** One target: a Secret, and the remote key its PushSecret writes. */
export interface Target {
  readonly secretName: string;
  readonly remoteKey: string;
}

export interface TargetSet {
  readonly namespace: string;
  readonly targets: readonly Target[];
}

/** Creates `n` app Secrets in a new namespace and their remote secrets in moto, with bounded concurrency. */
export async function createTargets(bench: Bench, n: number, prefix: string, concurrency = 16): Promise<TargetSet> {
  const namespace = `${prefix}-${randomBytes(3).toString("hex")}`;
  await bench.kube.ensureNamespace(namespace);
  const width = String(Math.max(n - 1, 0)).length;
  const targets = Array.from({ length: n }, (_, i) => ({
    secretName: `app-${String(i).padStart(width, "0")}`,
    remoteKey: `${namespace}/app-${String(i).padStart(width, "0")}`,
  }));
  await mapLimit(targets, concurrency, async (t) => {
    const data = buildAppSecretData({
      clusterName: "cluster-example",
      namespace,
      username: "app",
      dbname: "app",
      password: randomBytes(24).toString("base64url"),
    });
    await bench.kube.createSecret(namespace, t.secretName, {
      type: "kubernetes.io/basic-auth",
      data,
      labels: { "cnpg.io/cluster": "cluster-example", "cnpg.io/userType": "app" },
      annotations: { "cnpg.io/operatorVersion": "1.27.1" },
    });
    // What the first rotation's push leaves: our tag, the whole Secret as JSON, a push- version.
    await bench.sm.send(
      new CreateSecretCommand({
        Name: t.remoteKey,
        SecretString: wholeSecretJson(data),
        ClientRequestToken: `${PUSH_TOKEN_PREFIX}${randomBytes(24).toString("hex")}`,
        Tags: [{ Key: MANAGED_BY_KEY, Value: MANAGED_BY_VALUE }],
      }),
    );
  });
  return { namespace, targets };
}

/**
 * The manifests for `targets` (namespace-less, like the shipped ones): the seed's Password
 * generator verbatim, the seed's ExternalSecret renamed per Secret, a PushSecret per Secret
 * pushing the whole Secret to `remoteKey`, and one aws SecretStore.
 */
export function manifestFiles(targets: readonly Target[]): ManifestFile[] {
  const external = parseYaml(seed("external-secret.yaml")) as {
    metadata: { name: string };
    spec: { target: { name: string } };
  };
  const externalSecrets = targets.map((t) => {
    const doc = structuredClone(external);
    doc.metadata.name = `${t.secretName}-secret`;
    doc.spec.target.name = t.secretName;
    return toYaml(doc);
  });
  const pushSecrets = targets.map((t) =>
    toYaml({
      apiVersion: "external-secrets.io/v1alpha1",
      kind: "PushSecret",
      metadata: { name: `push-${t.secretName}` },
      spec: {
        refreshInterval: "24h",
        secretStoreRefs: [{ name: STORE_NAME, kind: "SecretStore" }],
        selector: { secret: { name: t.secretName } },
        data: [{ match: { remoteRef: { remoteKey: t.remoteKey } } }],
      },
    }),
  );
  const store = toYaml({
    apiVersion: "external-secrets.io/v1",
    kind: "SecretStore",
    metadata: { name: STORE_NAME },
    spec: { provider: { aws: { service: "SecretsManager", region: AWS_REGION } } },
  });
  return [
    { file: "password-generator.yaml", text: seed("password-generator.yaml") },
    { file: "external-secrets.yaml", text: externalSecrets.join("---\n") },
    { file: "push-secrets.yaml", text: pushSecrets.join("---\n") },
    { file: "secret-store.yaml", text: store },
  ];
}
