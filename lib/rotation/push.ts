// PushSecret: keep a copy of an existing Kubernetes Secret in one or more
// stores, as ESO's PushSecret does — on its own schedule, outside rotations.
// It takes the same per-Secret Lease as a rotation and stands aside while a
// rotation is in flight, so it never publishes a value before its promote.
import { randomUUID } from "node:crypto";
import pLimit from "p-limit";
import { InputError, RotatorError } from "../errors.ts";
import type { PushSecret } from "../manifests/index.ts";
import type { SecretStoreClient } from "../stores/types.ts";
import type { Engine } from "./engine.ts";
import { type Publication, publicationsOf, remoteValue } from "./plan.ts";
import { fingerprint } from "./render.ts";
import { storeClients } from "./stores.ts";

export interface PushRequest {
  /** PushSecrets to run, as "namespace/name" (or "name" in default); all when absent. */
  readonly targets?: readonly string[];
  readonly dryRun?: boolean;
  readonly leaseSeconds?: number;
}

export type PushOutcome =
  | "pushed"
  | "unchanged"
  | "exists"
  | "deleted"
  | "source-missing"
  | "rotation-in-flight"
  | "locked"
  | "dry-run"
  | "failed";

export interface PushReport {
  readonly pushSecret: string;
  readonly secret: string;
  readonly store: string;
  readonly provider: string;
  readonly remoteKey: string;
  readonly outcome: PushOutcome;
  readonly reason?: string;
  readonly versionId?: string;
  /** Fingerprint of the value now in the store (never the value). */
  readonly fingerprint?: string;
  readonly error?: { readonly type: string; readonly message: string };
}

function selectPushSecrets(all: readonly PushSecret[], names: readonly string[] | undefined): PushSecret[] {
  if (!names || names.length === 0) return [...all];
  return names.map((name) => {
    const full = name.includes("/") ? name : `default/${name}`;
    const found = all.find((p) => `${p.metadata.namespace}/${p.metadata.name}` === full);
    if (!found) {
      const known = all.map((p) => `${p.metadata.namespace}/${p.metadata.name}`).join(", ") || "none";
      throw new InputError(`target "${name}": no PushSecret ${full}; known PushSecrets: ${known}`);
    }
    return found;
  });
}

export async function push(engine: Engine, request: PushRequest = {}): Promise<PushReport[]> {
  const selected = selectPushSecrets(engine.manifests.pushSecrets, request.targets);
  const plans = selected.map((ps) => ({ ps, publications: publicationsOf(ps) }));
  // One Lease per Secret: group the PushSecrets that select the same one.
  const bySecret = new Map<string, typeof plans>();
  for (const plan of plans) {
    const id = `${plan.ps.metadata.namespace}/${plan.ps.secretName}`;
    bySecret.set(id, [...(bySecret.get(id) ?? []), plan]);
  }
  const holder = `cnpg-rotator-push-${randomUUID()}`;
  const log = engine.log.child({ invocation: holder });
  const clients = storeClients(engine);
  const clientFor = clients.for;
  const limit = pLimit(engine.concurrency ?? 8);
  try {
    const groups = await Promise.all(
      [...bySecret].map(([secretId, group]) =>
        limit(() => pushSecretGroup(engine, secretId, group, clientFor, holder, request, log)),
      ),
    );
    return groups.flat();
  } finally {
    await clients.closeAll();
  }
}

async function pushSecretGroup(
  engine: Engine,
  secretId: string,
  group: readonly { ps: PushSecret; publications: Publication[] }[],
  clientFor: (p: Publication) => Promise<SecretStoreClient>,
  holder: string,
  request: PushRequest,
  log: Engine["log"],
): Promise<PushReport[]> {
  const [namespace, secretName] = secretId.split("/") as [string, string];
  const report = (p: Publication, outcome: PushOutcome, extra: Partial<PushReport> = {}): PushReport => ({
    pushSecret: `${p.pushSecret.metadata.namespace}/${p.pushSecret.metadata.name}`,
    secret: secretId,
    store: `${p.store.kind}/${p.store.metadata.name}`,
    provider: p.store.provider.name,
    remoteKey: p.remoteKey,
    outcome,
    ...extra,
  });
  const publications = group.flatMap((g) => g.publications);
  const lease = request.dryRun
    ? undefined
    : await engine.kube.acquireLease(namespace, secretName, holder, request.leaseSeconds ?? 60);
  if (!request.dryRun && !lease) {
    return publications.map((p) => report(p, "locked", { reason: "a rotation or another push holds this Secret" }));
  }
  try {
    const secret = await engine.kube.readSecret(namespace, secretName);
    const results: PushReport[] = [];
    for (const p of publications) {
      try {
        const store = await clientFor(p);
        const ps = p.pushSecret;
        if (!secret) {
          if (ps.deletionPolicy === "Delete" && (await store.exists(p.remoteKey))) {
            if (!request.dryRun) await store.delete(p.remoteKey);
            results.push(report(p, request.dryRun ? "dry-run" : "deleted", { reason: `Secret ${secretId} is gone; deletionPolicy Delete` }));
          } else {
            results.push(report(p, "source-missing", { reason: `Secret ${secretId} does not exist` }));
          }
          continue;
        }
        if (await store.getPending(p.remoteKey)) {
          results.push(report(p, "rotation-in-flight", { reason: "a rotation staged a value here; it publishes when it completes" }));
          continue;
        }
        const current = await store.getCurrent(p.remoteKey);
        const value = remoteValue(p, secret.data, current?.value, secret.binaryKeys);
        if (request.dryRun) {
          const would = current?.value === value ? "unchanged" : ps.updatePolicy === "IfNotExists" && (await store.exists(p.remoteKey)) ? "exists" : "would push";
          results.push(report(p, "dry-run", { reason: would }));
          continue;
        }
        const pushed = await store.push(p.remoteKey, value, { ifNotExists: ps.updatePolicy === "IfNotExists" });
        const outcome: PushOutcome = pushed.changed ? "pushed" : current?.value === value ? "unchanged" : "exists";
        results.push(
          report(p, outcome, {
            ...(pushed.versionId ? { versionId: pushed.versionId } : current ? { versionId: current.versionId } : {}),
            ...(outcome !== "exists" ? { fingerprint: fingerprint(value) } : {}),
          }),
        );
      } catch (e) {
        if (e instanceof InputError) throw e;
        const error = e instanceof Error ? e : new Error(String(e));
        log.error({ secret: secretId, remoteKey: p.remoteKey, error: { type: error.name, message: error.message } }, "push failed");
        results.push(report(p, "failed", { error: { type: e instanceof RotatorError ? error.name : "Error", message: error.message } }));
      }
    }
    for (const r of results) log.info({ pushSecret: r.pushSecret, remoteKey: r.remoteKey, outcome: r.outcome, versionId: r.versionId }, "push finished");
    return results;
  } finally {
    await lease?.release().catch(() => undefined);
  }
}
