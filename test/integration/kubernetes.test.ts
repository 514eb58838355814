// lib/kubernetes against a real kube-apiserver (test/infra): merge writes that leave
// everything else byte-identical, the 409 path, Leases, RBAC and connection setup.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import dc from "node:diagnostics_channel";
import { readFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parseAllDocuments, parse as parseYaml, stringify as toYaml } from "yaml";
import { InputError, KubernetesError, PermissionError, SecretMissingError } from "../../lib/errors.ts";
import {
  connectCluster,
  type KubernetesClient,
  leaseNameFor,
  rotationAccessChecks,
} from "../../lib/kubernetes/index.ts";
import { kubeRequest } from "../infra/kube-client.ts";
import { startConnectProxy, startSocks5Proxy } from "../infra/proxies.ts";
import { issueClientCertificate, renderKubeconfig } from "../infra/servers.ts";

const infra = inject("infra");
const b64 = (s: string | Buffer) => Buffer.from(s).toString("base64");
const suffix = randomBytes(3).toString("hex");
const ns = `kube-${suffix}`;

interface RawSecret {
  type: string;
  data?: Record<string, string>;
  metadata: { resourceVersion: string; labels?: Record<string, string>; annotations?: Record<string, string> };
}
interface RawLease {
  metadata: { resourceVersion: string };
  spec: { holderIdentity?: string; leaseTransitions?: number; leaseDurationSeconds?: number };
}

async function adminPost(path: string, body: unknown): Promise<void> {
  const r = await kubeRequest(infra, path, { method: "POST", body });
  if (r.status !== 201) throw new Error(`POST ${path}: expected 201, got ${r.status}: ${JSON.stringify(r.body)}`);
}

async function rawSecret(namespace: string, name: string): Promise<{ status: number; body: RawSecret }> {
  return kubeRequest<RawSecret>(infra, `/api/v1/namespaces/${namespace}/secrets/${name}`);
}

async function rawLease(namespace: string, name: string): Promise<RawLease> {
  const r = await kubeRequest<RawLease>(infra, `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases/${name}`);
  expect(r.status).toBe(200);
  return r.body;
}

/** Creates a Secret as admin, straight through the REST API. */
async function seedSecret(
  namespace: string,
  name: string,
  extra: { data?: Record<string, string>; labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): Promise<void> {
  await adminPost(`/api/v1/namespaces/${namespace}/secrets`, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name, labels: extra.labels, annotations: extra.annotations },
    type: "kubernetes.io/basic-auth",
    data: extra.data ?? { username: b64("app"), password: b64("old-password") },
  });
}

/** The request count a call adds. */
async function counted<T>(client: KubernetesClient, fn: () => Promise<T>): Promise<{ value: T; requests: string[] }> {
  const before = client.requestCount;
  const value = await fn();
  const requests = client.requests.slice(client.requests.length - (client.requestCount - before));
  return { value, requests: requests.map((r) => `${r.method} ${r.status}`) };
}

let admin: KubernetesClient;

beforeAll(async () => {
  admin = connectCluster({ kubeconfigPath: infra.kubeconfigPath });
  const created = await counted(admin, () => admin.ensureNamespace(ns));
  expect(created.requests).toEqual(["GET 404", "POST 201"]);
  const again = await counted(admin, () => admin.ensureNamespace(ns));
  expect(again.requests).toEqual(["GET 200"]);
});

afterAll(async () => {
  await admin?.close();
});

describe("readSecret", () => {
  it("decodes a Secret and returns undefined for a missing one", async () => {
    await seedSecret(ns, "read-me", { labels: { l: "1" }, annotations: { a: "2" } });
    const { value: s, requests } = await counted(admin, () => admin.readSecret(ns, "read-me"));
    expect(requests).toEqual(["GET 200"]);
    expect(s).toMatchObject({
      name: "read-me",
      namespace: ns,
      type: "kubernetes.io/basic-auth",
      labels: { l: "1" },
      annotations: { a: "2" },
      data: { username: "app", password: "old-password" },
    });
    expect(s?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(s?.resourceVersion).toMatch(/^\d+$/);
    expect(await admin.readSecret(ns, "no-such-secret")).toBeUndefined();
  });
});

describe("updateSecret", () => {
  it("changes only the given keys; every other key, the type, labels and annotations stay byte-identical", async () => {
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x0a]); // not UTF-8: must survive untouched
    await seedSecret(ns, "merge-me", {
      data: {
        username: b64("app"),
        password: b64("old-password"),
        uri: b64("postgresql://app:old-password@db:5432/app"),
        "ca.crt": b64(binary),
        dbname: b64("app"),
      },
      labels: { "cnpg.io/cluster": "cluster-example", "cnpg.io/reload": "false", keep: "me" },
      annotations: { "cnpg.io/operatorVersion": "1.27.0", drop: "me", untouched: "yes" },
    });
    const before = (await rawSecret(ns, "merge-me")).body;

    const { value: result, requests } = await counted(admin, () =>
      admin.updateSecret(ns, "merge-me", (current) => {
        expect(current.data.password).toBe("old-password");
        return {
          data: { password: "n3w:p@ss/word", uri: "postgresql://app:n3w%3Ap%40ss%2Fword@db:5432/app" },
          labels: { "cnpg.io/reload": "true", keep: "me" },
          annotations: { drop: null, "cnpg-rotator/rotation-id": "r1" },
        };
      }),
    );
    expect(requests).toEqual(["GET 200", "PATCH 200"]);
    expect(result).toMatchObject({ written: true, created: false, conflicts: 0 });
    expect(result.secret.data.password).toBe("n3w:p@ss/word");

    const after = (await rawSecret(ns, "merge-me")).body;
    expect(after.type).toBe(before.type);
    expect(after.data).toEqual({
      ...before.data,
      password: b64("n3w:p@ss/word"),
      uri: b64("postgresql://app:n3w%3Ap%40ss%2Fword@db:5432/app"),
    });
    expect(after.data?.["ca.crt"]).toBe(before.data?.["ca.crt"]);
    expect(Buffer.from(after.data?.["ca.crt"] ?? "", "base64")).toEqual(binary);
    expect(after.metadata.labels).toEqual({ ...before.metadata.labels, "cnpg.io/reload": "true" });
    expect(after.metadata.annotations).toEqual({
      "cnpg.io/operatorVersion": "1.27.0",
      untouched: "yes",
      "cnpg-rotator/rotation-id": "r1",
    });
  });

  it("writes nothing when change() returns undefined or changes nothing", async () => {
    await seedSecret(ns, "no-op");
    const rv = (await rawSecret(ns, "no-op")).body.metadata.resourceVersion;
    const none = await counted(admin, () => admin.updateSecret(ns, "no-op", () => undefined));
    expect(none.requests).toEqual(["GET 200"]);
    expect(none.value).toMatchObject({ written: false, created: false, conflicts: 0 });
    expect(none.value.secret.data.password).toBe("old-password");
    const same = await counted(admin, () =>
      admin.updateSecret(ns, "no-op", () => ({ data: { password: "old-password" }, annotations: { absent: null } })),
    );
    expect(same.requests).toEqual(["GET 200"]);
    expect(same.value.written).toBe(false);
    expect((await rawSecret(ns, "no-op")).body.metadata.resourceVersion).toBe(rv);
  });

  it("on 409 re-reads, calls change() again on the fresh Secret, and keeps the other writer's change", async () => {
    await seedSecret(ns, "contended", {
      data: { username: b64("app"), password: b64("old-password"), other: b64("original") },
    });
    const seen: string[] = [];
    const { value: result, requests } = await counted(admin, () =>
      admin.updateSecret(ns, "contended", (current) => {
        seen.push(current.data.other ?? "");
        if (seen.length === 1) {
          // Another writer (kubectl as admin) changes a different key between our read and our patch.
          execFileSync("kubectl", [
            "--kubeconfig",
            infra.kubeconfigPath,
            "-n",
            ns,
            "patch",
            "secret",
            "contended",
            "--type",
            "merge",
            "-p",
            JSON.stringify({ data: { other: b64("changed-by-someone-else") } }),
          ]);
        }
        return { data: { password: "rotated" } };
      }),
    );
    expect(seen).toEqual(["original", "changed-by-someone-else"]);
    expect(result).toMatchObject({ written: true, conflicts: 1 });
    expect(requests).toEqual(["GET 200", "PATCH 409", "GET 200", "PATCH 200"]);
    const after = (await rawSecret(ns, "contended")).body;
    expect(after.data).toEqual({
      username: b64("app"),
      password: b64("rotated"),
      other: b64("changed-by-someone-else"),
    });
  });

  it("gives up with a KubernetesError when every write conflicts", async () => {
    await seedSecret(ns, "always-contended");
    let calls = 0;
    const attempt = admin.updateSecret(ns, "always-contended", () => {
      calls++;
      execFileSync("kubectl", [
        "--kubeconfig",
        infra.kubeconfigPath,
        "-n",
        ns,
        "annotate",
        "--overwrite",
        "secret",
        "always-contended",
        `other-writer=${calls}`,
      ]);
      return { data: { password: "never-written" } };
    });
    await expect(attempt).rejects.toThrow(KubernetesError);
    await expect(attempt).rejects.toThrow(/6 attempts in a row were refused with 409 Conflict/);
    expect(calls).toBe(6);
    expect((await rawSecret(ns, "always-contended")).body.data?.password).toBe(b64("old-password"));
  });

  it("a missing Secret without create is a SecretMissingError naming it, and nothing is created", async () => {
    let called = false;
    const { requests, value: error } = await counted(admin, () =>
      admin
        .updateSecret(ns, "missing-app", () => {
          called = true;
          return { data: { password: "x" } };
        })
        .catch((e: unknown) => e),
    );
    expect(error).toBeInstanceOf(SecretMissingError);
    expect((error as Error).message).toContain(`Secret ${ns}/missing-app does not exist; nothing was written`);
    expect(called).toBe(false);
    expect(requests).toEqual(["GET 404"]);
    expect((await rawSecret(ns, "missing-app")).status).toBe(404);
  });

  it("with create, a missing Secret is created with the type, the labels and the change", async () => {
    const { value: result, requests } = await counted(admin, () =>
      admin.updateSecret(
        ns,
        "created-app",
        (current) => {
          expect(current).toMatchObject({ data: {}, type: "kubernetes.io/basic-auth", labels: { team: "db" } });
          return { data: { username: "app", password: "fresh" }, labels: { "cnpg.io/reload": "true" }, annotations: { a: "1", gone: null } };
        },
        { create: { type: "kubernetes.io/basic-auth", labels: { team: "db" } } },
      ),
    );
    expect(requests).toEqual(["GET 404", "POST 201"]);
    expect(result).toMatchObject({ written: true, created: true, conflicts: 0 });
    const raw = (await rawSecret(ns, "created-app")).body;
    expect(raw.type).toBe("kubernetes.io/basic-auth");
    expect(raw.data).toEqual({ username: b64("app"), password: b64("fresh") });
    expect(raw.metadata.labels).toEqual({ team: "db", "cnpg.io/reload": "true" });
    expect(raw.metadata.annotations).toEqual({ a: "1" });

    // Second run: the Secret exists now, so it is merged, not created.
    const again = await admin.updateSecret(ns, "created-app", () => ({ data: { password: "fresher" } }), {
      create: { type: "kubernetes.io/basic-auth" },
    });
    expect(again).toMatchObject({ written: true, created: false });
    expect((await rawSecret(ns, "created-app")).body.data?.username).toBe(b64("app"));
  });

  it("refuses to patch an immutable Secret, naming it", async () => {
    await adminPost(`/api/v1/namespaces/${ns}/secrets`, {
      metadata: { name: "frozen" },
      immutable: true,
      data: { password: b64("old") },
    });
    await expect(admin.updateSecret(ns, "frozen", () => ({ data: { password: "new" } }))).rejects.toThrow(
      /secrets "frozen" in namespace "kube-[0-9a-f]+": the Secret is immutable/,
    );
  });

  it("createSecret and deleteSecret (404 is fine)", async () => {
    const s = await admin.createSecret(ns, "made", { type: "Opaque", data: { k: "v" }, labels: { x: "y" } });
    expect(s).toMatchObject({ name: "made", type: "Opaque", data: { k: "v" }, labels: { x: "y" } });
    await expect(admin.createSecret(ns, "made", { type: "Opaque", data: {} })).rejects.toThrow(
      /cannot create secrets "made" in namespace "kube-[0-9a-f]+": HTTP 409 AlreadyExists/,
    );
    await admin.deleteSecret(ns, "made");
    await admin.deleteSecret(ns, "made");
    expect(await admin.readSecret(ns, "made")).toBeUndefined();
  });
});

describe("acquireLease", () => {
  it("a second holder gets undefined; after release it acquires", async () => {
    const first = await counted(admin, () => admin.acquireLease(ns, "app-1", "run-a", 30));
    expect(first.requests).toEqual(["GET 404", "POST 201"]);
    const a = first.value!;
    expect(a).toMatchObject({ name: "cnpg-rotator-app-1", namespace: ns, holder: "run-a", ttlSeconds: 30 });
    expect(a.expiresAt.getTime()).toBeGreaterThan(Date.now() + 25_000);

    const second = await counted(admin, () => admin.acquireLease(ns, "app-1", "run-b", 30));
    expect(second.requests).toEqual(["GET 200"]);
    expect(second.value).toBeUndefined();
    // The same holder is this very run, whose earlier create's answer was lost (issue 12): it gets
    // its Lease back instead of being locked out for the whole TTL — with one GET, no write.
    const again = await counted(admin, () => admin.acquireLease(ns, "app-1", "run-a", 30));
    expect(again.requests).toEqual(["GET 200"]);
    expect(again.value?.holder).toBe("run-a");

    expect(await a.renew()).toBe(true);
    const released = await counted(admin, () => a.release());
    expect(released.requests).toEqual(["PUT 200"]);
    expect((await rawLease(ns, "cnpg-rotator-app-1")).spec.holderIdentity).toBeUndefined();

    const third = await counted(admin, () => admin.acquireLease(ns, "app-1", "run-b", 30));
    expect(third.requests).toEqual(["GET 200", "PUT 200"]);
    expect(third.value?.holder).toBe("run-b");
    const lease = await rawLease(ns, "cnpg-rotator-app-1");
    expect(lease.spec).toMatchObject({ holderIdentity: "run-b", leaseDurationSeconds: 30, leaseTransitions: 1 });
    expect(await a.renew()).toBe(false); // released handles stay released
    await third.value?.release();
  });

  it("beforeTake runs between the GET and the write: only for a free Lease, nothing written if it throws, and a take meanwhile wins", async () => {
    const calls: string[] = [];
    const held = await admin.acquireLease(ns, "app-6", "run-a", 30);
    // Held by another run: no beforeTake, one GET.
    const locked = await counted(admin, () => admin.acquireLease(ns, "app-6", "run-b", 30, async () => void calls.push("b")));
    expect(locked).toMatchObject({ value: undefined, requests: ["GET 200"] });
    expect(calls).toEqual([]);
    await held!.release();
    // It throws: the error passes, the Lease stays released.
    const before = await rawLease(ns, "cnpg-rotator-app-6");
    const refused = await counted(admin, () =>
      admin.acquireLease(ns, "app-6", "run-b", 30, async () => {
        throw new Error("bad input");
      }).catch((e: Error) => e.message),
    );
    expect(refused).toMatchObject({ value: "bad input", requests: ["GET 200"] });
    expect(await rawLease(ns, "cnpg-rotator-app-6")).toEqual(before);
    // Another run takes the Lease (and lets it go) while beforeTake runs: this one's write loses.
    const raced = await counted(admin, () =>
      admin.acquireLease(ns, "app-6", "run-b", 30, async () => {
        calls.push("b");
        await (await admin.acquireLease(ns, "app-6", "run-c", 30))!.release();
      }),
    );
    expect(calls).toEqual(["b"]);
    expect(raced.value).toBeUndefined();
    expect((await rawLease(ns, "cnpg-rotator-app-6")).spec.holderIdentity).toBeUndefined();
    // Free and untouched meanwhile: taken, beforeTake having run first.
    const taken = await counted(admin, () => admin.acquireLease(ns, "app-6", "run-b", 30, async () => void calls.push("b2")));
    expect(taken.value?.holder).toBe("run-b");
    expect(calls).toEqual(["b", "b2"]);
    await taken.value!.release();
  });

  it("takes over an expired Lease; the old handle then learns it lost it", async () => {
    const stale = await admin.acquireLease(ns, "app-2", "crashed-run", 1);
    expect(stale).toBeDefined();
    expect(await admin.acquireLease(ns, "app-2", "next-run", 30)).toBeUndefined();
    await new Promise((r) => setTimeout(r, 1_300));
    const next = await admin.acquireLease(ns, "app-2", "next-run", 30);
    expect(next?.holder).toBe("next-run");
    expect((await rawLease(ns, "cnpg-rotator-app-2")).spec).toMatchObject({
      holderIdentity: "next-run",
      leaseTransitions: 1,
    });
    expect(await stale!.renew()).toBe(false);
    await stale!.release(); // lost: not an error, and it must not free the new holder's Lease
    expect((await rawLease(ns, "cnpg-rotator-app-2")).spec.holderIdentity).toBe("next-run");
    await next!.release();
  });

  it("renew and release survive someone else's edit of a Lease still held", async () => {
    const handle = (await admin.acquireLease(ns, "app-5", "holder", 30))!;
    const label = () =>
      execFileSync("kubectl", ["--kubeconfig", infra.kubeconfigPath, "-n", ns, "label", "--overwrite", "lease", handle.name, `touched=${Date.now()}`]);
    label();
    const renewed = await counted(admin, () => handle.renew());
    expect(renewed.value).toBe(true);
    expect(renewed.requests).toEqual(["PUT 409", "GET 200", "PUT 200"]);
    label();
    await handle.release();
    expect((await rawLease(ns, handle.name)).spec.holderIdentity).toBeUndefined();
  });

  it("takes over a Lease whose renewTime is long past (written by another client)", async () => {
    const past = new Date(Date.now() - 120_000).toISOString().replace("Z", "000Z");
    await adminPost(`/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`, {
      metadata: { name: leaseNameFor("app-3") },
      spec: { holderIdentity: "gone", leaseDurationSeconds: 60, renewTime: past, acquireTime: past, leaseTransitions: 4 },
    });
    const handle = await admin.acquireLease(ns, "app-3", "me", 30);
    expect(handle?.holder).toBe("me");
    expect((await rawLease(ns, "cnpg-rotator-app-3")).spec.leaseTransitions).toBe(5);
  });

  it("5 concurrent acquires yield exactly one handle, on a new and on a free Lease", async () => {
    for (const round of ["new", "free"]) {
      const clients = Array.from({ length: 5 }, () => connectCluster({ kubeconfigPath: infra.kubeconfigPath }));
      const handles = await Promise.all(clients.map((c, i) => c.acquireLease(ns, "app-4", `${round}-${i}`, 30)));
      const won = handles.filter((h) => h !== undefined);
      expect(won, round).toHaveLength(1);
      expect((await rawLease(ns, "cnpg-rotator-app-4")).spec.holderIdentity).toBe(won[0]!.holder);
      await won[0]!.release();
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it("keeps Lease names valid for long Secret names", async () => {
    const long = `a${"b".repeat(250)}`;
    const name = leaseNameFor(long);
    expect(name.length).toBeLessThanOrEqual(253);
    expect(name).toMatch(/^cnpg-rotator-ab+-[0-9a-f]{10}$/);
    expect(leaseNameFor(`${long}c`)).not.toBe(name);
    const handle = await admin.acquireLease(ns, long, "long-run", 30);
    expect(handle?.name).toBe(name);
    await handle?.release();
  });
});

describe("RBAC (deploy/rbac.yaml)", () => {
  const rbacNs = `rbac-${suffix}`;
  const secret = "cluster-example-app";
  let rotator: KubernetesClient;

  beforeAll(async () => {
    await admin.ensureNamespace(rbacNs);
    // The file as a user applies it; only the namespace moves, so test files never share objects.
    const docs = parseAllDocuments(readFileSync(new URL("../../deploy/rbac.yaml", import.meta.url), "utf8"));
    const objects = docs.map((d) => d.toJS() as { kind: string; metadata: { namespace?: string } });
    expect(objects.map((o) => o.kind)).toEqual(["Role", "RoleBinding"]);
    for (const o of objects) {
      expect(o.metadata.namespace).toBe("default");
      o.metadata.namespace = rbacNs;
      const plural = o.kind === "Role" ? "roles" : "rolebindings";
      await adminPost(`/apis/rbac.authorization.k8s.io/v1/namespaces/${rbacNs}/${plural}`, o);
    }
    await seedSecret(rbacNs, secret, { data: { username: b64("app"), password: b64("old-password"), pgpass: b64("x") } });
    await seedSecret(rbacNs, "other-secret", { data: { password: b64("not-yours") } });
    // The binding's subject is User cnpg-rotator: authenticate as that user with a client certificate.
    const cert = await issueClientCertificate(infra, "cnpg-rotator");
    rotator = connectCluster({ kubeconfigYaml: renderKubeconfig(infra, { user: "cnpg-rotator", clientCertificate: cert }) });
  });

  afterAll(async () => {
    await rotator?.close();
  });

  it("lets the rotator read and patch its Secret and hold its Lease", async () => {
    expect((await rotator.readSecret(rbacNs, secret))?.data.password).toBe("old-password");
    const result = await rotator.updateSecret(rbacNs, secret, () => ({
      data: { password: "rotated" },
      labels: { "cnpg.io/reload": "true" },
    }));
    expect(result.written).toBe(true);
    const lease = await rotator.acquireLease(rbacNs, secret, "rbac-run", 30);
    expect(lease?.name).toBe("cnpg-rotator-cluster-example-app");
    expect(await lease!.renew()).toBe(true);
    await lease!.release();
    expect(await rotator.acquireLease(rbacNs, secret, "rbac-run-2", 30)).toBeDefined();
  });

  it("checkAccess reports nothing missing for a rotation, and `create secrets` for CreateOrMerge", async () => {
    expect(await rotator.checkAccess(rbacNs, rotationAccessChecks(secret))).toEqual([]);
    expect(await rotator.checkAccess(rbacNs, rotationAccessChecks(secret, { createSecret: true }))).toEqual([
      "create secrets",
    ]);
    expect(await rotator.checkAccess(rbacNs, rotationAccessChecks("other-secret"))).toEqual([
      "get secrets/other-secret",
      "patch secrets/other-secret",
      "get leases.coordination.k8s.io/cnpg-rotator-other-secret",
      "update leases.coordination.k8s.io/cnpg-rotator-other-secret",
    ]);
  });

  it("reading another Secret is a PermissionError naming user, verb, resource and name — never a value", async () => {
    const error = await rotator.readSecret(rbacNs, "other-secret").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
    const message = (error as Error).message;
    expect(message).toBe(
      `forbidden: user "cnpg-rotator" cannot get secrets "other-secret" in namespace "${rbacNs}" — ` +
        "grant verb get on secrets (resourceNames: other-secret); see deploy/rbac.yaml",
    );
    expect(message).not.toContain("not-yours");
    await expect(rotator.deleteSecret(rbacNs, secret)).rejects.toThrow(
      /cannot delete secrets "cluster-example-app" .* grant verb delete on secrets \(resourceNames: cluster-example-app\)/,
    );
  });

  it("a Role without patch gives a PermissionError naming patch, and the Secret keeps its value", async () => {
    const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${rbacNs}`;
    await adminPost(`${rbac}/roles`, {
      metadata: { name: "read-only" },
      rules: [{ apiGroups: [""], resources: ["secrets"], resourceNames: [secret], verbs: ["get"] }],
    });
    await adminPost(`${rbac}/rolebindings`, {
      metadata: { name: "read-only" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "read-only" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "limited" }],
    });
    const limited = connectCluster({
      kubeconfigYaml: renderKubeconfig(infra, { user: "limited", token: infra.tokens.limited }),
    });
    const before = (await rawSecret(rbacNs, secret)).body.data;
    const error = await limited
      .updateSecret(rbacNs, secret, () => ({ data: { password: "should-not-land" } }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
    const message = (error as Error).message;
    expect(message).toBe(
      `forbidden: user "limited" cannot patch secrets "${secret}" in namespace "${rbacNs}" — ` +
        `grant verb patch on secrets (resourceNames: ${secret}); see deploy/rbac.yaml`,
    );
    expect(message).not.toContain("should-not-land");
    expect(message).not.toContain(infra.tokens.limited);
    expect((await rawSecret(rbacNs, secret)).body.data).toEqual(before);
    // No Lease rights at all: the first Lease call (get) is refused, before anything is written.
    await expect(limited.acquireLease(rbacNs, secret, "x", 30)).rejects.toThrow(
      /cannot get leases.coordination.k8s.io "cnpg-rotator-cluster-example-app"/,
    );
    expect(await limited.checkAccess(rbacNs, rotationAccessChecks(secret))).toEqual([
      "patch secrets/cluster-example-app",
      "get leases.coordination.k8s.io/cnpg-rotator-cluster-example-app",
      "update leases.coordination.k8s.io/cnpg-rotator-cluster-example-app",
      "create leases.coordination.k8s.io",
    ]);
    await limited.close();
  });
});

describe("connectCluster", () => {
  const adminYaml = () => readFileSync(infra.kubeconfigPath, "utf8");

  it("takes CNPG_ROTATOR_KUBECONFIG as YAML or base64, before KUBECONFIG", async () => {
    for (const value of [adminYaml(), b64(adminYaml()), b64(adminYaml()).replace(/(.{76})/g, "$1\n")]) {
      const c = connectCluster({}, { env: { CNPG_ROTATOR_KUBECONFIG: value, KUBECONFIG: "/nonexistent" } });
      expect(await c.readSecret(ns, "read-me")).toBeDefined();
      await c.close();
    }
    const viaKubeconfig = connectCluster({}, { env: { KUBECONFIG: infra.kubeconfigPath } });
    expect(await viaKubeconfig.readSecret(ns, "read-me")).toBeDefined();
    await viaKubeconfig.close();
  });

  it("is an InputError when nothing is configured or the kubeconfig is unusable — without echoing it", () => {
    expect(() => connectCluster({}, { env: { HOME: "/nonexistent-home" } })).toThrow(InputError);
    expect(() => connectCluster({}, { env: { HOME: "/nonexistent-home" } })).toThrow(
      /no Kubernetes cluster configured: set CNPG_ROTATOR_KUBECONFIG .* or KUBECONFIG, or create \/nonexistent-home\/\.kube\/config/,
    );
    expect(() => connectCluster({ kubeconfigPath: "/nonexistent/kubeconfig" })).toThrow(/does not exist/);
    expect(() => connectCluster({}, { env: { KUBECONFIG: "/nonexistent/kubeconfig" } })).toThrow(InputError);
    expect(() => connectCluster({}, { env: { CNPG_ROTATOR_KUBECONFIG: "!!! not a kubeconfig" } })).toThrow(
      /neither kubeconfig YAML nor base64/,
    );
    const broken = `users:\n- name: x\n  user:\n    token: ${infra.adminToken}\n  [oops`;
    const error = (() => {
      try {
        connectCluster({ kubeconfigYaml: broken });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error).toBeInstanceOf(InputError);
    expect(error?.message).toMatch(/not valid YAML \(line \d+\)/);
    expect(error?.message).not.toContain(infra.adminToken);
    expect(() => connectCluster({ kubeconfigPath: infra.kubeconfigPath, context: "nope" })).toThrow(
      /has no context "nope"; it has "admin@cnpg-rotator-test"/,
    );
  });

  it("keeps TLS verification on: refuses insecure-skip-tls-verify and fails on a foreign CA", async () => {
    const insecure = adminYaml().replace(/certificate-authority-data: .*/, "insecure-skip-tls-verify: true");
    expect(() => connectCluster({ kubeconfigYaml: insecure })).toThrow(/insecure-skip-tls-verify/);
    const { certPem } = await issueClientCertificate(infra, "someone");
    const foreign = adminYaml().replace(/certificate-authority-data: .*/, `certificate-authority-data: ${b64(certPem)}`);
    const c = connectCluster({ kubeconfigYaml: foreign });
    const error = await c.readSecret(ns, "read-me").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubernetesError);
    expect((error as Error).message).toMatch(/cannot get secrets "read-me" .*: request to https:\/\/127\.0\.0\.1:\d+ failed: .*(certificate|CERT)/i);
    await c.close();
  });

  it("a rejected token is a KubernetesError saying so, without the token", async () => {
    const bad = connectCluster({ kubeconfigYaml: renderKubeconfig(infra, { user: "nobody", token: "not-a-valid-token" }) });
    const error = await bad.readSecret(ns, "read-me").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubernetesError);
    expect((error as Error).message).toMatch(/HTTP 401 Unauthorized/);
    expect((error as Error).message).not.toContain("not-a-valid-token");
    await bad.close();
  });
});

describe("transport (node:https, one keep-alive agent per client)", () => {
  const adminYaml = () => readFileSync(infra.kubeconfigPath, "utf8");
  const withProxy = (proxyUrl: string) => {
    const doc = parseYaml(adminYaml()) as { clusters: { cluster: Record<string, unknown> }[] };
    doc.clusters[0]!.cluster["proxy-url"] = proxyUrl;
    return toYaml(doc);
  };
  const SECRET = "transport-read";
  beforeAll(() => seedSecret(ns, SECRET));

  /** New TCP connections this process opens to the API server while `fn` runs. */
  async function connectionsDuring(fn: () => Promise<void>): Promise<number> {
    const port = Number(new URL(infra.server).port);
    let opened = 0;
    const onSocket = (message: unknown) => {
      const socket = (message as { socket: Socket }).socket;
      socket.once("connect", () => {
        if (socket.remotePort === port) opened++;
      });
    };
    dc.subscribe("net.client.socket", onSocket);
    try {
      await fn();
    } finally {
      dc.unsubscribe("net.client.socket", onSocket);
    }
    return opened;
  }

  it("sends a client's requests over one connection, and close() ends it; the next request opens another", async () => {
    const c = connectCluster({ kubeconfigPath: infra.kubeconfigPath });
    const opened = await connectionsDuring(async () => {
      for (let i = 0; i < 10; i++) expect(await c.readSecret(ns, SECRET)).toBeDefined();
    });
    expect(opened).toBe(1);
    expect(c.requestCount).toBe(10);
    // A run's concurrent requests share the pool too: no more connections than requests in flight.
    const parallel = await connectionsDuring(async () => {
      await Promise.all(Array.from({ length: 4 }, () => c.readSecret(ns, SECRET)));
    });
    expect(parallel).toBeLessThanOrEqual(3);
    await c.close();
    const afterClose = await connectionsDuring(async () => {
      expect(await c.readSecret(ns, SECRET)).toBeDefined();
    });
    expect(afterClose).toBe(1);
    await c.close();
  });

  it("a client certificate (mutual TLS) works over the pooled connection", async () => {
    const cert = await issueClientCertificate(infra, "transport-test");
    const c = connectCluster({ kubeconfigYaml: renderKubeconfig(infra, { user: "transport-test", clientCertificate: cert }) });
    // Authenticated as transport-test, who may do nothing: a 403 naming that user proves the certificate was presented.
    const error = await c.readSecret(ns, SECRET).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PermissionError);
    expect((error as Error).message).toContain('user "transport-test"');
    await c.close();
  });

  it("a kubeconfig proxy-url of http:// tunnels through the proxy with CONNECT, one tunnel for many requests", async () => {
    const proxy = await startConnectProxy();
    try {
      const c = connectCluster({ kubeconfigYaml: withProxy(proxy.url) });
      for (let i = 0; i < 5; i++) expect(await c.readSecret(ns, SECRET)).toBeDefined();
      expect(proxy.tunnels).toEqual([new URL(infra.server).host]);
      await c.close();
    } finally {
      await proxy.close();
    }
  });

  it("a kubeconfig proxy-url of socks5:// goes through the SOCKS proxy, one tunnel for many requests", async () => {
    const proxy = await startSocks5Proxy();
    try {
      const c = connectCluster({ kubeconfigYaml: withProxy(proxy.url) });
      for (let i = 0; i < 5; i++) expect(await c.readSecret(ns, SECRET)).toBeDefined();
      expect(proxy.tunnels).toEqual([new URL(infra.server).host]);
      await c.close();
    } finally {
      await proxy.close();
    }
  });

  it("gives up on a server that accepts and never answers after requestTimeoutMs per attempt, each attempt retried", async () => {
    const sockets = new Set<Socket>();
    const blackhole = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => blackhole.listen(0, "127.0.0.1", resolve));
    const server = `https://127.0.0.1:${(blackhole.address() as { port: number }).port}`;
    const c = connectCluster({ kubeconfigYaml: renderKubeconfig({ server, caPem: infra.caPem }, { user: "x", token: "t" }) }, { requestTimeoutMs: 300 });
    try {
      const started = Date.now();
      const error = await c.readSecret(ns, SECRET).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KubernetesError);
      expect((error as Error).message).toBe(`cannot get secrets "${SECRET}" in namespace "${ns}": no answer from ${server} in time (TimeoutError)`);
      // Four attempts of 300 ms and the pauses between them: seconds, not forever.
      expect(Date.now() - started).toBeLessThan(8_000);
      expect(sockets.size).toBe(4);
      expect(c.requests.map((r) => r.status)).toEqual([0, 0, 0, 0]);
    } finally {
      await c.close();
      for (const s of sockets) s.destroy();
      blackhole.close();
    }
  });

  it("refuses a proxy-url it cannot use, naming the field, before any request", () => {
    expect(() => connectCluster({ kubeconfigYaml: withProxy("ftp://proxy.example:21") })).toThrow(InputError);
    expect(() => connectCluster({ kubeconfigYaml: withProxy("ftp://proxy.example:21") })).toThrow(
      /cluster "cnpg-rotator-test" proxy-url has scheme "ftp"; supported: http, https, socks/,
    );
    expect(() => connectCluster({ kubeconfigYaml: withProxy("not a url") })).toThrow(/proxy-url is not a URL/);
  });
});

describe("the transport frames every body", () => {
  it("a Lease restored by delete (a DELETE with a body) leaves the kept-alive connection usable", async () => {
    const client = connectCluster({ kubeconfigPath: infra.kubeconfigPath });
    const lease = await client.acquireLease(ns, "framed", "run-framed", 30);
    await lease!.restore(); // deletes the Lease it created, with preconditions in the body
    // The next request on the same connection must be read as a request of its own.
    expect(await client.readSecret(ns, "no-such-secret-framed")).toBeUndefined();
    await client.close();
  });
});
