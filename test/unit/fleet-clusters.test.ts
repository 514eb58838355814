import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError, ManifestError } from "../../lib/errors.ts";
import { checkClusters, clusterConcurrency, clusterEnvironment, clusterNames, clusterOf } from "../../lib/fleet/clusters.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { planRotations } from "../../lib/rotation/plan.ts";

const SEED = join(import.meta.dirname, "../../examples/seed");
const seed = (name: string) => readFileSync(join(SEED, name), "utf8");
const STORE = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: local}\nspec:\n  provider:\n    file: {path: /tmp/store.json}\n";

function cluster(name: string, spec: string): string {
  return `apiVersion: cnpg-rotator.io/v1alpha1\nkind: KubernetesCluster\nmetadata: {name: ${name}}\nspec:\n${spec}`;
}

/** The seed's ExternalSecret and a PushSecret for it, in `clusterName` (none: the default cluster). */
function target(clusterName?: string, namespace = "default"): string {
  const annotation = clusterName ? `\n  annotations: {cnpg-rotator.io/kubernetes-cluster: ${clusterName}}` : "";
  const es = seed("external-secret.yaml").replace(
    "  name: cluster-example-app-secret",
    `  name: cluster-example-app-secret\n  namespace: ${namespace}${annotation}`,
  );
  const push = `apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata:\n  name: push\n  namespace: ${namespace}${annotation}\nspec:\n  secretStoreRefs: [{name: local}]\n  selector: {secret: {name: cluster-example-app}}\n  data: [{match: {remoteRef: {remoteKey: ${clusterName ?? "default"}-app}}}]\n`;
  return `${es}\n---\n${push}`;
}

/** `docs` as doc-N.yaml, plus a Password and a file SecretStore in each namespace they use. */
function load(...docs: string[]) {
  const namespaces = [...new Set(docs.flatMap((d) => [...d.matchAll(/namespace: (\S+)/g)].map((m) => m[1]!)))];
  return loadManifests([
    ...docs.map((text, i) => ({ file: `doc-${i}.yaml`, text })),
    ...namespaces.map((ns, i) => ({
      file: `support-${i}.yaml`,
      text: `${STORE.replace("metadata: {name: local}", `metadata: {name: local, namespace: ${ns}}`)}---\n${seed("password-generator.yaml").replace("metadata:\n", `metadata:\n  namespace: ${ns}\n`)}`,
    })),
  ]);
}

describe("KubernetesCluster manifests", () => {
  it("load, and a target names its cluster with an annotation; none names the default", () => {
    const set = load(cluster("east", "  kubeconfigEnv: EAST_KUBECONFIG\n  maxConcurrentRotations: 2\n"), target("east"), target(undefined, "other"));
    expect(set.clusters.map((c) => c.metadata.name)).toEqual(["east"]);
    expect(set.externalSecrets.map(clusterOf).sort()).toEqual(["default", "east"]);
    expect(clusterNames(set)).toEqual(["default", "east"]);
    expect(clusterConcurrency(set, "east", {})).toBe(2);
    expect(clusterConcurrency(set, "default", { CNPG_ROTATOR_CLUSTER_CONCURRENCY: "3" })).toBe(3);
    expect(() => clusterConcurrency(set, "default", { CNPG_ROTATOR_CLUSTER_CONCURRENCY: "x" })).toThrow(InputError);
  });

  it("one Secret name in two clusters is two targets", () => {
    const set = load(cluster("east", "  kubeconfigEnv: EAST\n"), cluster("west", "  kubeconfigEnv: WEST\n"), target("east", "a"), target("west", "b").replaceAll("namespace: b", "namespace: a").replace("name: cluster-example-app-secret", "name: other-es").replace("name: push\n", "name: push2\n"));
    const planned = planRotations(set);
    expect(planned.map((t) => `${t.cluster}|${t.namespace}/${t.secretName}`).sort()).toEqual(["east|a/cluster-example-app", "west|a/cluster-example-app"]);
    // Each target publishes only through its own cluster's PushSecret.
    expect(planned.map((t) => t.publications.map((p) => p.remoteKey).join()).sort()).toEqual(["east-app", "west-app"]);
  });

  it("refuses a target naming an unknown cluster, naming file, document and annotation", () => {
    expect(() => load(cluster("east", "  kubeconfigEnv: E\n"), target("nowhere"))).toThrow(ManifestError);
    expect(() => load(cluster("east", "  kubeconfigEnv: E\n"), target("nowhere"))).toThrow(
      /doc-1\.yaml: document 1 \(ExternalSecret\/cluster-example-app-secret\): metadata\.annotations\["cnpg-rotator\.io\/kubernetes-cluster"\]: no KubernetesCluster "nowhere" among the manifests given; known: "default", "east"/,
    );
  });

  it("refuses two clusters with one name", () => {
    expect(() => load(cluster("east", "  kubeconfigEnv: E\n"), cluster("east", "  kubeconfigEnv: F\n"))).toThrow(
      /doc-1\.yaml: document 1 \(KubernetesCluster\/east\): metadata\.name: duplicate KubernetesCluster "east" \(first in doc-0\.yaml document 1\)/,
    );
  });

  it.each([
    ["no connection", "  maxConcurrentRotations: 2\n", /spec: expected exactly one of kubeconfigFrom, kubeconfigEnv or server/],
    ["two connections", "  kubeconfigEnv: E\n  kubeconfigFrom: aws:x\n", /spec\.kubeconfigEnv: kubeconfigFrom and kubeconfigEnv both name the API server/],
    ["server without identity", "  server: https://k.example\n  certificateAuthorityData: abc\n", /spec\.identity: required with server/],
    ["server without CA", "  server: https://k.example\n  identity: gke\n", /spec\.certificateAuthorityData: required with server/],
    ["http server", "  server: http://k.example\n  identity: gke\n  certificateAuthorityData: abc\n", /spec\.server: expected the https:\/\/ URL/],
    ["bad identity", "  kubeconfigEnv: E\n  identity: openshift\n", /spec\.identity: expected eks:<cluster-name>, gke or aks/],
    ["region without EKS", "  kubeconfigEnv: E\n  region: eu-west-1\n", /spec\.region: only with identity eks/],
    ["unknown field", "  kubeconfigEnv: E\n  token: abc\n", /spec: unknown field "token"/],
    ["a zero cap", "  kubeconfigEnv: E\n  maxConcurrentRotations: 0\n", /spec\.maxConcurrentRotations/],
    ["bad store reference", "  kubeconfigFrom: s3://bucket/key\n", /spec\.kubeconfigFrom: expected aws:/],
  ])("refuses a malformed spec (%s), naming file, document and field", (_what, spec, message) => {
    expect(() => load(cluster("east", spec))).toThrow(ManifestError);
    expect(() => load(cluster("east", spec))).toThrow(new RegExp(`doc-0\\.yaml: document 1 \\(KubernetesCluster/east\\): ${message.source}`));
  });
});

describe("checkClusters", () => {
  it("reads each cluster as its variables would be read: a CA that does not parse is refused before anything runs", () => {
    const set = load(cluster("east", "  server: https://k.example\n  identity: gke\n  certificateAuthorityData: bm90IGEgY2VydA==\n"));
    expect(() => checkClusters(set, {})).toThrow(
      /doc-0\.yaml: document 1 \(KubernetesCluster\/east\): spec: certificateAuthorityData: expected a CA certificate as PEM or base64/,
    );
  });

  it("needs the region of an EKS identity, from the spec or AWS_REGION", () => {
    const set = load(cluster("east", "  kubeconfigFrom: aws:kc\n  identity: eks:east\n"));
    expect(() => checkClusters(set, {})).toThrow(/KubernetesCluster\/east\): spec: identity=eks:east needs the AWS region/);
    expect(() => checkClusters(set, { AWS_REGION: "eu-west-1" })).not.toThrow();
  });

  it("refuses a kubeconfigEnv naming an unset variable, and never lets the function's own cluster variables through", () => {
    const set = load(cluster("east", "  kubeconfigEnv: EAST_KUBECONFIG\n"));
    expect(() => checkClusters(set, {})).toThrow(/spec\.kubeconfigEnv: environment variable EAST_KUBECONFIG is not set/);
    const env = clusterEnvironment(set.clusters[0]!, {
      EAST_KUBECONFIG: "apiVersion: v1",
      CNPG_ROTATOR_KUBECONFIG_FROM: "aws:the-default-one",
      KUBECONFIG: "/home/me/.kube/config",
      CNPG_ROTATOR_CLUSTER: "gke",
    });
    expect(env).toEqual({ EAST_KUBECONFIG: "apiVersion: v1", CNPG_ROTATOR_KUBECONFIG: "apiVersion: v1" });
  });
});
