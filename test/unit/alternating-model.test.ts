// The alternating strategy's protocol against the in-memory models: crashes after every step,
// duplicate runs, a CNPG that never applies — and the invariant that makes rotation invisible to
// applications: a role's password changes only while the consumer Secret names the other one.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { KubernetesClient } from "../../lib/kubernetes/index.ts";
import { silentLogger } from "../../lib/log.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import type { StepKind } from "../../lib/rotation/decide.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import { planRotations, type RotationTarget } from "../../lib/rotation/plan.ts";
import { type RotationDeps, rotateTarget } from "../../lib/rotation/rotate.ts";
import { MemoryCluster, MemoryStore } from "./models.ts";

const TARGET: RotationTarget = planRotations(
  loadManifests([
    {
      file: "m.yaml",
      text: `
apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: gen, namespace: default}
spec: {length: 24, digits: 4, symbols: 4, symbolCharacters: "-_$@"}
---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: es
  namespace: default
  annotations:
    cnpg-rotator.io/strategy: alternating
    cnpg-rotator.io/cluster: cluster-example
    cnpg-rotator.io/roles: app_blue=app-blue, app_green=app-green
spec:
  refreshInterval: 24h
  target:
    name: app
    creationPolicy: Merge
    template:
      data:
        password: "{{ .password }}"
        uri: "postgresql://{{ .username }}:{{ .password }}@app-rw:5432/app"
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
`,
    },
  ]),
)[0]!;

/** A cluster whose every write is checked against the zero-downtime invariant. */
class CheckedCluster extends MemoryCluster {
  violations: string[] = [];
  constructor() {
    super("owner-password-0");
    this.roles = [
      { name: "app_blue", passwordSecret: "app-blue" },
      { name: "app_green", passwordSecret: "app-green" },
    ];
    this.put("app-blue", { username: "app_blue", password: "blue-password-0" });
    this.put("app-green", { username: "app_green", password: "green-password-0" });
  }
  override put(name: string, data: Record<string, string>, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): void {
    const before = this.secrets.get(name);
    const consumer = this.secrets.get("app");
    const role = this.roles.find((r) => r.passwordSecret === name);
    if (role && before && before.data.password !== data.password && consumer?.data.username === role.name) {
      this.violations.push(`${role.name}'s password changed while the consumer Secret named it`);
    }
    if (name === "app" && before && data.username !== before.data.username) {
      const next = this.roles.find((r) => r.name === data.username);
      const roleSecret = next && this.secrets.get(next.passwordSecret);
      if (!roleSecret || roleSecret.data.password !== data.password) this.violations.push("consumer switched to a password its role does not have");
      else if (this.applied.get(next!.name) !== roleSecret.resourceVersion) this.violations.push("consumer switched before CNPG applied the role's password");
    }
    super.put(name, data, labels, annotations);
  }
}

function deps(cluster: MemoryCluster, store: MemoryStore, holder: string, afterStep?: RotationDeps["afterStep"]): RotationDeps {
  return {
    kube: cluster as unknown as KubernetesClient,
    storeFor: async () => store,
    holder,
    log: silentLogger,
    rollbackOnVerifyFailure: true,
    applyTimeoutMs: 50,
    ...(afterStep ? { afterStep } : {}),
  };
}

describe("alternating rotation against models", () => {
  it("every rotation changes the idle role only, switches the consumer only once CNPG applied it, and crashes converge", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ crashAt: fc.nat(10), force: fc.boolean() }), { minLength: 1, maxLength: 6 }), async (runs) => {
        const cluster = new CheckedCluster();
        const store = new MemoryStore();
        let n = 0;
        for (const run of runs) {
          let step = 0;
          const afterStep = (_kind: StepKind) => {
            if (++step === run.crashAt) throw new Error("crash");
          };
          await rotateTarget(TARGET, deps(cluster, store, `run-${n++}`, afterStep), { force: run.force }).catch((e: Error) => {
            if (e.message !== "crash") throw e;
          });
          cluster.holder = undefined;
        }
        await rotateTarget(TARGET, deps(cluster, store, "clean"), {});
        expect((await rotateTarget(TARGET, deps(cluster, store, "clean-2"), {})).outcome).toBe("not-due");
        expect(cluster.violations).toEqual([]);
        const consumer = cluster.secret;
        const active = cluster.roles.find((r) => r.name === consumer.data.username);
        if (active) {
          // Applications read the consumer Secret: its role has exactly its password, applied.
          const role = cluster.secrets.get(active.passwordSecret)!;
          expect(consumer.data.password).toBe(role.data.password);
          expect(cluster.applied.get(active.name)).toBe(role.resourceVersion);
          expect(consumer.data.uri).toBe(`postgresql://${active.name}:${encodeURIComponent(role.data.password!)}@app-rw:5432/app`);
          expect(JSON.parse(store.get(store.current)!.value)).toEqual(consumer.data);
        }
        expect(store.pending).toBeUndefined();
        expect(cluster.holder).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it("rotations alternate blue, green, blue; the other role keeps its password for one more interval", async () => {
    const cluster = new CheckedCluster();
    const store = new MemoryStore();
    const users: string[] = [];
    const kept: boolean[] = [];
    for (let i = 0; i < 3; i++) {
      const before = cluster.secret.data.username!;
      const other = cluster.roles.find((r) => r.name === before);
      const otherPassword = other && cluster.secrets.get(other.passwordSecret)!.data.password;
      const result = await rotateTarget(TARGET, deps(cluster, store, `r${i}`), { force: true });
      expect(result.outcome).toBe("rotated");
      users.push(cluster.secret.data.username!);
      if (other) kept.push(cluster.secrets.get(other.passwordSecret)!.data.password === otherPassword);
    }
    expect(users).toEqual(["app_blue", "app_green", "app_blue"]);
    expect(kept).toEqual([true, true]);
    expect(cluster.violations).toEqual([]);
  });

  it("a CNPG that never applies: the consumer stays on the working role, the idle role gets its password back", async () => {
    const cluster = new CheckedCluster();
    const store = new MemoryStore();
    await rotateTarget(TARGET, deps(cluster, store, "r1"), { force: true }); // consumer → blue
    await rotateTarget(TARGET, deps(cluster, store, "r2"), { force: true }); // consumer → green
    const consumerBefore = structuredClone(cluster.secret);
    const blueBefore = cluster.secrets.get("app-blue")!.data.password;
    cluster.apply = "never";
    await expect(rotateTarget(TARGET, deps(cluster, store, "r3"), { force: true })).rejects.toMatchObject({ name: "VerificationError", rolledBack: true });
    expect(cluster.secret.data).toEqual(consumerBefore.data);
    expect(cluster.secret.annotations[ANNOTATIONS.rolledBack]).toBeDefined();
    expect(cluster.secrets.get("app-blue")!.data.password).toBe(blueBefore);
    expect(store.pending).toBeUndefined();
    expect(cluster.violations).toEqual([]);
    // CNPG recovers: the next run (due, because of the rollback) rotates blue with a new id.
    cluster.apply = "instant";
    const next = await rotateTarget(TARGET, deps(cluster, store, "r4"), {});
    expect(next.outcome).toBe("rotated");
    expect(cluster.secret.data.username).toBe("app_blue");
  });

  it("refuses a role Secret that does not exist, before anything is written", async () => {
    const cluster = new CheckedCluster();
    cluster.secrets.delete("app-green");
    const store = new MemoryStore();
    const writes = cluster.writes.length;
    await expect(rotateTarget(TARGET, deps(cluster, store, "r"), { force: true })).rejects.toThrow(/app-green does not exist/);
    expect(cluster.expires).toBe(0); // not even the Lease was taken
    expect(cluster.writes.length).toBe(writes);
    expect(store.versions.size).toBe(0);
    expect(cluster.holder).toBeUndefined();
  });
});
