// The fault-injection campaign (issue #12): faults inside the requests between the rotate
// function and every server it talks to, then clean runs until settled, then the invariants.
//
//   npm run faults -- [--ci] [--runs N] [--parallel P] [--seed S] [--replay SEED[,SEED...]] [--report FILE]
//
// Each run is planned from its seed alone (`<campaign seed>-<index>`, printed with it), so
// `--replay SEED` plans and runs exactly that one again (several, comma-separated, run side by
// side). test/faults/README.md says what a run does and what each fault kind is.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import pg from "pg";
import { buildAppSecretData } from "../../lib/cnpg/index.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { encodings } from "../../lib/redact.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import { planRotations, readRemoteValue, type RotationTarget } from "../../lib/rotation/plan.ts";
import { fingerprint } from "../../lib/rotation/render.ts";
import type { ClusterObject, CnpgClusterInfo } from "../infra/cnpg/harness.ts";
import { renderKubeconfig } from "../infra/servers.ts";
import { kubeRequest } from "../infra/kube-client.ts";
import { buildChildBundles, cloudOf } from "./bundle.ts";
import { type ChildConfig, invoke, RESULT_PREFIX } from "./child.ts";
import { type FaultProxy, type FaultRule, type SeenRequest, startFaultProxy } from "./fault-proxy.ts";
import { keysKept, leaks, RotationLedger, rotationIdsMonotonic, type SecretSample } from "./invariants.ts";
import { readStore, type StoreName } from "./stores.ts";
import { type CampaignCnpg, type CampaignServers, startCampaignCnpg, startCampaignServers } from "./servers.ts";
import type { Toxic } from "./toxiproxy.ts";

// ---- plan

export const KINDS = ["reset_peer", "timeout", "blackhole", "slicer", "latency", "bandwidth", "http-5xx", "http-429", "http-drop", "sigkill", "zombie"] as const;
export type Kind = (typeof KINDS)[number];
export const SERVERS = ["kube", "aws", "gcp", "vault", "azure"] as const;
/** `cnpg`: the real CNPG's Cluster is the target; the faults are the rotate function's to kube-apiserver (the operator's own link is clean). */
export type Server = (typeof SERVERS)[number] | "cnpg";
const STORES: readonly StoreName[] = ["aws", "gcp", "vault", "azure"];
/** Kinds that hit a server; sigkill and zombie are about the process, so their column is the run's store. */
const COMBOS: readonly [Kind, Server][] = KINDS.flatMap((k) =>
  (k === "sigkill" || k === "zombie" ? SERVERS.filter((s) => s !== "kube") : SERVERS).map((s) => [k, s] as [Kind, Server]),
);
/** The `cnpg` runs' kinds: the ones between the function and a server (kube-apiserver here). */
const CNPG_KINDS: readonly Kind[] = KINDS.filter((k) => k !== "sigkill" && k !== "zombie");
const CNPG_COMBOS: readonly [Kind, Server][] = CNPG_KINDS.map((k) => [k, "cnpg"]);

/** How long one invocation may take before it counts as a hang (and is killed). */
const BOUND_MS = 60_000;
/**
 * Output kept per invocation (a debug-level run writes tens of KB). More is a violation: a
 * loop that logs without pause (on Lambda, a CloudWatch bill). Past it only the end is kept, so
 * the harness holds bounded memory however much a child writes.
 */
const OUTPUT_BOUND = 8 * 2 ** 20;
const OUTPUT_TAIL = 2 ** 20;

/** An invocation's output, bounded: the first OUTPUT_BOUND characters and the last OUTPUT_TAIL. */
function boundedOutput() {
  let head = "";
  let tail = "";
  let total = 0;
  return {
    add(text: string) {
      total += text.length;
      if (head.length < OUTPUT_BOUND) head += text;
      else {
        tail += text;
        if (tail.length > 2 * OUTPUT_TAIL) tail = tail.slice(-OUTPUT_TAIL);
      }
    },
    get overflow() {
      return total > OUTPUT_BOUND ? total : 0;
    },
    text() {
      return tail ? `${head}\n[... ${total - head.length - tail.length} characters left out ...]\n${tail}` : head;
    },
  };
}
const LEASE_SECONDS = 6;
/** Request timeouts of the faulty invocations: short, so a blackhole costs seconds (the clean runs keep the defaults). */
const FAULTY_TIMEOUT = { kubeMs: 2_500, store: "2s" };
const MAX_CLEAN_RUNS = 8;

interface Plan {
  readonly seed: string;
  readonly kind: Kind;
  readonly server: Server;
  readonly store: StoreName;
  readonly strategy: "single-user" | "alternating";
  readonly invocations: number;
  /** Start offset of each invocation (ms). */
  readonly starts: readonly number[];
  readonly writer: boolean;
  /** The invocation a fault is aimed at (-1: all of them). */
  readonly victim: number;
  /** When the fault starts after the first invocation (ms), and how long it lasts (Infinity: to the end of the faulty phase). */
  readonly at: number;
  readonly duration: number;
  readonly toxic?: Toxic;
  /** How many requests of the aimed invocations pass before the fault starts. */
  readonly after: number;
  /** HTTP faults: how many matching requests it hits. */
  readonly times: number;
  readonly rng: number;
}

function mulberry32(a: number): () => number {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash32(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * Everything a run does, from its seed alone: `<campaign seed>-<index>`, or `<campaign seed>-c<index>`
 * for a run against the real CNPG (its own round-robin, so adding them changed no other seed's plan).
 */
export function planRun(seed: string): Plan {
  const m = /^(\d+)-(c?)(\d+)$/.exec(seed);
  if (!m) throw new Error(`a run seed looks like <campaign seed>-<index> (or -c<index> for the real CNPG), e.g. 42-7 or 42-c3; found "${seed}"`);
  const index = Number(m[3]);
  const onCnpg = m[2] === "c";
  const r = mulberry32(hash32(seed));
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pickOne = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  // Round-robin over kind × server from a per-campaign offset: every combination comes up once per 53 runs (CNPG's: per 9).
  const combos = onCnpg ? CNPG_COMBOS : COMBOS;
  const [kind, server] = combos[(index + hash32(m[1]!)) % combos.length]!;
  const store = server === "kube" || server === "cnpg" ? pickOne(STORES) : (server as StoreName);
  const invocations = kind === "zombie" ? 3 : int(3, 5);
  const starts = kind === "zombie" ? [0, (LEASE_SECONDS + 1) * 1000, (LEASE_SECONDS + 1) * 1000 + 1500] : Array.from({ length: invocations }, (_, i) => (i === 0 ? 0 : int(0, 1500)));
  const at = int(200, 1800);
  let duration = int(300, 4000);
  let toxic: Toxic | undefined;
  switch (kind) {
    case "reset_peer":
      toxic = { type: "reset_peer", stream: "downstream", attributes: { timeout: int(0, 200) } };
      break;
    case "timeout":
      toxic = { type: "timeout", stream: pickOne(["upstream", "downstream"] as const), attributes: { timeout: int(100, 2000) } };
      break;
    case "blackhole":
      // Data held until the toxic goes, or never: the invocation has to give up by itself.
      toxic = { type: "timeout", stream: pickOne(["upstream", "downstream"] as const), attributes: { timeout: 0 } };
      if (r() < 0.4) duration = Number.POSITIVE_INFINITY;
      break;
    case "slicer": {
      // size_variation below average_size: toxiproxy v2.12.0's slicer panics otherwise (slicer.go:65).
      const average = int(1, 64);
      toxic = { type: "slicer", stream: "downstream", attributes: { average_size: average, size_variation: int(0, average - 1), delay: int(0, 3000) } };
      break;
    }
    case "latency":
      toxic = { type: "latency", stream: pickOne(["upstream", "downstream"] as const), attributes: { latency: int(50, 1500), jitter: int(0, 300) } };
      break;
    case "bandwidth":
      toxic = { type: "bandwidth", stream: "downstream", attributes: { rate: int(1, 16) } };
      break;
    case "zombie":
      // The first invocation's store connection and its Lease renewals are held from the start
      // until two later invocations have rotated; then it wakes.
      toxic = { type: "timeout", stream: "upstream", attributes: { timeout: 0 } };
      break;
    default:
      break;
  }
  const coin = r() < 0.5 ? "single-user" : "alternating";
  return {
    seed,
    kind,
    server,
    store,
    // CNPG's runs take the strategies in turn (with 9 kinds: every kind × strategy once per 18 runs).
    strategy: onCnpg ? (index % 2 === 0 ? "single-user" : "alternating") : coin,
    invocations,
    starts,
    writer: r() < 0.75,
    victim: kind === "zombie" ? 0 : r() < 0.6 ? -1 : int(0, invocations - 1),
    at: kind === "zombie" ? 0 : at,
    duration: kind === "zombie" ? starts[2]! + 4_000 : duration,
    ...(toxic ? { toxic } : {}),
    after: int(0, 8),
    times: int(1, 3),
    rng: hash32(`${seed}/values`),
  };
}

// ---- one run

interface InvocationOutcome {
  readonly name: string;
  readonly ms: number;
  readonly killed: boolean;
  readonly hung: boolean;
  readonly results?: { outcome: string; rotationId?: string; fingerprint?: string; error?: { type: string; message: string } }[];
  readonly thrown?: { type: string; message: string };
  readonly output: string;
  /** Characters written when past OUTPUT_BOUND, else 0. */
  readonly overflow: number;
}

export interface RunReport {
  readonly seed: string;
  readonly kind: Kind;
  readonly server: Server;
  readonly store: StoreName;
  readonly strategy: string;
  readonly invocations: number;
  readonly writer: boolean;
  readonly triggered: boolean;
  readonly hits: number;
  /** Requests the aimed invocations sent to the faulty server in the faulty phase, and how many the fault let pass first. */
  readonly aimedRequests?: number;
  readonly after?: number;
  readonly convergenceRuns: number;
  readonly hangs: number;
  readonly violations: readonly string[];
  readonly outcomes: readonly string[];
  readonly ms: number;
  /** Per invocation: name, ms, outcome (for --verbose). */
  readonly detail?: readonly string[];
}

const NODE = path.join(import.meta.dirname, "../../node_modules/.bin/node");
const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s, "base64").toString("utf8"));
const ROLES = ["app_blue", "app_green"] as const;
const roleSecret = (role: string) => `alt-${role.replace("app_", "")}`;
const SECRET = { "single-user": "cluster-example-app", alternating: "alt-consumer" } as const;
const WRITER_KEY = "faults-writer";

interface RunContext {
  readonly servers: CampaignServers;
  readonly workDir: string;
  readonly bundles: Record<"aws" | "gcp" | "azure", string>;
  /** Where a violating run's output is kept (beside --report). */
  readonly keepDir?: string;
  /** The real CNPG, when the campaign has `cnpg` runs (one at a time: they share its Cluster). */
  readonly cnpg?: CampaignCnpg;
}

function storeManifest(store: StoreName, servers: CampaignServers): string {
  const provider = {
    aws: "aws:\n      service: SecretsManager\n      region: us-east-1",
    gcp: "gcpsm:\n      projectID: faults",
    // The server here is what the SecretStore says; each invocation is pointed at its own proxy.
    vault: `vault:\n      server: "${servers.vault.address}"\n      path: secrets\n      version: v2\n      auth:\n        tokenSecretRef:\n          name: vault-token\n          key: token`,
    azure: `azurekv:\n      vaultUrl: "${servers.azure.url}"`,
  }[store];
  return `apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata:\n  name: backend\nspec:\n  provider:\n    ${provider}\n`;
}

function externalSecret(plan: Plan, ns: string, cluster: string): string {
  const generator = "  dataFrom:\n    - sourceRef:\n        generatorRef: {apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: pg-password-generator}\n";
  if (plan.strategy === "single-user") {
    return `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: cluster-example-app-secret
spec:
  refreshInterval: "24h"
  target:
    name: cluster-example-app
    creationPolicy: Merge
    template:
      metadata:
        labels:
          cnpg.io/reload: "true"
      data:
        password: "{{ .password }}"
        pgpass: "cluster-example-rw:5432:app:app:{{ .password }}"
        jdbc-uri: "jdbc:postgresql://cluster-example-rw.${ns}:5432/app?password={{ .password }}&user=app"
        uri: "postgresql://app:{{ .password }}@cluster-example-rw.${ns}:5432/app"
${generator}`;
  }
  return `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: alt
  annotations:
    cnpg-rotator.io/strategy: alternating
    cnpg-rotator.io/cluster: ${cluster}
    cnpg-rotator.io/roles: app_blue=alt-blue, app_green=alt-green
spec:
  refreshInterval: 24h
  target:
    name: alt-consumer
    creationPolicy: Merge
    template:
      data:
        password: "{{ .password }}"
        uri: "postgresql://{{ .username }}:{{ .password }}@${cluster}-rw.${ns}:5432/app"
${generator}`;
}

// A password of ESO's default symbol set, `"` and `\` included: the leak check must see them JSON-escaped too.
const GENERATOR = `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata:
  name: pg-password-generator
spec:
  length: 32
  digits: 5
  symbols: 6
  allowRepeat: true
`;

function pushSecret(plan: Plan, remoteKey: string): string {
  return `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata:
  name: push
spec:
  refreshInterval: 24h
  secretStoreRefs:
    - name: backend
      kind: SecretStore
  selector:
    secret:
      name: ${SECRET[plan.strategy]}
  data:
    - match:
        remoteRef:
          remoteKey: ${remoteKey}
`;
}

async function kreq<T = unknown>(ctx: RunContext, p: string, options: Parameters<typeof kubeRequest>[2] = {}) {
  return kubeRequest<T>(ctx.servers.kube, p, options);
}

interface RawSecret {
  metadata: { resourceVersion: string; annotations?: Record<string, string> };
  data?: Record<string, string>;
}

async function readSecret(ctx: RunContext, ns: string, name: string): Promise<RawSecret | undefined> {
  const r = await kreq<RawSecret>(ctx, `/api/v1/namespaces/${ns}/secrets/${name}`);
  return r.status === 200 ? r.body : undefined;
}

function passwordGen(seed: number): () => string {
  const r = mulberry32(seed);
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"\\$@-_%/+';
  return () => Array.from({ length: 28 }, () => chars[Math.floor(r() * chars.length)]).join("");
}

async function setup(ctx: RunContext, plan: Plan, ns: string, remoteKey: string, dir: string): Promise<{ target: RotationTarget; initial: Record<string, Record<string, string>>; secrets: Set<string> }> {
  const secrets = new Set<string>();
  const initial: Record<string, Record<string, string>> = {};
  if (plan.server === "cnpg") {
    // The real CNPG's Secrets, as the previous run left them (the runs take the Cluster in turn).
    for (const name of plan.strategy === "single-user" ? [SECRET["single-user"]] : [SECRET.alternating, ...ROLES.map(roleSecret)]) {
      const s = await readSecret(ctx, ns, name);
      if (!s) throw new Error(`Secret ${ns}/${name} of the CNPG Cluster is missing`);
      initial[name] = Object.fromEntries(Object.entries(s.data ?? {}).map(([k, v]) => [k, unb64(v)!]));
      if (initial[name]!.password) secrets.add(initial[name]!.password!);
    }
    if (plan.store === "vault") {
      const token = { apiVersion: "v1", kind: "Secret", type: "Opaque", metadata: { name: "vault-token" }, data: { token: b64(ctx.servers.vault.token) } };
      const put = await kreq(ctx, `/api/v1/namespaces/${ns}/secrets/vault-token`, { method: "PUT", body: token });
      if (put.status === 404) await kreq(ctx, `/api/v1/namespaces/${ns}/secrets`, { method: "POST", body: token });
      else if (put.status !== 200) throw new Error(`Secret ${ns}/vault-token: HTTP ${put.status}`);
    }
  } else {
    await setupNamespace(ctx, plan, ns, initial, secrets);
  }
  secrets.add(ctx.servers.vault.token);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "generator.yaml"), GENERATOR);
  writeFileSync(path.join(dir, "external-secret.yaml"), externalSecret(plan, ns, ctx.cnpg && plan.server === "cnpg" ? ctx.cnpg.cluster : "alt"));
  writeFileSync(path.join(dir, "store.yaml"), storeManifest(plan.store, ctx.servers));
  writeFileSync(path.join(dir, "push.yaml"), pushSecret(plan, remoteKey));
  const manifests = loadManifests(
    ["generator.yaml", "external-secret.yaml", "store.yaml", "push.yaml"].map((f) => ({ file: f, text: readText(path.join(dir, f)) })),
    { namespace: ns },
  );
  return { target: planRotations(manifests)[0]!, initial, secrets };
}

/** A run's own namespace: its Secrets made up from the run's seed, and (alternating) a Cluster object the stand-in plays CNPG for. */
async function setupNamespace(ctx: RunContext, plan: Plan, ns: string, initial: Record<string, Record<string, string>>, secrets: Set<string>): Promise<void> {
  const created = await kreq(ctx, "/api/v1/namespaces", { method: "POST", body: { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } } });
  if (created.status !== 201) throw new Error(`namespace ${ns}: HTTP ${created.status}`);
  const pw = passwordGen(plan.rng);
  const createSecret = async (name: string, data: Record<string, string>, type = "kubernetes.io/basic-auth", labels: Record<string, string> = {}) => {
    const r = await kreq(ctx, `/api/v1/namespaces/${ns}/secrets`, {
      method: "POST",
      body: { apiVersion: "v1", kind: "Secret", type, metadata: { name, labels }, data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) },
    });
    if (r.status !== 201) throw new Error(`Secret ${ns}/${name}: HTTP ${r.status}`);
  };
  if (plan.strategy === "single-user") {
    const password = pw();
    secrets.add(password);
    const data = buildAppSecretData({ clusterName: "cluster-example", namespace: ns, username: "app", dbname: "app", password });
    await createSecret(SECRET["single-user"], data, "kubernetes.io/basic-auth", { "cnpg.io/cluster": "cluster-example", "cnpg.io/userType": "app" });
    initial[SECRET["single-user"]] = data;
  } else {
    for (const role of ROLES) {
      const password = pw();
      secrets.add(password);
      const data = { username: role, password };
      await createSecret(roleSecret(role), data, "kubernetes.io/basic-auth", { "cnpg.io/reload": "true" });
      initial[roleSecret(role)] = data;
    }
    const password = pw();
    secrets.add(password);
    const data = buildAppSecretData({ clusterName: "alt", namespace: ns, username: "app", dbname: "app", password });
    await createSecret(SECRET.alternating, data);
    initial[SECRET.alternating] = data;
    const cluster = await kreq(ctx, `/apis/postgresql.cnpg.io/v1/namespaces/${ns}/clusters`, {
      method: "POST",
      body: {
        apiVersion: "postgresql.cnpg.io/v1",
        kind: "Cluster",
        metadata: { name: "alt" },
        spec: {
          instances: 1,
          storage: { size: "1Gi" },
          bootstrap: { initdb: { database: "app", owner: "app" } },
          managed: { roles: ROLES.map((role) => ({ name: role, ensure: "present", login: true, inherit: true, inRoles: ["app"], passwordSecret: { name: roleSecret(role) } })) },
        },
      },
    });
    if (cluster.status !== 201) throw new Error(`Cluster ${ns}/alt: HTTP ${cluster.status} ${JSON.stringify(cluster.body).slice(0, 300)}`);
  }
  if (plan.store === "vault") await createSecret("vault-token", { token: ctx.servers.vault.token }, "Opaque");
}

import { readFileSync } from "node:fs";
const readText = (f: string) => readFileSync(f, "utf8");

/** Plays CNPG's part the alternating strategy waits on: a role's passwordSecret resourceVersion into the Cluster's passwordStatus. */
function cnpgStatusWriter(ctx: RunContext, ns: string): { stop(): Promise<void> } {
  let stopped = false;
  const loop = (async () => {
    const applied: Record<string, string> = {};
    while (!stopped) {
      try {
        let changed = false;
        for (const role of ROLES) {
          const s = await readSecret(ctx, ns, roleSecret(role));
          if (s && applied[role] !== s.metadata.resourceVersion) {
            applied[role] = s.metadata.resourceVersion;
            changed = true;
          }
        }
        if (changed) {
          const passwordStatus = Object.fromEntries(Object.entries(applied).map(([role, rv]) => [role, { resourceVersion: rv, transactionID: 1 }]));
          await kreq(ctx, `/apis/postgresql.cnpg.io/v1/namespaces/${ns}/clusters/alt/status`, {
            method: "PATCH",
            contentType: "application/merge-patch+json",
            body: { status: { managedRolesStatus: { passwordStatus } } },
          });
        }
      } catch {
        // the next round tries again
      }
      await sleep(150);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** Another writer of the Secret: a key of its own, written with the resourceVersion it read; every read is a sample. */
function concurrentWriter(ctx: RunContext, ns: string, name: string, samples: SecretSample[], interval: () => number) {
  let stopped = false;
  let written: string | undefined;
  let n = 0;
  const loop = (async () => {
    while (!stopped) {
      try {
        const s = await readSecret(ctx, ns, name);
        if (s) {
          samples.push(sampleOf(s));
          const value = `writer-${++n}`;
          const r = await kreq(ctx, `/api/v1/namespaces/${ns}/secrets/${name}`, {
            method: "PATCH",
            contentType: "application/merge-patch+json",
            body: { metadata: { resourceVersion: s.metadata.resourceVersion }, data: { [WRITER_KEY]: b64(value) } },
          });
          if (r.status === 200) written = value;
        }
      } catch {
        // the next round tries again
      }
      await sleep(interval());
    }
  })();
  return {
    get written() {
      return written;
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

function sampleOf(s: RawSecret): SecretSample {
  return { resourceVersion: Number(s.metadata.resourceVersion), rotationId: s.metadata.annotations?.[ANNOTATIONS.rotationId], password: unb64(s.data?.password) };
}

interface Route {
  /** Where the child connects (a Toxiproxy proxy). */
  readonly port: number;
  readonly proxy: FaultProxy;
  readonly toxiName: string;
}

/** One invocation's way to one server: child → Toxiproxy (TCP faults) → fault proxy (HTTP faults) → server. */
async function route(ctx: RunContext, server: Server, name: string): Promise<Route> {
  const s = ctx.servers;
  const proxy = await startFaultProxy(
    server === "kube"
      ? { upstream: s.kube.server, tls: s.kube.tls, upstreamCa: s.kube.caPem }
      : server === "aws"
        ? { upstream: s.aws }
        : server === "gcp"
          ? { upstream: `http://${s.gcp}`, http2: true }
          : server === "vault"
            ? { upstream: s.vault.address }
            : { upstream: s.azure.url, tls: s.kube.tls, upstreamCa: s.azure.caPem, upstreamServername: "localhost" },
  );
  const port = await s.toxiproxy.createProxy(name, `127.0.0.1:${proxy.port}`);
  return { port, proxy, toxiName: name };
}

/** Requests that change something, where a lost answer matters (reads are retried harmlessly). */
function isWrite(server: Server, r: SeenRequest): boolean {
  if (server === "aws") {
    const op = String(r.headers["x-amz-target"] ?? "");
    return !/\.(Describe|Get|List)/.test(op);
  }
  if (server === "gcp") return !/\/(Get|Access|List)/.test(r.path);
  return r.method !== "GET";
}

function endpointsEnv(ctx: RunContext, store: StoreName, storePort: number | undefined): NodeJS.ProcessEnv {
  const s = ctx.servers;
  const env: NodeJS.ProcessEnv = {};
  if (store === "aws") env.AWS_ENDPOINT_URL_SECRETS_MANAGER = storePort ? `http://127.0.0.1:${storePort}` : s.aws;
  if (store === "gcp") env.GOOGLE_SECRET_MANAGER_ENDPOINT = storePort ? `127.0.0.1:${storePort}` : s.gcp;
  return env;
}

function spawnInvocation(
  ctx: RunContext,
  bundle: string,
  name: string,
  config: ChildConfig,
  env: NodeJS.ProcessEnv,
  storeTimeout: string,
): { child: ChildProcess; done: Promise<InvocationOutcome>; kill(): boolean } {
  const started = Date.now();
  const child = spawn(NODE, [bundle], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_COMPILE_CACHE: path.join(os.homedir(), ".cache", "cnpg-rotator", "node-compile-cache"),
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
      AWS_SESSION_TOKEN: "testing",
      AWS_REGION: "us-east-1",
      METADATA_SERVER_DETECTION: "none",
      CNPG_ROTATOR_STORE_TIMEOUT: storeTimeout,
      FAULTS_CHILD: JSON.stringify(config),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output = boundedOutput();
  child.stdout!.on("data", (c: Buffer) => output.add(c.toString()));
  child.stderr!.on("data", (c: Buffer) => output.add(c.toString()));
  let killed = false;
  let hung = false;
  const bound = setTimeout(() => {
    hung = true;
    child.kill("SIGKILL");
  }, BOUND_MS);
  const done = new Promise<InvocationOutcome>((resolve) => {
    child.on("close", () => {
      clearTimeout(bound);
      const text = output.text();
      const line = text.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
      const parsed = line ? (JSON.parse(line.slice(RESULT_PREFIX.length)) as Pick<InvocationOutcome, "results" | "thrown">) : {};
      resolve({ name, ms: Date.now() - started, killed, hung, ...parsed, output: text, overflow: output.overflow });
    });
  });
  void ctx;
  return {
    child,
    done,
    kill: () => {
      if (child.exitCode !== null || child.signalCode !== null) return false;
      killed = true;
      return child.kill("SIGKILL");
    },
  };
}

export async function runOne(ctx: RunContext, seed: string): Promise<RunReport> {
  const plan = planRun(seed);
  const began = Date.now();
  const tag = seed.replace("-", "x");
  const onCnpg = plan.server === "cnpg";
  if (onCnpg && !ctx.cnpg) throw new Error(`seed ${seed} is a run against the real CNPG, which this campaign did not start`);
  const ns = onCnpg ? ctx.cnpg!.namespace : `f-${tag}-${randomBytes(2).toString("hex")}`;
  const remoteKey = `f-${tag}-${randomBytes(3).toString("hex")}`;
  const dir = path.join(ctx.workDir, ns);
  const violations: string[] = [];
  const samples: SecretSample[] = [];
  const ledger = new RotationLedger();
  const outputs: Record<string, string> = {};
  const outcomes: string[] = [];
  const routes: Route[] = [];
  let hangs = 0;
  let triggered = false;
  let hits = 0;
  let aimedRequests: number | undefined;
  let convergenceRuns = 0;
  const { target, initial, secrets } = await setup(ctx, plan, ns, remoteKey, dir);
  const secretName = SECRET[plan.strategy];
  // The stand-in plays CNPG's part in a run's own namespace; on the real CNPG, CNPG does.
  const status = plan.strategy === "alternating" && !onCnpg ? cnpgStatusWriter(ctx, ns) : undefined;
  const kubeconfig = (server: string) => renderKubeconfig({ server, caPem: ctx.servers.kube.caPem }, { user: "admin", token: ctx.servers.kube.adminToken });
  const base = { manifestsDir: dir, namespace: ns, target: `${ns}/${secretName}` };
  const detail: string[] = [];
  const record = (o: InvocationOutcome) => {
    outputs[o.name] = o.output;
    detail.push(`${o.name}: ${o.ms} ms ${o.killed ? "killed " : ""}${o.hung ? "HUNG " : ""}${JSON.stringify(o.results?.map((r) => r.outcome === "failed" ? r.error : r.outcome) ?? o.thrown ?? "no result")}`);
    if (o.hung) {
      hangs++;
      violations.push(`${o.name} ran past the ${BOUND_MS / 1000}s bound`);
    }
    if (o.overflow) violations.push(`${o.name} wrote ${(o.overflow / 2 ** 20).toFixed(0)} MB of output (bound ${OUTPUT_BOUND / 2 ** 20} MB): a loop logging without pause`);
    for (const r of o.results ?? []) {
      outcomes.push(r.outcome === "failed" ? `failed:${r.error?.type}` : r.outcome);
      if (r.outcome === "rotated" || r.outcome === "resumed") ledger.add(r.rotationId, r.fingerprint, `${o.name}'s result`);
    }
    if (o.thrown) outcomes.push(`threw:${o.thrown.type}`);
    if (o.killed) outcomes.push("killed");
  };
  try {
    // ---- faulty phase
    const faultServer: Server = plan.kind === "sigkill" || plan.kind === "zombie" ? plan.store : plan.server === "cnpg" ? "kube" : plan.server;
    const invocations: { kube: Route; store: Route; run?: ReturnType<typeof spawnInvocation> }[] = [];
    for (let i = 0; i < plan.invocations; i++) {
      const kube = await route(ctx, "kube", `${ns}-k${i}`);
      const store = await route(ctx, plan.store, `${ns}-s${i}`);
      routes.push(kube, store);
      invocations.push({ kube, store });
    }
    const writer = plan.writer ? concurrentWriter(ctx, ns, secretName, samples, (() => { const r = mulberry32(plan.rng ^ 0x5eed); return () => 30 + Math.floor(r() * 170); })()) : undefined;
    // TCP and HTTP faults aimed at one invocation go to the first one whose traffic gets that far
    // (an invocation that lost the Lease race sends nothing to the store: aimed at it, the fault
    // would never land); aimed at all, each invocation's path has its own.
    const oneAimed = plan.victim >= 0;
    const pathsTo = invocations.map((inv) => (faultServer === "kube" ? inv.kube : inv.store));
    let faultRoutes = oneAimed ? [] : pathsTo;
    const t0 = Date.now();
    const finished: Promise<InvocationOutcome>[] = [];
    const startAll = (async () => {
      for (const [i, inv] of invocations.entries()) {
        const wait = plan.starts[i]! - (Date.now() - t0);
        if (wait > 0) await sleep(wait);
        const config: ChildConfig = {
          ...base,
          kubeconfigYaml: kubeconfig(`https://127.0.0.1:${inv.kube.port}`),
          kubeTimeoutMs: FAULTY_TIMEOUT.kubeMs,
          force: true,
          leaseSeconds: LEASE_SECONDS,
          ...(plan.store === "vault" ? { vaultServer: `http://127.0.0.1:${inv.store.port}` } : {}),
          ...(plan.store === "azure" ? { azure: { ca: ctx.servers.kube.caPem, vaultUrl: `https://127.0.0.1:${inv.store.port}` } } : {}),
        };
        // The zombie keeps the default store timeout (10 s): its held first call outlasts its Lease and then wakes.
        const storeTimeout = plan.kind === "zombie" && i === 0 ? "10s" : FAULTY_TIMEOUT.store;
        inv.run = spawnInvocation(ctx, ctx.bundles[cloudOf(plan.store)], `invocation ${i}`, config, endpointsEnv(ctx, plan.store, inv.store.port), storeTimeout);
        finished.push(inv.run.done);
      }
    })();
    const allDone = (async () => {
      await startAll;
      return Promise.all(finished);
    })();
    // ---- the fault
    const fault = (async () => {
      if (plan.kind === "zombie") {
        // The zombie holds the Lease (it started alone), then its store and cluster links are held.
        const zombie = invocations[0]!;
        await ctx.servers.toxiproxy.addToxic(zombie.store.toxiName, "stall", plan.toxic!);
        const leaseHeld = await waitFor(async () => (await leaseHolders(ctx, ns)).length > 0, 8_000);
        await ctx.servers.toxiproxy.addToxic(zombie.kube.toxiName, "stall", plan.toxic!);
        const before = zombie.store.proxy.connections + zombie.store.proxy.requests;
        await Promise.race([sleep(plan.duration), allDone]);
        await ctx.servers.toxiproxy.removeToxic(zombie.kube.toxiName, "stall");
        await ctx.servers.toxiproxy.removeToxic(zombie.store.toxiName, "stall");
        triggered = leaseHeld && zombie.run !== undefined;
        hits = zombie.store.proxy.connections + zombie.store.proxy.requests - before;
        return;
      }
      if (plan.kind === "sigkill") {
        await Promise.race([sleep(plan.at), allDone]);
        if (oneAimed) {
          // The aimed one if it still runs, else the next that does: one process killed mid-run.
          const order = [...invocations.slice(plan.victim), ...invocations.slice(0, plan.victim)];
          if (order.some((v) => v.run?.kill())) hits++;
        } else for (const v of invocations) if (v.run?.kill()) hits++;
        triggered = hits > 0;
        return;
      }
      const counts = () => faultRoutes.reduce((n, r) => n + r.proxy.requests + r.proxy.connections, 0);
      if (plan.toxic) {
        // From the aimed invocations' (after+1)th request on, so it lands inside a rotation.
        let ended = false;
        void allDone.then(() => (ended = true));
        // Aimed at one: the first path past `after` becomes the faulty one.
        const past = () => (oneAimed ? pathsTo.filter((r) => r.proxy.requests > plan.after).slice(0, 1) : faultRoutes.reduce((n, r) => n + r.proxy.requests, 0) > plan.after ? faultRoutes : []);
        while (!ended && past().length === 0) await sleep(10);
        if (ended) return;
        faultRoutes = past();
        const before = counts();
        const waiting = faultRoutes.some((r) => r.proxy.inFlight > 0);
        await Promise.all(faultRoutes.map((r) => ctx.servers.toxiproxy.addToxic(r.toxiName, "fault", plan.toxic!)));
        await Promise.race([Number.isFinite(plan.duration) ? sleep(plan.duration) : new Promise(() => {}), allDone]);
        // Traffic met the toxic: a request in flight when it came, or one after.
        hits = counts() - before + (waiting ? 1 : 0);
        await Promise.all(faultRoutes.map((r) => ctx.servers.toxiproxy.removeToxic(r.toxiName, "fault")));
      } else {
        const status = plan.kind === "http-429" ? 429 : [500, 502, 503][plan.rng % 3]!;
        const rule = (): FaultRule => ({
          match: (req: SeenRequest) => plan.kind !== "http-drop" || isWrite(faultServer, req),
          action: plan.kind === "http-drop" ? { drop: true as const } : { status },
          // A run sends few writes (AWS: three or four): a lost answer skips at most two of them.
          skip: plan.kind === "http-drop" ? plan.after % 3 : plan.after,
          times: plan.times,
        });
        // Aimed at one: one rule on every path, its counts shared, so it hits whichever invocation's requests come that far.
        const shared = oneAimed ? rule() : undefined;
        for (const r of pathsTo) r.proxy.add(shared ?? rule());
        await allDone;
        if (oneAimed) faultRoutes = pathsTo.filter((r) => r.proxy.hits > 0);
        hits = faultRoutes.reduce((n, r) => n + r.proxy.hits, 0);
      }
      triggered = hits > 0;
    })();
    // (Awaited only after the invocations end: a failure in between must not go unhandled.)
    const faultDone = fault.then(
      () => undefined,
      (e: unknown) => e,
    );
    const faulty = await allDone;
    const faultError = await faultDone;
    if (faultError) throw faultError;
    // One aimed and never reached: the furthest any invocation's traffic got.
    aimedRequests = faultRoutes.length > 0 ? faultRoutes.reduce((n, r) => n + r.proxy.requests, 0) : Math.max(0, ...pathsTo.map((r) => r.proxy.requests));
    await writer?.stop();
    for (const o of faulty) record(o);
    if (writer?.written) {
      // settled below; checked at the end
    }
    // ---- clean runs until settled: direct to the servers, default timeouts
    let settled = false;
    while (!settled && convergenceRuns < MAX_CLEAN_RUNS) {
      convergenceRuns++;
      // In this process, straight to the servers, default timeouts: an invocation nothing disturbs.
      const o = await cleanRun(`clean run ${convergenceRuns}`, {
        ...base,
        kubeconfigYaml: kubeconfig(ctx.servers.kube.server),
        kubeTimeoutMs: 30_000,
        // A run's own namespace starts never rotated, so due. The real CNPG's Secrets carry the
        // previous run's rotation (another store key), so until this run has rotated, force it.
        force: onCnpg && !outcomes.some((x) => x === "rotated" || x === "resumed"),
        leaseSeconds: 60,
        ...(plan.store === "vault" ? { vaultServer: ctx.servers.vault.address } : {}),
        ...(plan.store === "azure" ? { azure: { ca: ctx.servers.azure.caPem, vaultUrl: ctx.servers.azure.url } } : {}),
      });
      record(o);
      const r = o.results?.[0];
      if (r?.outcome === "not-due") settled = true;
      else if (r?.outcome === "locked") await sleep(1_000); // a killed run's Lease runs out
    }
    if (!settled) violations.push(`not settled after ${MAX_CLEAN_RUNS} clean runs (${outcomes.slice(-3).join(", ")})`);

    // ---- invariants
    const secret = await readSecret(ctx, ns, secretName);
    if (!secret) throw new Error(`Secret ${ns}/${secretName} is gone`);
    samples.push(sampleOf(secret));
    const data = Object.fromEntries(Object.entries(secret.data ?? {}).map(([k, v]) => [k, unb64(v)!]));
    for (const s of samples) {
      if (s.password) secrets.add(s.password);
      ledger.addPassword(s.rotationId, s.password, "the Secret");
    }
    violations.push(...rotationIdsMonotonic(samples));
    const stored = await readStore(ctx.servers, plan.store, remoteKey);
    const carried = (v: string | undefined) => (v === undefined ? undefined : readRemoteValue(target.publications[0]!, v));
    for (const v of [stored.current, stored.previous]) {
      if (!v) continue;
      const c = carried(v.value);
      if (c?.password) secrets.add(c.password);
      ledger.addPassword(v.rotationId, c?.password, `the store's ${v === stored.current ? "current" : "previous"} version`);
    }
    for (const v of stored.others) {
      const c = carried(v);
      if (c?.password) secrets.add(c.password);
    }
    const storePassword = carried(stored.current?.value)?.password;
    if (storePassword === undefined) violations.push("the store has no current value");
    else if (storePassword !== data.password) violations.push(`store current (${fingerprint(storePassword)}) != Secret password (${fingerprint(data.password ?? "")})`);
    violations.push(...ledger.violations());
    // Keys that carry the password (or, alternating, name the role) are the rotation's to change; the rest must stay byte-identical.
    const start = initial[secretName]!;
    const untouched = Object.keys(start).filter(
      (k) => k !== WRITER_KEY && !encodings(start.password!).some((f) => start[k]!.includes(f)) && !(plan.strategy === "alternating" && (k === "username" || k === "user")),
    );
    violations.push(...keysKept(start, data, untouched, `Secret ${secretName}`));
    if (plan.strategy === "alternating") {
      for (const role of ROLES) {
        const s = await readSecret(ctx, ns, roleSecret(role));
        const d = Object.fromEntries(Object.entries(s?.data ?? {}).map(([k, v]) => [k, unb64(v)!]));
        if (d.password) secrets.add(d.password);
        violations.push(...keysKept(initial[roleSecret(role)]!, d, ["username"], `Secret ${roleSecret(role)}`));
      }
      const role = ROLES.find((r) => r === data.username);
      if (!role) violations.push(`the consumer names no role (username ${data.username ? "set" : "unset"})`);
      else {
        const rs = await readSecret(ctx, ns, roleSecret(role));
        if (unb64(rs?.data?.password) !== data.password) violations.push(`the consumer's password is not its role's (${role})`);
      }
    }
    if (writer?.written !== undefined && data[WRITER_KEY] !== writer.written) violations.push(`the writer's key holds ${data[WRITER_KEY] ?? "nothing"}, expected ${writer.written}`);
    const blocking = await leaseHolders(ctx, ns);
    if (blocking.length > 0) violations.push(`Lease held after settling by ${blocking.join(", ")}`);
    if (onCnpg) violations.push(...(await cnpgCaughtUp(ctx, ctx.cnpg!, plan, secretName)));
    violations.push(...leaks(outputs, secrets));
    // A violating run keeps its invocations' output (checked above to hold no password) for diagnosis.
    if (violations.length > 0 && ctx.keepDir) {
      writeFileSync(path.join(ctx.keepDir, `faults-${seed}.log`), Object.entries(outputs).map(([n, o]) => `==== ${n}\n${o}`).join("\n"));
    }
  } finally {
    await status?.stop();
    await Promise.all(routes.map(async (r) => {
      await ctx.servers.toxiproxy.deleteProxy(r.toxiName).catch(() => {});
      await r.proxy.close().catch(() => {});
    }));
    if (!onCnpg) void kreq(ctx, `/api/v1/namespaces/${ns}`, { method: "DELETE" }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    seed,
    kind: plan.kind,
    server: plan.server,
    store: plan.store,
    strategy: plan.strategy,
    invocations: plan.invocations,
    writer: plan.writer,
    triggered,
    hits,
    ...(aimedRequests !== undefined ? { aimedRequests, after: plan.after } : {}),
    convergenceRuns,
    hangs,
    violations,
    outcomes,
    ms: Date.now() - began,
    detail,
  };
}

async function cleanRun(name: string, config: ChildConfig): Promise<InvocationOutcome> {
  const output = boundedOutput();
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<"hung">((resolve) => {
    timer = setTimeout(() => resolve("hung"), BOUND_MS);
  });
  const payload = await Promise.race([invoke(config, {
      write: (line: string) => output.add(line),
    }), bound]);
  clearTimeout(timer);
  const ended = { name, ms: Date.now() - started, killed: false, output: output.text(), overflow: output.overflow };
  if (payload === "hung") return { ...ended, hung: true };
  return { ...payload, ...ended, hung: false } as InvocationOutcome;
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await sleep(50);
  }
  return false;
}

/** Holders of a Lease in `ns` that is still valid now. */
async function leaseHolders(ctx: RunContext, ns: string): Promise<string[]> {
  const r = await kreq<{ items?: { metadata?: { name?: string }; spec?: { holderIdentity?: string; renewTime?: string; acquireTime?: string; leaseDurationSeconds?: number } }[] }>(
    ctx,
    `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
  );
  const now = Date.now();
  // The rotator's Leases (cnpg-rotator-<Secret>): in CNPG's namespace, nothing else's.
  return (r.body.items ?? []).filter((l) => l.metadata?.name?.startsWith("cnpg-rotator-") ?? true).flatMap((l) => {
    const s = l.spec;
    if (!s?.holderIdentity) return [];
    const renewed = Date.parse(s.renewTime ?? s.acquireTime ?? "");
    return renewed + (s.leaseDurationSeconds ?? 0) * 1000 > now ? [s.holderIdentity] : [];
  });
}

/** How long CNPG may take, once settled, to apply what the Secrets hold (status, then the role's password). */
const CNPG_CATCH_UP_MS = 60_000;

/**
 * On the real CNPG, once settled: CNPG's status caught up with the Secrets (single-user:
 * `secretsResourceVersion.applicationSecretVersion`; alternating, each role:
 * `managedRolesStatus.passwordStatus[role].resourceVersion` and
 * `secretsResourceVersion.managedRoleSecretVersion[<its Secret>]`), and PostgreSQL accepts each
 * Secret's current password for its role: a real login, TLS verify-full against the Cluster's CA.
 * (The operator writes its part before the instance manager runs ALTER ROLE: the login retries.)
 */
async function cnpgCaughtUp(ctx: RunContext, cnpg: CampaignCnpg, plan: Plan, secretName: string): Promise<string[]> {
  const ns = cnpg.namespace;
  const logins = plan.strategy === "single-user" ? [{ role: "app", secret: secretName }] : ROLES.map((role) => ({ role, secret: roleSecret(role) }));
  const out: string[] = [];
  for (const { role, secret } of logins) {
    // Each role its own limit: a second role read after the first used it up would report "not read".
    const deadline = Date.now() + CNPG_CATCH_UP_MS;
    const s = await readSecret(ctx, ns, secret);
    const rv = s?.metadata.resourceVersion;
    const password = unb64(s?.data?.password);
    if (!rv || password === undefined) {
      out.push(`CNPG: Secret ${secret} has no password`);
      continue;
    }
    const behind = (c: ClusterObject): string | undefined => {
      const st = c.status;
      if (plan.strategy === "single-user") {
        const at = st?.secretsResourceVersion?.applicationSecretVersion;
        return at === rv ? undefined : `applicationSecretVersion ${at ?? "unset"}`;
      }
      const applied = st?.managedRolesStatus?.passwordStatus?.[role]?.resourceVersion;
      const seen = st?.secretsResourceVersion?.managedRoleSecretVersion?.[secret];
      return applied === rv && seen === rv ? undefined : `passwordStatus.${role} ${applied ?? "unset"}, managedRoleSecretVersion.${secret} ${seen ?? "unset"}`;
    };
    let lag: string | undefined = "not read";
    while (Date.now() < deadline) {
      lag = behind(await cnpg.harness.getCluster(ns, cnpg.cluster).catch(() => ({ metadata: {}, spec: {} }) as unknown as ClusterObject));
      if (lag === undefined) break;
      await sleep(250);
    }
    if (lag !== undefined) {
      out.push(`CNPG's status did not catch up with Secret ${secret} (resourceVersion ${rv}) within ${CNPG_CATCH_UP_MS / 1000}s: ${lag}`);
      continue;
    }
    let result = "not tried";
    while (Date.now() < deadline) {
      result = await pgLogin(await cnpg.info(), role, password);
      if (result === "ok") break;
      await sleep(250);
    }
    if (result !== "ok") out.push(`PostgreSQL does not accept ${role}'s current password (${fingerprint(password)}, Secret ${secret}): ${result}`);
  }
  return out;
}

/** One login as `user` to the Cluster's primary (verify-full with `<cluster>-rw` as the server name): "ok", "refused" or the error's code. */
async function pgLogin(cluster: CnpgClusterInfo, user: string, password: string): Promise<string> {
  const client = new pg.Client({
    host: cluster.host,
    port: cluster.port,
    user,
    password,
    database: "app",
    ssl: { ca: cluster.caPem, servername: cluster.tlsServerName, rejectUnauthorized: true },
    connectionTimeoutMillis: 5_000,
  });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.query("SELECT 1");
    return "ok";
  } catch (error) {
    const code = (error as { code?: string }).code;
    // Never the message: only the server's code (28P01: password refused) or the error's name.
    return code === "28P01" || code === "28000" ? "refused" : `error ${code ?? (error as Error).name}`;
  } finally {
    await client.end().catch(() => {});
  }
}

// ---- the campaign

function table(reports: readonly RunReport[]): string {
  const rows: string[][] = [["kind", "server", "runs", "faults triggered", "convergence runs", "violations", "hangs"]];
  const totals = { runs: 0, triggered: 0, convergence: 0, violations: 0, hangs: 0 };
  for (const [kind, server] of [...COMBOS, ...CNPG_COMBOS]) {
    const rs = reports.filter((r) => r.kind === kind && r.server === server);
    if (rs.length === 0) continue;
    const t = rs.filter((r) => r.triggered).length;
    const c = rs.reduce((n, r) => n + r.convergenceRuns, 0);
    const v = rs.filter((r) => r.violations.length > 0).length;
    const h = rs.reduce((n, r) => n + r.hangs, 0);
    rows.push([kind, server, String(rs.length), String(t), String(c), String(v), String(h)]);
    totals.runs += rs.length;
    totals.triggered += t;
    totals.convergence += c;
    totals.violations += v;
    totals.hangs += h;
  }
  rows.push(["all", "", String(totals.runs), String(totals.triggered), String(totals.convergence), String(totals.violations), String(totals.hangs)]);
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r, j) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |${j === 0 ? `\n|${widths.map((w) => "-".repeat(w + 2)).join("|")}|` : ""}`).join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ci: { type: "boolean", default: false },
      runs: { type: "string" },
      parallel: { type: "string" },
      seed: { type: "string" },
      replay: { type: "string" },
      report: { type: "string" },
      kinds: { type: "string" },
      servers: { type: "string" },
      "cnpg-runs": { type: "string" },
      verbose: { type: "boolean", default: false },
    },
  });
  const positive = (name: string, v: string | undefined, fallback: number) => {
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v) || Number(v) < 1) throw new Error(`--${name}: expected a positive integer, found "${v}"`);
    return Number(v);
  };
  if (values.seed !== undefined && !/^\d+$/.test(values.seed)) throw new Error(`--seed: expected a non-negative integer, found "${values.seed}"`);
  // A malformed seed fails before any server starts; several replay side by side, as they ran.
  const replays = values.replay?.split(",").map((x) => x.trim()).filter(Boolean);
  if (replays !== undefined && replays.length === 0) throw new Error(`--replay: expected one or more comma-separated seeds, found "${values.replay}"`);
  for (const r of replays ?? []) planRun(r);
  const runs = replays ? replays.length : positive("runs", values.runs, values.ci ? 106 : 1_000);
  // Runs mostly wait (timeouts, Leases running out, CNPG's status): more at once than cores.
  const parallel = positive("parallel", values.parallel, values.ci ? 8 : 6);
  const list = <T extends string>(name: string, raw: string | undefined, known: readonly T[]): Set<T> | undefined => {
    if (raw === undefined) return undefined;
    const items = raw.split(",").map((x) => x.trim()).filter(Boolean);
    const unknown = items.filter((x) => !known.includes(x as T));
    if (items.length === 0 || unknown.length > 0) throw new Error(`--${name}: expected a comma-separated list of ${known.join(", ")}; found "${raw}"`);
    return new Set(items as T[]);
  };
  const kinds = list("kinds", values.kinds, KINDS);
  const servers_ = list<Server>("servers", values.servers, [...SERVERS, "cnpg"]);
  const cnpgRunsAsked = values["cnpg-runs"] === undefined ? undefined : /^\d+$/.test(values["cnpg-runs"]) ? Number(values["cnpg-runs"]) : Number.NaN;
  if (Number.isNaN(cnpgRunsAsked)) throw new Error(`--cnpg-runs: expected a non-negative integer, found "${values["cnpg-runs"]}"`);
  const campaignSeed = values.seed ?? String(Date.now() % 1_000_000_000);
  // Seeds in index order, keeping those the filters let through (a seed's plan never depends on the filters).
  const pick = (count: number, prefix: string, combos: readonly [Kind, Server][]) => {
    const out: string[] = [];
    if (!combos.some(([k, sv]) => (!kinds || kinds.has(k)) && (!servers_ || servers_.has(sv)))) return out;
    for (let i = 0; out.length < count; i++) {
      const seed = `${campaignSeed}-${prefix}${i}`;
      const p = planRun(seed);
      if ((!kinds || kinds.has(p.kind)) && (!servers_ || servers_.has(p.server))) out.push(seed);
    }
    return out;
  };
  const onlyCnpg = servers_ !== undefined && [...servers_].every((x) => x === "cnpg");
  // The real CNPG's share: --ci 6 (both strategies, 6 of its 9 kinds), the full campaign 1 in 20.
  const cnpgRuns = cnpgRunsAsked ?? (onlyCnpg ? runs : values.ci ? 6 : Math.ceil(runs / 20));
  const seeds = replays ? replays : onlyCnpg ? [] : pick(runs, "", COMBOS);
  const cnpgSeeds = replays ? seeds.filter((x) => planRun(x).server === "cnpg") : pick(cnpgRuns, "c", CNPG_COMBOS);
  const regularSeeds = seeds.filter((x) => planRun(x).server !== "cnpg");
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const workDir = mkdtempSync(path.join(os.tmpdir(), "cnpg-rotator-faults-"));
  const total = regularSeeds.length + cnpgSeeds.length;
  log(`[faults] campaign seed ${campaignSeed}: ${total} faulty run(s), ${parallel} at a time${cnpgSeeds.length ? ` (${cnpgSeeds.length} on the real CNPG, one at a time beside them)` : ""}`);
  const begin = Date.now();
  const [servers, bundles] = await Promise.all([startCampaignServers(workDir, log), buildChildBundles()]);
  // The clean runs go straight to the servers, from this process.
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_SECRETS_MANAGER: servers.aws,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_SESSION_TOKEN: "testing",
    AWS_REGION: "us-east-1",
    GOOGLE_SECRET_MANAGER_ENDPOINT: servers.gcp,
    METADATA_SERVER_DETECTION: "none",
  });
  let ctx: RunContext = { servers, workDir, bundles, ...(values.report ? { keepDir: path.dirname(path.resolve(values.report)) } : {}) };
  const reports: RunReport[] = [];
  let cnpg: CampaignCnpg | undefined;
  const runSeeds = async (queue: string[]) => {
    while (queue.length > 0) {
      const seed = queue.shift()!;
      let report: RunReport;
      try {
        report = await runOne(ctx, seed);
      } catch (e) {
        const plan = planRun(seed);
        report = { seed, kind: plan.kind, server: plan.server, store: plan.store, strategy: plan.strategy, invocations: plan.invocations, writer: plan.writer, triggered: false, hits: 0, convergenceRuns: 0, hangs: 0, violations: [`the run itself failed: ${(e as Error).message}`], outcomes: [], ms: 0 };
      }
      reports.push(report);
      if (values.verbose) for (const line of report.detail ?? []) log(`    ${line}`);
      const verdict = report.violations.length ? `VIOLATION ${report.violations.join("; ")}` : "ok";
      log(
        `[faults] ${String(reports.length).padStart(4)}/${total} seed ${seed} ${report.kind}@${report.server} (${report.store}, ${report.strategy}, ${report.invocations} inv${report.writer ? ", writer" : ""}) ` +
          `hit ${report.hits} clean ${report.convergenceRuns} ${(report.ms / 1000).toFixed(1)}s heap ${Math.round(process.memoryUsage().heapUsed / 2 ** 20)} MB [${report.outcomes.join(" ")}] ${verdict}`,
      );
    }
  };
  const queue = [...regularSeeds];
  // The real CNPG starts while the other runs go; its runs then take its Cluster one at a time.
  const cnpgLane = async () => {
    if (cnpgSeeds.length === 0) return;
    try {
      cnpg = await startCampaignCnpg(
        servers,
        { cluster: "cluster-example", roles: Object.fromEntries(ROLES.map((r) => [r, roleSecret(r)])), consumer: SECRET.alternating, password: () => randomBytes(18).toString("base64url") },
        log,
      );
    } catch (e) {
      queue.length = 0; // a campaign asked to run on CNPG and unable to is no campaign: stop the others too
      throw new Error(`the real CNPG did not start (--cnpg-runs 0 leaves its runs out): ${(e as Error).message}`);
    }
    ctx = { ...ctx, cnpg };
    await runSeeds([...cnpgSeeds]);
  };
  let harnessFailure: string | undefined;
  try {
    await Promise.race([Promise.all([cnpgLane(), ...Array.from({ length: Math.min(parallel, queue.length) }, () => runSeeds(queue))]), servers.died]);
  } catch (e) {
    // A server of the campaign's own is gone, or the real CNPG did not start: the runs still under way cannot be judged.
    harnessFailure = (e as Error).message;
    queue.length = 0;
  } finally {
    await (cnpg as CampaignCnpg | undefined)?.stop().catch(() => {});
    await servers.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
  const seconds = (Date.now() - begin) / 1000;
  const out = `${table(reports)}\n\n${reports.length} faulty runs in ${seconds.toFixed(0)}s (campaign seed ${campaignSeed}, --parallel ${parallel})`;
  process.stdout.write(`${out}\n`);
  const bad = reports.filter((r) => r.violations.length > 0 || r.hangs > 0);
  for (const r of bad) {
    process.stdout.write(`violation: seed ${r.seed} (${r.kind}@${r.server}): ${r.violations.join("; ")}\n  replay: npm run faults -- --replay ${r.seed}\n`);
    if (ctx.keepDir) process.stdout.write(`  output: ${path.join(ctx.keepDir, `faults-${r.seed}.log`)}\n`);
  }
  if (values.report) writeFileSync(values.report, JSON.stringify({ campaignSeed, parallel, seconds, reports, ...(harnessFailure ? { harnessFailure } : {}) }, null, 2));
  if (harnessFailure) {
    process.stdout.write(`harness failure: ${harnessFailure}; the campaign stopped after ${reports.length} of ${total} runs\n`);
    // The runs still under way are abandoned: their invocations time out on their own.
    process.exit(2);
  }
  process.exitCode = bad.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  main().catch((e: unknown) => {
    process.stderr.write(`[faults] ${(e as Error).stack ?? String(e)}\n`);
    process.exit(2);
  });
}
