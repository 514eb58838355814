// Shared pieces of the end-to-end tests: the CNPG app Secret as CNPG writes it,
// the seed's manifests plus a store, and a logger whose lines a test can search.
import { randomBytes } from "node:crypto";
import dc from "node:diagnostics_channel";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { inject } from "vitest";
import { buildAppSecretData } from "../../lib/cnpg/index.ts";
import { connectCluster, type KubernetesClient } from "../../lib/kubernetes/index.ts";
import { createLogger, type Logger } from "../../lib/log.ts";
import { loadManifests, type ManifestSet } from "../../lib/manifests/index.ts";
import type { Engine } from "../../lib/rotation/engine.ts";
import { storeFactory } from "../../lib/rotation/stores.ts";

export const SEED_DIR = join(import.meta.dirname, "../../examples/seed");
export const seedYaml = (file: string) => readFileSync(join(SEED_DIR, file), "utf8");

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString("hex")}`;
}

export function adminClient(): KubernetesClient {
  return connectCluster({ kubeconfigPath: inject("infra").kubeconfigPath });
}

export const CNPG_LABELS = { "cnpg.io/cluster": "cluster-example", "cnpg.io/userType": "app" };
export const CNPG_ANNOTATIONS = { "cnpg.io/operatorVersion": "1.27.1" };

/** `cluster-example-app` as CNPG creates it: 11 keys, basic-auth, CNPG's labels (without the reload label unless asked). */
export async function createAppSecret(
  kube: KubernetesClient,
  namespace: string,
  options: { password?: string; reloadLabel?: boolean; name?: string } = {},
) {
  const data = buildAppSecretData({
    clusterName: "cluster-example",
    namespace,
    username: "app",
    dbname: "app",
    password: options.password ?? randomBytes(24).toString("base64url"),
  });
  return kube.createSecret(namespace, options.name ?? "cluster-example-app", {
    type: "kubernetes.io/basic-auth",
    data,
    labels: { ...CNPG_LABELS, ...(options.reloadLabel ? { "cnpg.io/reload": "true" } : {}) },
    annotations: CNPG_ANNOTATIONS,
  });
}

export function fileStoreYaml(path: string, name = "local"): string {
  return `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: ${name}
spec:
  provider:
    file:
      path: ${path}
`;
}

export function awsStoreYaml(name = "aws-backend"): string {
  return `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata:
  name: ${name}
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
`;
}

export function pushSecretYaml(store: string, remoteKey: string, secret = "cluster-example-app"): string {
  return `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: push-${secret}
spec:
  refreshInterval: 24h
  secretStoreRefs:
    - name: ${store}
      kind: SecretStore
  selector:
    secret:
      name: ${secret}
  data:
    - match:
        remoteRef:
          remoteKey: ${remoteKey}
`;
}

/** The seed's Password + ExternalSecret, verbatim, plus the given documents, in `namespace`. */
export function seedManifests(namespace: string, ...extra: string[]): ManifestSet {
  return loadManifests(
    [
      { file: "password-generator.yaml", text: seedYaml("password-generator.yaml") },
      { file: "external-secret.yaml", text: seedYaml("external-secret.yaml") },
      ...extra.map((text, i) => ({ file: `extra-${i}.yaml`, text })),
    ],
    { namespace },
  );
}

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "cnpg-rotator-it-"));
}

/** Every log line written in this test file: by loggers made here, and anything on stdout/stderr (see log-guard.ts). */
export const logLines: string[] = [];
/** Every secret value a test of this file has seen; log-guard.ts checks none reached a log line. */
export const seenSecrets = new Set<string>();

export function capturingLogger(): Logger {
  const sink = new Writable({
    write(chunk, _enc, done) {
      logLines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
  return createLogger({ level: "debug", destination: sink });
}

export function engineFor(manifests: ManifestSet, kube: KubernetesClient, extra: Partial<Engine> = {}): Engine {
  return {
    manifests,
    kube,
    log: capturingLogger(),
    createStore: storeFactory(),
    ...extra,
  };
}

/** The AWS Secrets Manager requests this process sends while `run` runs, by operation (X-Amz-Target), as bench/requests.ts counts them. */
export async function awsRequests<T>(run: () => Promise<T>): Promise<{ result: T; ops: string[] }> {
  const ops: string[] = [];
  const listener = (message: unknown) => {
    const target = (message as { request: { getHeader(name: string): unknown } }).request.getHeader("x-amz-target");
    if (typeof target === "string") ops.push(target.replace(/^secretsmanager\./, ""));
  };
  dc.subscribe("http.client.request.start", listener);
  try {
    return { result: await run(), ops };
  } finally {
    dc.unsubscribe("http.client.request.start", listener);
  }
}
