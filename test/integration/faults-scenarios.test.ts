// Two faults the step-boundary crash tests cannot reach, as ordinary tests against the real
// kube-apiserver and moto (issue #12): a zombie writer (a run stalled in its first store call,
// its Lease renewals failing, wakes after another run took the Lease and rotated twice), and a
// blackholed store connection (accepted, never answered). How each one fails on the code before
// the fixes is in test/faults/README.md.
import { readFileSync } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, inject, it } from "vitest";
import { connectCluster } from "../../lib/kubernetes/index.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import { planRotations, readRemoteValue } from "../../lib/rotation/plan.ts";
import { fingerprint } from "../../lib/rotation/render.ts";
import { createStore } from "../../lib/protocol/index.ts";
import { TIMEOUT_ENV } from "../../lib/stores/primitives.ts";
import { type FaultProxy, startFaultProxy } from "../faults/fault-proxy.ts";
import { startToxiproxy, type Toxiproxy } from "../faults/toxiproxy.ts";
import { renderKubeconfig } from "../infra/servers.ts";
import { adminClient, awsStoreYaml, createAppSecret, engineFor, pushSecretYaml, seedManifests, seenSecrets, tempDir, uniqueName } from "./support.ts";

const infra = inject("infra");
const kube = adminClient();
const SECRET = "cluster-example-app";
const cleanup: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => {});
  await kube.close();
});

async function target(): Promise<{ namespace: string; remoteKey: string }> {
  const namespace = uniqueName("faults");
  await kube.ensureNamespace(namespace);
  const created = await createAppSecret(kube, namespace);
  seenSecrets.add(created.data.password!);
  return { namespace, remoteKey: `faults/${namespace}` };
}

const manifests = (namespace: string, remoteKey: string) => seedManifests(namespace, awsStoreYaml(), pushSecretYaml("aws-backend", remoteKey));

async function storeCurrent(remoteKey: string, namespace: string) {
  const store = await createStore({ name: "aws", config: { service: "SecretsManager", region: "us-east-1" } });
  try {
    const current = await store.getCurrent(remoteKey);
    if (!current) return undefined;
    const password = readRemoteValue(manifestsPublication(namespace, remoteKey), current.value).password;
    if (password) seenSecrets.add(password);
    return { rotationId: current.rotationId, password };
  } finally {
    await store.close();
  }
}

function manifestsPublication(namespace: string, remoteKey: string) {
  return rotateTargets(namespace, remoteKey)[0]!.publications[0]!;
}

const rotateTargets = (namespace: string, remoteKey: string) => planRotations(manifests(namespace, remoteKey));

/** Sets the Secrets Manager endpoint the next store client resolves (at its first request), for `during`. */
async function withAwsEndpoint<T>(endpoint: string, during: () => Promise<T>): Promise<T> {
  const saved = process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER;
  process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = endpoint;
  try {
    return await during();
  } finally {
    process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = saved;
  }
}

describe("a zombie writer", () => {
  it("a run stalled in its first store call past its Lease wakes after another run rotated twice, and writes nothing stale", async () => {
    const { namespace, remoteKey } = await target();
    // The first rotation seeds the store, so the zombie's first store call is an observe under its Lease.
    const [first] = await rotate(engineFor(manifests(namespace, remoteKey), kube), { force: true });
    expect(first!.outcome).toBe("rotated");

    // The zombie's way to the cluster lets its Lease be taken (the first PUT), then answers every
    // renewal with 503; its way to the store holds its first request until released.
    const pki = path.join(infra.tmpDir, "pki");
    const kubeProxy = await startFaultProxy({
      upstream: infra.server,
      upstreamCa: infra.caPem,
      tls: { cert: readFileSync(path.join(pki, "apiserver.crt"), "utf8"), key: readFileSync(path.join(pki, "apiserver.key"), "utf8") },
    });
    kubeProxy.add({ match: (r) => r.method === "PUT" && r.path.includes("/leases/"), action: { status: 503 }, skip: 1 });
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const storeProxy: FaultProxy = await startFaultProxy({ upstream: process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER! });
    storeProxy.add({ match: () => true, action: { before: () => held }, times: 1 });
    cleanup.push(() => kubeProxy.close(), () => storeProxy.close());
    const zombieKube = connectCluster({ kubeconfigYaml: renderKubeconfig({ server: kubeProxy.url, caPem: infra.caPem }, { user: "admin", token: infra.adminToken }) });
    cleanup.push(() => zombieKube.close());

    const zombie = withAwsEndpoint(storeProxy.url, async () => {
      const run = rotate(engineFor(manifests(namespace, remoteKey), zombieKube), { force: true, leaseSeconds: 4 });
      // Its first store request has reached the proxy, and is held there.
      for (let i = 0; storeProxy.inFlight === 0; i++) {
        if (i > 200) throw new Error("the zombie sent no store request within 10 s");
        await sleep(50);
      }
      return run;
    });
    const stalled = await Promise.race([zombie.then(() => "returned"), sleep(10_000).then(() => "stalled")]);
    expect(stalled).toBe("stalled");
    // Its Lease lapses (renewals refused); another run takes it and rotates, twice.
    await sleep(4_500);
    const [second] = await rotate(engineFor(manifests(namespace, remoteKey), kube), { force: true });
    const [third] = await rotate(engineFor(manifests(namespace, remoteKey), kube), { force: true });
    expect([second!.outcome, third!.outcome]).toEqual(["rotated", "rotated"]);
    const before = (await kube.readSecret(namespace, SECRET))!;
    seenSecrets.add(before.data.password!);

    release(); // The zombie wakes.
    const [woken] = await zombie;
    expect(woken!.outcome).toBe("failed");
    expect(woken!.error?.type).toBe("LeaseLostError");

    // Nothing stale written: the Secret and the store are as the third rotation left them.
    const after = (await kube.readSecret(namespace, SECRET))!;
    expect(after.annotations[ANNOTATIONS.rotationId]).toBe(third!.rotationId);
    expect(after.resourceVersion).toBe(before.resourceVersion);
    expect(fingerprint(after.data.password!)).toBe(third!.fingerprint);
    expect(await storeCurrent(remoteKey, namespace)).toEqual({ rotationId: third!.rotationId, password: after.data.password });
    // And the next run finds nothing to do.
    const [next] = await rotate(engineFor(manifests(namespace, remoteKey), kube));
    expect(next!.outcome).toBe("not-due");
  });
});

describe("a blackholed store connection", () => {
  it("ends the invocation within a bound, saying which call timed out, and leaves no Lease held", async () => {
    const { namespace, remoteKey } = await target();
    const [first] = await rotate(engineFor(manifests(namespace, remoteKey), kube), { force: true });
    expect(first!.outcome).toBe("rotated");
    const toxiproxy: Toxiproxy = await startToxiproxy(path.join(tempDir(), "toxiproxy.log"));
    cleanup.push(() => toxiproxy.stop());
    const moto = new URL(process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER!);
    const port = await toxiproxy.createProxy("moto", `${moto.hostname}:${moto.port}`);
    // Packets accepted, never answered: what a dropped route or a dead NAT entry does.
    await toxiproxy.addToxic("moto", "blackhole", { type: "timeout", stream: "upstream", attributes: { timeout: 0 } });
    const saved = process.env[TIMEOUT_ENV];
    process.env[TIMEOUT_ENV] = "500ms";
    const started = Date.now();
    let outcome: Awaited<ReturnType<typeof rotate>> | "hung";
    try {
      outcome = await withAwsEndpoint(`http://127.0.0.1:${port}`, () =>
        Promise.race([rotate(engineFor(manifests(namespace, remoteKey), kube), { force: true }), sleep(45_000).then(() => "hung" as const)]),
      );
    } finally {
      if (saved === undefined) delete process.env[TIMEOUT_ENV];
      else process.env[TIMEOUT_ENV] = saved;
    }
    expect(outcome).not.toBe("hung");
    const [result] = outcome as Awaited<ReturnType<typeof rotate>>;
    expect(Date.now() - started).toBeLessThan(20_000); // four attempts of 0.5 s and the pauses between them
    expect(result!.outcome).toBe("failed");
    expect(result!.error?.type).toBe("StoreError");
    expect(result!.error?.message).toContain("DescribeSecret");
    // The Lease went back: the next run (the connection restored) goes ahead at once.
    await toxiproxy.removeToxic("moto", "blackhole");
    const [next] = await rotate(engineFor(manifests(namespace, remoteKey), kube), { force: true });
    expect(next!.outcome).toBe("rotated");
  });
});
