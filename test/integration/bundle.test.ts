// The AWS artifact as `serverless package` builds it (minified, no keepNames, no undici,
// node:http(s) through the CommonJS loader), its handler run in fresh processes against
// the local kube-apiserver and moto: the rotation end to end through the slim bundle, the
// typed errors' names through minification, client certificates, RBAC and a proxy-url.
// The GCP and Azure builds come from the same builder and load.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments, parse as parseYaml, stringify as toYaml } from "yaml";
import { type Artifact, packageArtifact, ROOT } from "../infra/artifact.ts";
import { kubeRequest } from "../infra/kube-client.ts";
import { startConnectProxy } from "../infra/proxies.ts";
import { issueClientCertificate, renderKubeconfig } from "../infra/servers.ts";
import {
  adminClient,
  awsStoreYaml,
  createAppSecret,
  fileStoreYaml,
  pushSecretYaml,
  seedYaml,
  seenSecrets,
  tempDir,
  uniqueName,
} from "./support.ts";

const infra = inject("infra");
const kube = adminClient();
const SECRET = "cluster-example-app";
const NODE = join(ROOT, "node_modules/.bin/node");
const sm = new SecretsManagerClient({ region: "us-east-1" });

interface Invocation {
  response: {
    ok: boolean;
    trigger?: string;
    results: { target: string; outcome: string; rotationId?: string; error?: { type: string; message: string } }[];
    error?: { type: string; message: string };
  };
  requests: string[];
}

let artifact: Artifact;

beforeAll(async () => {
  artifact = await packageArtifact();
}, 300_000);

afterAll(() => artifact?.cleanup());

/** Runs the bundled rotate handler in a fresh process with `manifests` (file name → YAML), one event after another. */
async function invoke(
  namespace: string,
  manifests: Record<string, string>,
  events: unknown[],
  kubeconfig = readFileSync(infra.kubeconfigPath, "utf8"),
): Promise<Invocation[]> {
  const dir = tempDir();
  for (const [file, text] of Object.entries(manifests)) writeFileSync(join(dir, file), text);
  const { stdout } = await promisify(execFile)(
    NODE,
    [join(ROOT, "test/infra/run-bundle.ts"), artifact.bundle, ...events.map((e) => JSON.stringify(e))],
    {
      env: {
        ...process.env,
        CNPG_ROTATOR_MANIFESTS: dir,
        CNPG_ROTATOR_NAMESPACE: namespace,
        CNPG_ROTATOR_KUBECONFIG: kubeconfig,
        CNPG_ROTATOR_LOG_LEVEL: "warn",
      },
      maxBuffer: 16 * 1024 * 1024,
      timeout: 120_000,
    },
  );
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as Invocation[];
}

const seed = (store: string, remoteKey: string) => ({
  "password-generator.yaml": seedYaml("password-generator.yaml"),
  "external-secret.yaml": seedYaml("external-secret.yaml"),
  "push.yaml": pushSecretYaml(store, remoteKey),
});

async function passwordOf(namespace: string): Promise<string> {
  const p = (await kube.readSecret(namespace, SECRET))!.data.password!;
  seenSecrets.add(p);
  return p;
}

const remote = async (id: string, stage: string) =>
  (JSON.parse((await sm.send(new GetSecretValueCommand({ SecretId: id, VersionStage: stage }))).SecretString!) as { password: string })
    .password;

describe("the slim AWS bundle", () => {
  it("is minified without keepNames, has no undici and loads node:http(s) through the CommonJS loader", () => {
    const code = readFileSync(artifact.bundle, "utf8");
    expect(code).toContain('getBuiltinModule("node:https")');
    expect(code).not.toMatch(/from\s*"(node:)?https?"/);
    expect(code).not.toContain("undici:request:create"); // undici's diagnostics channel: undici itself is not in it
    expect(code).not.toContain("__name(");
    expect(artifact.bytes).toBeGreaterThan(0);
  });

  it("rotates with AWS Secrets Manager: first push, then a steady-state rotation in at most 5 AWS and 11 requests in all", async () => {
    const namespace = uniqueName("bundle-aws");
    const remoteKey = uniqueName("bundle-app");
    await kube.ensureNamespace(namespace);
    const original = (await createAppSecret(kube, namespace)).data.password!;
    seenSecrets.add(original);
    const event = { target: `${namespace}/${SECRET}`, force: true };
    const [first, second] = await invoke(namespace, { ...seed("aws-backend", remoteKey), "store.yaml": awsStoreYaml() }, [event, event]);
    expect(first!.response).toMatchObject({ ok: true, results: [{ outcome: "rotated" }] });
    // A secret that did not exist yet: DescribeSecret's ResourceNotFoundException, recognised by name.
    expect(first!.requests).toContain("aws CreateSecret");
    expect(second!.response).toMatchObject({ ok: true, results: [{ outcome: "rotated" }] });
    const password = await passwordOf(namespace);
    expect(await remote(remoteKey, "AWSCURRENT")).toBe(password);
    expect(password).not.toBe(original);
    const versions = await sm.send(new ListSecretVersionIdsCommand({ SecretId: remoteKey }));
    expect(versions.Versions!.filter((v) => v.VersionStages?.includes("AWSPENDING"))).toEqual([]);
    expect(versions.Versions!.find((v) => v.VersionStages?.includes("AWSCURRENT"))!.VersionId).toBe(second!.response.results[0]!.rotationId);
    const aws = second!.requests.filter((r) => r.startsWith("aws "));
    expect(aws.length, aws.join(", ")).toBeLessThanOrEqual(5);
    expect(second!.requests.length, second!.requests.join(", ")).toBeLessThanOrEqual(11);
    expect(JSON.stringify([first, second])).not.toContain(password);
  });

  it("refuses a remote secret without our tag: OwnershipError by name, nothing changed", async () => {
    const namespace = uniqueName("bundle-own");
    const remoteKey = uniqueName("bundle-foreign");
    await kube.ensureNamespace(namespace);
    const original = (await createAppSecret(kube, namespace)).data.password!;
    seenSecrets.add(original);
    await sm.send(new CreateSecretCommand({ Name: remoteKey, SecretString: '{"password":"theirs"}' }));
    const [run] = await invoke(namespace, { ...seed("aws-backend", remoteKey), "store.yaml": awsStoreYaml() }, [
      { target: `${namespace}/${SECRET}`, force: true },
    ]);
    expect(run!.response.results[0]).toMatchObject({ outcome: "failed", error: { type: "OwnershipError" } });
    expect(run!.response.results[0]!.error!.message).toContain(remoteKey);
    expect(await remote(remoteKey, "AWSCURRENT")).toBe("theirs");
    expect(await passwordOf(namespace)).toBe(original);
  });

  it("with the file store: a scheduled event rotates, the same again is not due; a bad event is an InputError", async () => {
    const namespace = uniqueName("bundle-file");
    await kube.ensureNamespace(namespace);
    seenSecrets.add((await createAppSecret(kube, namespace)).data.password!);
    const storePath = join(tempDir(), "store.json");
    const scheduled = {
      version: "0",
      id: "5f6e7d8c-1a2b-3c4d-5e6f-7a8b9c0d1e2f",
      "detail-type": "Scheduled Event",
      source: "aws.events",
      account: "123456789012",
      time: new Date().toISOString(),
      region: "us-east-1",
      resources: ["arn:aws:events:us-east-1:123456789012:rule/cnpg-rotator"],
      detail: {},
    };
    const runs = await invoke(namespace, { ...seed("local", SECRET), "store.yaml": fileStoreYaml(storePath) }, [
      scheduled,
      scheduled,
      { target: "Not A Target" },
    ]);
    expect(runs.map((r) => r.response.results[0]?.outcome)).toEqual(["rotated", "not-due", undefined]);
    expect(runs[2]!.response).toMatchObject({ ok: false, error: { type: "InputError" } });
    const password = await passwordOf(namespace);
    expect(JSON.stringify(runs)).not.toContain(password);
  });

  it("as the shipped Role's user with a client certificate rotates; without patch it is a PermissionError naming the grant", async () => {
    const cert = await issueClientCertificate(infra, "cnpg-rotator");
    const asRotator = renderKubeconfig(infra, { user: "cnpg-rotator", clientCertificate: cert });
    for (const drop of [undefined, "patch"]) {
      const namespace = uniqueName("bundle-rbac");
      await kube.ensureNamespace(namespace);
      const original = (await createAppSecret(kube, namespace)).data.password!;
      seenSecrets.add(original);
      await applyShippedRbac(namespace, drop);
      const [run] = await invoke(
        namespace,
        { ...seed("local", SECRET), "store.yaml": fileStoreYaml(join(tempDir(), "store.json")) },
        [{ target: `${namespace}/${SECRET}`, force: true }],
        asRotator,
      );
      if (!drop) {
        expect(run!.response.results[0]!.outcome).toBe("rotated");
        expect(await passwordOf(namespace)).not.toBe(original);
      } else {
        expect(run!.response.results[0]).toMatchObject({ outcome: "failed", error: { type: "PermissionError" } });
        expect(run!.response.results[0]!.error!.message).toMatch(/grant verb patch on secrets/);
        expect(await passwordOf(namespace)).toBe(original);
      }
    }
  });

  it("reaches the API server through a kubeconfig proxy-url, one tunnel for the whole rotation", async () => {
    const namespace = uniqueName("bundle-proxy");
    await kube.ensureNamespace(namespace);
    seenSecrets.add((await createAppSecret(kube, namespace)).data.password!);
    const proxy = await startConnectProxy();
    try {
      const doc = parseYaml(readFileSync(infra.kubeconfigPath, "utf8")) as { clusters: { cluster: Record<string, unknown> }[] };
      doc.clusters[0]!.cluster["proxy-url"] = proxy.url;
      const [run] = await invoke(
        namespace,
        { ...seed("local", SECRET), "store.yaml": fileStoreYaml(join(tempDir(), "store.json")) },
        [{ target: `${namespace}/${SECRET}`, force: true }],
        toYaml(doc),
      );
      expect(run!.response.results[0]!.outcome).toBe("rotated");
      expect(run!.requests.length).toBeGreaterThanOrEqual(6);
      expect(proxy.tunnels).toEqual([new URL(infra.server).host]);
      await passwordOf(namespace);
    } finally {
      await proxy.close();
    }
  });
});

describe("the GCP and Azure builds (deploy/build.ts)", () => {
  it("bundle each cloud's entry points the same way, and the bundles load", { timeout: 180_000 }, async () => {
    for (const [cloud, file] of [
      ["gcp", "dist/gcp/index.mjs"],
      ["azure", "dist/azure/index.js"],
    ] as const) {
      await promisify(execFile)(NODE, [join(ROOT, `deploy/${cloud}/build.ts`), "manifests"], { cwd: ROOT, timeout: 120_000 });
      const code = readFileSync(join(ROOT, file), "utf8");
      expect(code).toContain('getBuiltinModule("node:https")');
      expect(code).not.toContain("undici:request:create");
      const { stdout } = await promisify(execFile)(
        NODE,
        ["--input-type=module", "-e", `const m = await import(${JSON.stringify(join(ROOT, file))}); console.log(Object.keys(m).sort().join(","));`],
        { cwd: ROOT, timeout: 60_000 },
      );
      expect(stdout.trim(), cloud).toMatch(cloud === "gcp" ? /rotate/ : /rotateTimer/);
    }
  });
});

async function applyShippedRbac(namespace: string, dropVerb?: string): Promise<void> {
  const docs = parseAllDocuments(readFileSync(join(ROOT, "deploy/rbac.yaml"), "utf8")).map(
    (d) => d.toJS() as { kind: string; metadata: { namespace?: string }; rules?: { resources: string[]; verbs: string[] }[] },
  );
  for (const doc of docs.filter(Boolean)) {
    doc.metadata.namespace = namespace;
    if (doc.kind === "Role" && dropVerb) {
      for (const rule of doc.rules ?? []) if (rule.resources.includes("secrets")) rule.verbs = rule.verbs.filter((v) => v !== dropVerb);
    }
    const plural = doc.kind === "Role" ? "roles" : "rolebindings";
    const r = await kubeRequest(infra, `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/${plural}`, { method: "POST", body: doc });
    expect(r.status).toBe(201);
  }
}
