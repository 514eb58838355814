// Fleets of manifests for the fleet tests and bench: `targets` ExternalSecrets (each with its
// PushSecret to a file store) over `namespaces` namespaces and the given clusters, one file per
// target, as a platform team's repository of per-application manifests would hold them.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface FleetShape {
  readonly dir: string;
  readonly targets: number;
  readonly namespaces: number;
  /** KubernetesCluster documents (name → spec YAML lines, indented two spaces); targets go round-robin over them, none: default. */
  readonly clusters?: Readonly<Record<string, string>>;
  /** The file store's path (default /tmp/cnpg-rotator/fleet-store.json). */
  readonly storePath?: string;
  readonly refreshInterval?: string;
  /** Namespaces are `<prefix>-NNNN` (default "team"). */
  readonly namespacePrefix?: string;
  /** Push to AWS Secrets Manager (under this prefix) instead of the file store. */
  readonly awsPrefix?: string;
}

export interface FleetTarget {
  readonly cluster: string;
  readonly namespace: string;
  readonly secret: string;
}

export function namespaceName(i: number, prefix = "team"): string {
  return `${prefix}-${String(i).padStart(4, "0")}`;
}

/** Writes the fleet's files into `dir` and returns its targets. */
export function writeFleet(shape: FleetShape): FleetTarget[] {
  mkdirSync(shape.dir, { recursive: true });
  const clusters = Object.keys(shape.clusters ?? {});
  const storePath = shape.storePath ?? "/tmp/cnpg-rotator/fleet-store.json";
  const shared = [
    ...clusters.map(
      (name) => `apiVersion: cnpg-rotator.io/v1alpha1\nkind: KubernetesCluster\nmetadata: {name: ${name}}\nspec:\n${shape.clusters![name]}`,
    ),
    `apiVersion: external-secrets.io/v1\nkind: ClusterSecretStore\nmetadata: {name: fleet-store}\nspec:\n  provider:\n` +
      (shape.awsPrefix !== undefined
        ? `    aws: {service: SecretsManager, region: us-east-1, prefix: "${shape.awsPrefix}"}\n`
        : `    file: {path: ${storePath}}\n`),
  ];
  for (let n = 0; n < shape.namespaces; n++) {
    shared.push(
      `apiVersion: generators.external-secrets.io/v1alpha1\nkind: Password\nmetadata: {name: pg-password, namespace: ${namespaceName(n, shape.namespacePrefix)}}\nspec: {length: 32, digits: 5, symbols: 4, symbolCharacters: "-_$@"}\n`,
    );
  }
  writeFileSync(join(shape.dir, "fleet-shared.yaml"), shared.join("---\n"));
  const targets: FleetTarget[] = [];
  for (let i = 0; i < shape.targets; i++) {
    const cluster = clusters.length > 0 ? clusters[i % clusters.length]! : "default";
    const namespace = namespaceName(Math.floor(i / Math.max(1, clusters.length)) % shape.namespaces, shape.namespacePrefix);
    const secret = `db-${String(i).padStart(5, "0")}-app`;
    const annotations = clusters.length > 0 ? `\n  annotations: {cnpg-rotator.io/kubernetes-cluster: ${cluster}}` : "";
    writeFileSync(
      join(shape.dir, `${secret}.yaml`),
      `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: ${secret}-es
  namespace: ${namespace}${annotations}
spec:
  refreshInterval: "${shape.refreshInterval ?? "24h"}"
  target:
    name: ${secret}
    creationPolicy: Merge
    template:
      metadata: {labels: {cnpg.io/reload: "true"}}
      data:
        password: "{{ .password }}"
        uri: "postgresql://app:{{ .password }}@${secret}-rw.${namespace}:5432/app"
  dataFrom:
    - sourceRef: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: pg-password}}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: ${secret}-push
  namespace: ${namespace}${annotations}
spec:
  secretStoreRefs: [{name: fleet-store, kind: ClusterSecretStore}]
  selector: {secret: {name: ${secret}}}
  data: [{match: {remoteRef: {remoteKey: ${cluster}-${namespace}-${secret}}}}]
`,
    );
    targets.push({ cluster, namespace, secret });
  }
  return targets;
}
