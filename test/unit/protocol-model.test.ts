// The whole protocol loop (rotate.ts: Lease → observe → decide → act) against in-memory models
// of a store and a cluster that keep the contracts' fences exactly, so that crashes at every
// step, concurrent writers and a stalled "zombie" run can be explored by the thousand without
// servers. The real servers are exercised by the integration suite; this is the exhaustive half.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LeaseLostError } from "../../lib/errors.ts";
import type { KubernetesClient } from "../../lib/kubernetes/index.ts";
import { silentLogger } from "../../lib/log.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import type { StepKind } from "../../lib/rotation/decide.ts";
import { planRotations, type RotationTarget } from "../../lib/rotation/plan.ts";
import { type RotationDeps, rotateTarget } from "../../lib/rotation/rotate.ts";
import { MemoryCluster, MemoryStore } from "./models.ts";

const MANIFESTS = `
apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: gen, namespace: default}
spec: {length: 24, digits: 4, symbols: 4, symbolCharacters: "-_$@"}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata: {name: es, namespace: default}
spec:
  refreshInterval: 24h
  target:
    name: app
    creationPolicy: Merge
    template:
      metadata: {labels: {cnpg.io/reload: "true"}}
      data:
        password: "{{ .password }}"
        uri: "postgresql://app:{{ .password }}@app-rw:5432/app"
  dataFrom: [{sourceRef: {generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: gen}}}]
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: s, namespace: default}
spec: {provider: {file: {path: /dev/null}}}
---
apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: p, namespace: default}
spec:
  secretStoreRefs: [{name: s, kind: SecretStore}]
  selector: {secret: {name: app}}
  data: [{match: {remoteRef: {remoteKey: app}}}]
`;
const TARGET: RotationTarget = planRotations(loadManifests([{ file: "m.yaml", text: MANIFESTS }]))[0]!;

function deps(cluster: MemoryCluster, store: MemoryStore, holder: string, afterStep?: RotationDeps["afterStep"]): RotationDeps {
  return {
    kube: cluster as unknown as KubernetesClient,
    storeFor: async () => store,
    holder,
    log: silentLogger,
    ...(afterStep ? { afterStep } : {}),
  };
}

/** The invariants of SPEC §5 over what the model saw. */
function checkInvariants(cluster: MemoryCluster, store: MemoryStore): void {
  const current = store.get(store.current);
  expect(current, "the store has a current value").toBeDefined();
  expect((JSON.parse(current!.value) as { password: string }).password, "store current == Secret password").toBe(cluster.secret.data.password);
  expect(JSON.parse(current!.value), "store carries the whole Secret").toEqual(cluster.secret.data);
  const byId = new Map<string, Set<string>>();
  for (const [id, password] of cluster.history) if (id) byId.set(id, (byId.get(id) ?? new Set()).add(password));
  for (const [id, passwords] of byId) expect(passwords.size, `one password for rotation ${id}`).toBe(1);
  expect(store.pending, "nothing left pending").toBeUndefined();
  // A consumer of the store never read a password the Secret (so the database) never held.
  const held = new Set(cluster.history.map(([, p]) => p));
  for (const value of store.currentHistory) {
    expect(held.has((JSON.parse(value) as { password: string }).password), "store current was a password the Secret held").toBe(true);
  }
  expect(cluster.holder, "no Lease left held").toBeUndefined();
  expect(cluster.secret.data.uri).toBe(`postgresql://app:${encodeURIComponent(cluster.secret.data.password!)}@app-rw:5432/app`);
}

describe("the protocol loop against models", () => {
  it("a crash after any step of any run, and other keys written at any step, always converge", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ crashAt: fc.nat(12), writeAt: fc.option(fc.nat(12)), force: fc.boolean() }), { minLength: 1, maxLength: 5 }),
        async (runs) => {
          const cluster = new MemoryCluster("initial-password");
          const store = new MemoryStore();
          let n = 0;
          for (const run of runs) {
            let step = 0;
            const afterStep = (kind: StepKind) => {
              step++;
              if (run.writeAt !== null && step === run.writeAt) cluster.write({ data: { [`note-${n}`]: kind } });
              if (step === run.crashAt) throw new Error(`crash after ${kind}`);
            };
            await rotateTarget(TARGET, deps(cluster, store, `run-${n++}`, afterStep), { force: run.force }).catch((e: Error) => {
              if (!e.message.startsWith("crash after")) throw e;
            });
            cluster.holder = undefined; // a crashed run's Lease lapses
          }
          // Clean runs until settled: the first resumes anything in flight, the next finds nothing to do.
          const settled = await rotateTarget(TARGET, deps(cluster, store, "clean-1"));
          expect(["rotated", "resumed", "not-due"]).toContain(settled.outcome);
          const again = await rotateTarget(TARGET, deps(cluster, store, "clean-2"));
          // A write by someone else after the last promote leaves the store one key behind; the push function
          // catches it up. Publish it here the way a forced run does, then check.
          if (again.outcome !== "not-due") throw new Error(`second clean run: ${again.outcome}`);
          const lagging = JSON.stringify(Object.fromEntries(Object.keys(cluster.secret.data).sort().map((k) => [k, cluster.secret.data[k]])));
          if (store.get(store.current)!.value !== lagging) await store.push("app", lagging);
          checkInvariants(cluster, store);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a zombie run that stalled in its first store write, past its Lease, never writes its stale rotation", async () => {
    const cluster = new MemoryCluster("initial-password");
    const store = new MemoryStore();
    let wake!: () => void;
    const stalled = new Promise<void>((resolve) => {
      wake = resolve;
    });
    let entered!: () => void;
    const inStage = new Promise<void>((resolve) => {
      entered = resolve;
    });
    store.beforeWrite = async () => {
      store.beforeWrite = async () => {};
      entered();
      await stalled;
    };
    // The zombie: its first store write (the seed of a never-written store) stalls.
    const zombie = rotateTarget(TARGET, deps(cluster, store, "zombie"), { force: true, leaseSeconds: 60 });
    await inStage;
    // Its Lease lapses (renewals failed meanwhile); another run takes over and rotates twice.
    cluster.expires = 0;
    const first = await rotateTarget(TARGET, deps(cluster, store, "takeover-1"), { force: true });
    const second = await rotateTarget(TARGET, deps(cluster, store, "takeover-2"), { force: true });
    expect([first.outcome, second.outcome]).toEqual(["rotated", "rotated"]);
    const before = structuredClone(cluster.secret);
    const historyBefore = cluster.history.length;
    wake();
    await expect(zombie).rejects.toThrow(LeaseLostError);
    // Nothing the zombie did reached the Secret or moved the store back.
    expect(cluster.secret).toEqual(before);
    expect(cluster.history.length).toBe(historyBefore);
    expect(store.current).toBe(second.rotationId);
    checkInvariants(cluster, store);
  });
});
