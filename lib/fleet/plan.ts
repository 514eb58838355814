// The planner: which targets are due, found cheaply, and one message each on the queue.
// Per cluster, per namespace, one metadata-only LIST of the Secrets we rotated (label
// cnpg.io/reload=true, which every merge sets), page by page: the API server sends names
// and annotations, never a Secret's data, and the requests grow with namespaces, not
// targets. The due check is the engine's own (names.ts) on those annotations; a target
// missing from the list (never rotated, or its label removed) is enqueued, and its consumer
// decides on the Secret itself. Each cluster's messages are spread evenly over the window,
// so thousands of targets do not reach one API server at once.
import pLimit from "p-limit";
import { InputError } from "../errors.ts";
import type { SecretMetadata } from "../kubernetes/index.ts";
import { redactError } from "../redact.ts";
import { dueUnder } from "../rotation/names.ts";
import { MAX_DELAY_SECONDS, type OutgoingMessage, type WorkQueue } from "../queues/types.ts";
import { namespaceOf, type PlannedTarget } from "./compiled.ts";
import type { Fleet } from "./fleet.ts";
import { encodeMessage } from "./messages.ts";

/** The seconds the planner spreads each cluster's messages over (SQS delays: at most 900). */
export const SPREAD_ENV = "CNPG_ROTATOR_SPREAD_SECONDS";
const DEFAULT_SPREAD_SECONDS = MAX_DELAY_SECONDS;
/** The label every merge sets (act.ts): the Secrets a list needs to look at. */
export const ROTATED_SELECTOR = "cnpg.io/reload=true";
/** Namespaces of one cluster listed at once. */
const LISTS_IN_FLIGHT = 4;

export interface ClusterPlan {
  readonly cluster: string;
  readonly targets: number;
  readonly namespaces: number;
  /** Requests sent to this cluster's API server. */
  readonly requests: number;
  readonly due: number;
  /** The cluster could not be listed: nothing was enqueued for it (the next schedule tries again). */
  readonly error?: { readonly type: string; readonly message: string };
}

export interface Plan {
  readonly clusters: readonly ClusterPlan[];
  readonly messages: readonly OutgoingMessage[];
}

export function spreadSeconds(env: NodeJS.ProcessEnv): number {
  const value = env[SPREAD_ENV];
  if (value === undefined || value === "") return DEFAULT_SPREAD_SECONDS;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > MAX_DELAY_SECONDS) {
    throw new InputError(`${SPREAD_ENV}: expected whole seconds from 0 to ${MAX_DELAY_SECONDS}, found "${value}"`);
  }
  return n;
}

/** What is due now in every cluster, one message per target; clusters are listed side by side, each failing alone. */
export async function planFleet(fleet: Fleet, options: { now?: Date; spreadSeconds?: number } = {}): Promise<Plan> {
  const now = options.now ?? new Date();
  const spread = options.spreadSeconds ?? spreadSeconds(fleet.env);
  const byCluster = new Map<string, PlannedTarget[]>();
  for (const t of fleet.plannedTargets()) {
    if (!byCluster.has(t.cluster)) byCluster.set(t.cluster, []);
    byCluster.get(t.cluster)!.push(t);
  }
  const clusters = [...byCluster.keys()].sort();
  const planned = await Promise.all(clusters.map((c) => planCluster(fleet, c, byCluster.get(c)!, now)));
  const messages: OutgoingMessage[] = [];
  for (const { due } of planned) {
    // Evenly over [0, spread): this cluster's API server sees a steady trickle, not a burst.
    for (const [i, m] of due.entries()) messages.push({ body: m.body, delaySeconds: Math.floor((i * spread) / due.length) });
  }
  return { clusters: planned.map((p) => p.plan), messages };
}

async function planCluster(
  fleet: Fleet,
  cluster: string,
  targets: readonly PlannedTarget[],
  now: Date,
): Promise<{ plan: ClusterPlan; due: { body: string }[] }> {
  const byNamespace = new Map<string, PlannedTarget[]>();
  for (const t of targets) {
    const ns = namespaceOf(t.target);
    if (!byNamespace.has(ns)) byNamespace.set(ns, []);
    byNamespace.get(ns)!.push(t);
  }
  const base = { cluster, targets: targets.length, namespaces: byNamespace.size };
  let requestsBefore = 0;
  let kube: Awaited<ReturnType<Fleet["connections"]["get"]>> | undefined;
  try {
    kube = await fleet.connections.get(cluster);
    requestsBefore = kube.requestCount;
    const limit = pLimit(LISTS_IN_FLIGHT);
    const listed = await Promise.all(
      [...byNamespace.keys()].map((ns) => limit(async () => [ns, await kube!.listSecretMetadata(ns, ROTATED_SELECTOR)] as const)),
    );
    const seen = new Map<string, SecretMetadata>();
    for (const [ns, items] of listed) for (const item of items) seen.set(`${ns}/${item.name}`, item);
    const due: { body: string }[] = [];
    for (const t of targets) {
      const name = t.target;
      const check = dueUnder(t.rule, seen.get(name), now);
      if (!check.due) continue;
      const dueAt = check.nextDue && check.nextDue < now ? check.nextDue : now;
      due.push({ body: encodeMessage({ cluster, target: name, due: dueAt.toISOString() }) });
    }
    const plan = { ...base, requests: kube.requestCount - requestsBefore, due: due.length };
    fleet.log.info(plan, "cluster planned");
    return { plan, due };
  } catch (e) {
    if (e instanceof InputError) throw e; // bad configuration: the whole plan stops, nothing is sent
    const err = redactError(e instanceof Error ? e : new Error(String(e)));
    const error = { type: err.name, message: err.message };
    fleet.log.error({ cluster, error }, "cluster could not be planned; its targets wait for the next schedule");
    return { plan: { ...base, requests: kube ? kube.requestCount - requestsBefore : 0, due: 0, error }, due: [] };
  }
}

/** Plans, then sends every message; a failed send throws (the schedule's retry plans again: the due check makes that harmless). */
export async function planAndEnqueue(fleet: Fleet, queue: WorkQueue, options: { now?: Date; spreadSeconds?: number } = {}): Promise<Plan> {
  // A queue that cannot delay (Pub/Sub) gets every message at once: its consumers' caps pace the API servers.
  const spread = Math.min(options.spreadSeconds ?? spreadSeconds(fleet.env), queue.maxDelaySeconds);
  const plan = await planFleet(fleet, { ...options, spreadSeconds: spread });
  await queue.send(plan.messages);
  return plan;
}
