// One deployment, many clusters: the manifests loaded and checked once per cold start, an
// engine per cluster (built on first use, kept warm), and the consumer's side of the queue —
// one message, one target, rotated by the existing engine under its Lease with its due
// check, so an at-least-once delivery never makes a second password in one period.
import pLimit from "p-limit";
import { InputError } from "../errors.ts";
import type { KubernetesClient } from "../kubernetes/index.ts";
import { createLogger, type Logger } from "../log.ts";
import { redactError } from "../redact.ts";
import { DEFAULT_CLUSTER, type ManifestSet } from "../manifests/index.ts";
import { type EngineConfig, engineFromEnvironment } from "../rotation/context.ts";
import { type Engine, rotate } from "../rotation/engine.ts";
import { join } from "node:path";
import { manifestsFromEnvironment, readManifests } from "../rotation/files.ts";
import { clusterSubset, planRotations, type RotationTarget, targetName } from "../rotation/plan.ts";
import type { RotationResult } from "../rotation/rotate.ts";
import { type PushReport, type PushRequest, push } from "../rotation/push.ts";
import { publicationsOf } from "../rotation/plan.ts";
import { type Status, status } from "../rotation/status.ts";
import { ClusterConnections, checkClusters, clusterConcurrency, clusterNames } from "./clusters.ts";
import { isCompiledDir, type PlannedTarget, plannedTarget, readPlannedTargets, readTargetPart, SHARED } from "./compiled.ts";
import { type FleetMessage, parseMessage } from "./messages.ts";

export interface Fleet {
  /** The manifests loaded at cold start: all of them, or — compiled — the shared ones only. */
  readonly manifests: ManifestSet;
  readonly log: Logger;
  readonly connections: ClusterConnections;
  readonly env: NodeJS.ProcessEnv;
  /** Every target's cluster, name and due rule, for the planner (compiled: plan.json, not every document). */
  plannedTargets(): readonly PlannedTarget[];
  /** Every document (compiled: all.json, read on first use), for the pushes of every cluster. */
  allManifests(): ManifestSet;
  /** One target and the manifests to rotate it with; InputError when there is none. */
  target(cluster: string, target: string): { readonly target: RotationTarget; readonly manifests: ManifestSet };
  /** The engine of one cluster, built on first use. */
  engineFor(cluster: string): Promise<Engine>;
  close(): Promise<void>;
}

export interface FleetConfig extends Omit<EngineConfig, "kube" | "manifestSet"> {
  /** Already loaded manifests (tests, the bench); default: CNPG_ROTATOR_MANIFESTS. */
  readonly manifestSet?: ManifestSet;
  /** Clients to use for these clusters instead of connecting (tests). */
  readonly clients?: ReadonlyMap<string, KubernetesClient>;
  /** Overrides of the built engines (tests: a clock, a store factory). */
  readonly engine?: Partial<Engine>;
}

const key = (cluster: string, target: string) => `${cluster}|${target}`;

/**
 * Loads the manifests, checks every cluster's connection settings and plans every target —
 * any bad input fails here, at cold start, before a message is sent or a Secret written.
 */
export function fleetFromEnvironment(config: FleetConfig = {}): Fleet {
  const env = config.env ?? process.env;
  const log = config.log ?? createLogger();
  const paths = config.manifests ?? (env.CNPG_ROTATOR_MANIFESTS ?? "manifests").split(",").filter(Boolean);
  const namespace = config.namespace ?? env.CNPG_ROTATOR_NAMESPACE;
  // Compiled per target (a deployed function): read only the shared part now, a target's when asked.
  const compiled = !config.manifestSet && paths.length === 1 && isCompiledDir(paths[0]!) ? paths[0]! : undefined;
  const manifests =
    config.manifestSet ??
    (compiled
      ? readManifests([join(compiled, SHARED)], namespace ? { namespace } : {})
      : manifestsFromEnvironment(env, { paths, ...(namespace ? { namespace } : {}) }));
  for (const warning of config.manifestSet || compiled ? [] : manifests.warnings) log.warn({ warning }, "manifest field has no effect");
  checkClusters(manifests, env);
  const index = new Map<string, RotationTarget>();
  if (!compiled) for (const t of planRotations(manifests)) index.set(key(t.cluster, targetName(t)), t); // every target checked at cold start
  let whole: ManifestSet | undefined;
  const allManifests = () => {
    whole ??= compiled ? readManifests([compiled], namespace ? { namespace } : {}) : manifests;
    return whole;
  };
  let planned: PlannedTarget[] | undefined;
  const plannedTargets = () => {
    planned ??= compiled ? readPlannedTargets(compiled) : [...index.values()].map(plannedTarget);
    return planned;
  };
  for (const cluster of clusterNames(manifests)) clusterConcurrency(manifests, cluster, env); // a bad cap fails now
  const connections = new ClusterConnections(manifests, { env, log, ...(config.clients ? { given: config.clients } : {}) });
  const engines = new Map<string, Promise<Engine>>();
  const { clients: _c, engine: overrides, manifestSet: _m, ...engineConfig } = config;
  const unknown = (cluster: string, target: string, full: string) => {
    const known = [...new Set([DEFAULT_CLUSTER, ...clusterNames(manifests)])].sort();
    return new InputError(
      known.includes(cluster)
        ? `target "${target}" in cluster "${cluster}": no ExternalSecret targets Secret ${full} there`
        : `cluster "${cluster}": no KubernetesCluster of that name; known: ${known.join(", ")}`,
    );
  };
  return {
    manifests,
    log,
    connections,
    env,
    plannedTargets,
    allManifests,
    target(cluster, target) {
      const full = target.includes("/") ? target : `default/${target}`;
      if (!compiled) {
        const found = index.get(key(cluster, full));
        if (!found) throw unknown(cluster, target, full);
        return { target: found, manifests: { ...manifests, externalSecrets: [found.externalSecret] } };
      }
      const part = readTargetPart(compiled, cluster, full, namespace);
      const found = part && planRotations(part).find((t) => t.cluster === cluster && targetName(t) === full);
      if (!part || !found) throw unknown(cluster, target, full);
      return { target: found, manifests: part };
    },
    engineFor(cluster) {
      let engine = engines.get(cluster);
      if (!engine) {
        engine = (async () => {
          const kube = await connections.get(cluster);
          const built = await engineFromEnvironment({ ...engineConfig, env, log: log.child({ cluster }), manifestSet: manifests, kube });
          return { ...built, ...overrides };
        })().catch((e: unknown) => {
          engines.delete(cluster);
          throw e;
        });
        engines.set(cluster, engine);
      }
      return engine;
    },
    async close() {
      engines.clear();
      await connections.closeAll();
    },
  };
}

export interface RotateOne {
  readonly cluster: string;
  /** `namespace/name` of the target Secret. */
  readonly target: string;
  readonly force?: boolean;
  readonly dryRun?: boolean;
}

/**
 * Rotates one target of one cluster with the cluster's engine: the engine plans only this
 * target (its manifests narrowed to its ExternalSecret), so a message costs the same
 * whatever the fleet's size.
 */
export async function rotateOne(fleet: Fleet, request: RotateOne): Promise<RotationResult> {
  const { target, manifests } = fleet.target(request.cluster, request.target);
  const engine = await fleet.engineFor(request.cluster);
  const only: ManifestSet = { ...manifests, externalSecrets: [target.externalSecret] };
  const [result] = await rotate(
    { ...engine, manifests: only },
    {
      targets: [targetName(target)],
      ...(request.force !== undefined ? { force: request.force } : {}),
      ...(request.dryRun !== undefined ? { dryRun: request.dryRun } : {}),
    },
  );
  return result!;
}

/**
 * Where one target of one cluster stands (read-only): its ExternalSecret and the PushSecrets of that
 * cluster writing its Secret, read with the cluster's engine, as rotateOne narrows it.
 */
export async function statusOne(fleet: Fleet, cluster: string, target: string): Promise<Status[]> {
  const { target: found, manifests } = fleet.target(cluster, target);
  const engine = await fleet.engineFor(cluster);
  const only = clusterSubset({ ...manifests, externalSecrets: [found.externalSecret] }, cluster);
  return status({ ...engine, manifests: only }, { targets: [targetName(found)] });
}

/**
 * The PushSecrets of one cluster (or those of them `request.targets` names), pushed with that
 * cluster's engine: its Secrets read through its own connection, under its own Leases.
 */
export async function pushInCluster(fleet: Fleet, cluster: string, request: PushRequest = {}): Promise<PushReport[]> {
  const known = clusterNames(fleet.allManifests());
  if (!known.includes(cluster)) throw new InputError(`cluster "${cluster}": no KubernetesCluster of that name; known: ${known.join(", ")}`);
  const manifests = clusterSubset(fleet.allManifests(), cluster);
  if (manifests.pushSecrets.length === 0 && !request.targets?.length) return [];
  return push({ ...(await fleet.engineFor(cluster)), manifests }, request);
}

/**
 * A push schedule's run over the KubernetesClusters (the default cluster is the engine's own):
 * the clusters side by side, each failing alone — a cluster that cannot be reached fails its
 * PushSecrets' reports, named, and the others push.
 */
export async function pushClusters(fleet: Fleet, request: PushRequest = {}): Promise<PushReport[]> {
  const clusters = fleet.allManifests().clusters.map((c) => c.metadata.name);
  const reports = await Promise.all(
    clusters.map((cluster) =>
      pushInCluster(fleet, cluster, request).catch((e: unknown) => {
        if (e instanceof InputError) throw e;
        const err = redactError(e instanceof Error ? e : new Error(String(e)));
        fleet.log.error({ cluster, error: { type: err.name, message: err.message } }, "cluster could not be pushed; its PushSecrets wait for the next schedule");
        return clusterSubset(fleet.allManifests(), cluster).pushSecrets.flatMap((ps) =>
          publicationsOf(ps).map(
            (p): PushReport => ({
              pushSecret: `${ps.metadata.namespace}/${ps.metadata.name}`,
              secret: `${ps.metadata.namespace}/${ps.secretName}`,
              store: `${p.store.kind}/${p.store.metadata.name}`,
              provider: p.store.provider.name,
              remoteKey: p.remoteKey,
              outcome: "failed",
              error: { type: err.name, message: `cluster "${cluster}": ${err.message}` },
            }),
          ),
        );
      }),
    ),
  );
  return reports.flat();
}

/** One received message, as the consumer sees it. */
export interface Delivered {
  readonly id: string;
  readonly body: string;
}

export interface MessageResult {
  readonly id: string;
  readonly cluster?: string;
  readonly target?: string;
  /** The engine's outcome, or `failed` for a message that could not be read or rotated. */
  readonly outcome: RotationResult["outcome"] | "malformed";
  readonly error?: { readonly type: string; readonly message: string };
  readonly result?: RotationResult;
  /** From the start of its rotation (after any wait for the cluster's cap) to its end. */
  readonly durationMs?: number;
}

/** A message is handled (deleted from the queue) unless it failed: the queue delivers it again, up to its DLQ. */
export function failedMessage(r: MessageResult): boolean {
  return r.outcome === "failed" || r.outcome === "malformed";
}

// A cluster whose API server cannot be reached fails the rest of its messages in the batch at
// once instead of each waiting out its own timeouts: the queue delivers them again later.
const UNREACHABLE = /request to \S+ failed|no answer from \S+ in time/;

/**
 * Rotates the targets of a batch of messages: at most the cluster's cap at once per cluster,
 * the clusters side by side, so a slow or unreachable cluster holds up only its own messages.
 * Never throws for one message: each gets its own result, and the caller reports the failed
 * ones to the queue (partial batch response).
 */
export async function consumeBatch(fleet: Fleet, messages: readonly Delivered[]): Promise<MessageResult[]> {
  const limits = new Map<string, ReturnType<typeof pLimit>>();
  const down = new Map<string, { type: string; message: string }>();
  const limitFor = (cluster: string) => {
    let limit = limits.get(cluster);
    if (!limit) {
      limit = pLimit(clusterConcurrency(fleet.manifests, cluster, fleet.env));
      limits.set(cluster, limit);
    }
    return limit;
  };
  return Promise.all(
    messages.map(async (delivered): Promise<MessageResult> => {
      let message: FleetMessage;
      try {
        message = parseMessage(delivered.body, delivered.id);
        fleet.target(message.cluster, message.target);
      } catch (e) {
        const error = errorOf(e);
        fleet.log.error({ messageId: delivered.id, error }, "queue message refused");
        return { id: delivered.id, outcome: "malformed", error };
      }
      const { cluster, target } = message;
      return limitFor(cluster)(async (): Promise<MessageResult> => {
        const unreachable = down.get(cluster);
        if (unreachable) {
          fleet.log.warn({ messageId: delivered.id, cluster, target }, "cluster unreachable in this batch: message failed without a try");
          return { id: delivered.id, cluster, target, outcome: "failed", error: unreachable };
        }
        const started = performance.now();
        try {
          const result = await rotateOne(fleet, { cluster, target });
          const durationMs = Math.round(performance.now() - started);
          if (result.outcome === "failed" && result.error && UNREACHABLE.test(result.error.message)) {
            down.set(cluster, { type: result.error.type, message: `cluster "${cluster}" unreachable: ${result.error.message}` });
          }
          fleet.log.info({ messageId: delivered.id, cluster, target, due: message.due, outcome: result.outcome }, "queue message handled");
          return { id: delivered.id, cluster, target, outcome: result.outcome, ...(result.error ? { error: result.error } : {}), result, durationMs };
        } catch (e) {
          const error = errorOf(e);
          if (UNREACHABLE.test(error.message)) down.set(cluster, error);
          fleet.log.error({ messageId: delivered.id, cluster, target, error }, "queue message failed");
          return { id: delivered.id, cluster, target, outcome: "failed", error };
        }
      });
    }),
  );
}

function errorOf(e: unknown): { type: string; message: string } {
  const error = redactError(e instanceof Error ? e : new Error(String(e)));
  return { type: error.name, message: error.message };
}
