// Where each rotation stands: the questions `kubectl get es` answers (store,
// refresh interval, reason, ready, last sync), plus drift between the store
// and the Secret and any rotation in flight. Read-only; fingerprints only.
import { BinaryKeyError, InputError } from "../errors.ts";
import type { SecretObject } from "../kubernetes/index.ts";
import type { SecretStoreClient } from "../stores/types.ts";
import type { Engine } from "./engine.ts";
import { type Publication, planRotations, publicationsOf, type RotationTarget, readRemoteValue, remoteValue, targetName } from "./plan.ts";
import { asLogin } from "./act.ts";
import { fingerprint } from "./render.ts";
import { storeClients } from "./stores.ts";
import { ANNOTATIONS, dueCheck } from "./names.ts";

export type StatusReason = "SecretSynced" | "SecretSyncedError" | "SecretMissing" | "RotationInFlight" | "Drift" | "NeverRotated";

export interface StoreStatus {
  readonly store: string;
  readonly provider: string;
  readonly remoteKey: string;
  readonly versionId?: string;
  /** Fingerprint of the store's current value of each key it carries that differs from the Secret. */
  readonly inSync: boolean;
  readonly driftedKeys?: readonly string[];
  readonly pendingRotationId?: string;
  readonly error?: string;
}

/** What the status of an ExternalSecret and of a PushSecret have in common. */
interface ObjectStatus {
  readonly name: string;
  readonly target: string;
  readonly refreshInterval: string;
  readonly reason: StatusReason;
  readonly ready: boolean;
  readonly message: string;
  readonly stores: readonly StoreStatus[];
}

export interface ExternalSecretStatus extends ObjectStatus {
  readonly kind: "ExternalSecret";
  readonly lastRotation?: string;
  readonly rotationId?: string;
  readonly nextDue?: string;
  readonly passwordFingerprint?: string;
  /** The alternating strategy: which role applications use now, which one rotates next, and how old each password is. */
  readonly roles?: AlternatingStatus;
  /** Things that work now but will hurt (e.g. a role without `SET role` to the owner). */
  readonly warnings?: readonly string[];
}

export interface AlternatingStatus {
  /** The role the consumer Secret names. */
  readonly active?: string;
  /** The role the next rotation gives a new password. */
  readonly idle: string;
  readonly passwords: readonly { readonly role: string; readonly secret: string; readonly rotatedAt?: string; readonly ageSeconds?: number }[];
}

export interface PushSecretStatus extends ObjectStatus {
  readonly kind: "PushSecret";
}

export type Status = ExternalSecretStatus | PushSecretStatus;

async function storeStatus(p: Publication, client: SecretStoreClient, secret: SecretObject): Promise<StoreStatus> {
  const base = { store: `${p.store.kind}/${p.store.metadata.name}`, provider: p.store.provider.name, remoteKey: p.remoteKey };
  try {
    const [current, pending] = await Promise.all([client.getCurrent(p.remoteKey), client.getPending(p.remoteKey)]);
    let driftedKeys: string[];
    try {
      const expected = remoteValue(p, secret.data, current?.value, secret.binaryKeys);
      const carried = current ? readRemoteValue(p, current.value) : {};
      const wanted = readRemoteValue(p, expected);
      driftedKeys = Object.keys(wanted).filter((k) => carried[k] !== wanted[k]);
    } catch (e) {
      // Bytes that are not UTF-8 text: no store value (text) can equal them, so those keys have drifted.
      if (!(e instanceof BinaryKeyError)) throw e;
      driftedKeys = [...e.keys];
    }
    return {
      ...base,
      ...(current ? { versionId: current.versionId } : {}),
      inSync: current !== undefined && driftedKeys.length === 0,
      ...(driftedKeys.length > 0 ? { driftedKeys } : {}),
      ...(pending?.rotationId ? { pendingRotationId: pending.rotationId } : {}),
    };
  } catch (e) {
    return { ...base, inSync: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
}

function verdict(
  secret: SecretObject | undefined,
  stores: readonly StoreStatus[],
  secretId: string,
): { reason: StatusReason; ready: boolean; message: string } {
  if (!secret) return { reason: "SecretMissing", ready: false, message: `Secret ${secretId} does not exist` };
  const failed = stores.find((s) => s.error);
  if (failed) return { reason: "SecretSyncedError", ready: false, message: `${failed.store}: ${failed.error}` };
  const inFlight = stores.find((s) => s.pendingRotationId);
  if (inFlight) {
    return {
      reason: "RotationInFlight",
      ready: false,
      message: `rotation ${inFlight.pendingRotationId} is staged in ${inFlight.store} and not promoted; the next run finishes it (or, after a rollback, replaces it)`,
    };
  }
  const drifted = stores.find((s) => !s.inSync);
  if (drifted) {
    return {
      reason: "Drift",
      ready: false,
      message: drifted.versionId
        ? `${drifted.store} ${drifted.remoteKey} differs from the Secret in ${drifted.driftedKeys?.join(", ")}`
        : `${drifted.store} has no ${drifted.remoteKey} yet`,
    };
  }
  return { reason: "SecretSynced", ready: true, message: "the Secret and every store agree" };
}

/** Status of every ExternalSecret and PushSecret (or those named as "namespace/name"). */
export async function status(engine: Engine, request: { targets?: readonly string[] } = {}): Promise<Status[]> {
  const clients = storeClients(engine);
  const clientFor = clients.for;
  const wanted = (kind: string, ns: string, name: string, target: string) =>
    !request.targets?.length ||
    request.targets.some((t) => {
      const full = t.includes("/") ? t : `default/${t}`;
      return full === `${ns}/${name}` || full === target || `${kind}/${full}` === `${kind}/${ns}/${name}`;
    });
  const now = engine.now?.() ?? new Date();
  const out: Status[] = [];
  try {
    const secrets = new Map<string, Promise<SecretObject | undefined>>();
    const secretOf = (ns: string, name: string) => {
      const id = `${ns}/${name}`;
      let s = secrets.get(id);
      if (!s) {
        s = engine.kube.readSecret(ns, name);
        secrets.set(id, s);
      }
      return s;
    };
    for (const t of planRotations(engine.manifests)) {
      const es = t.externalSecret;
      if (!wanted("ExternalSecret", es.metadata.namespace, es.metadata.name, targetName(t))) continue;
      const secret = await secretOf(t.namespace, t.secretName);
      const stores = secret
        ? await Promise.all(t.publications.map(async (p) => storeStatus(p, await clientFor(p), secret)))
        : [];
      let v = verdict(secret, stores, targetName(t));
      const last = secret?.annotations[ANNOTATIONS.rotatedAt];
      if (v.ready && !last) v = { reason: "NeverRotated", ready: false, message: "no rotation has run on this Secret yet" };
      const due = secret ? dueCheck(es, secret, now) : undefined;
      const alternating = t.strategy.kind === "alternating" ? await alternatingStatus(engine, t, secret, now) : undefined;
      out.push({
        kind: "ExternalSecret",
        name: `${es.metadata.namespace}/${es.metadata.name}`,
        target: targetName(t),
        refreshInterval: es.refreshInterval,
        ...v,
        ...(last ? { lastRotation: last } : {}),
        ...(secret?.annotations[ANNOTATIONS.rotationId] ? { rotationId: secret.annotations[ANNOTATIONS.rotationId] } : {}),
        ...(due?.nextDue ? { nextDue: due.nextDue.toISOString() } : {}),
        ...(secret?.data.password !== undefined ? { passwordFingerprint: fingerprint(secret.data.password) } : {}),
        stores,
        ...(alternating ? { roles: alternating.roles } : {}),
        ...(alternating?.warnings.length ? { warnings: alternating.warnings } : {}),
      });
    }
    for (const ps of engine.manifests.pushSecrets) {
      const target = `${ps.metadata.namespace}/${ps.secretName}`;
      if (!wanted("PushSecret", ps.metadata.namespace, ps.metadata.name, target)) continue;
      const secret = await secretOf(ps.metadata.namespace, ps.secretName);
      const stores = secret
        ? await Promise.all(publicationsOf(ps).map(async (p) => storeStatus(p, await clientFor(p), secret)))
        : [];
      out.push({
        kind: "PushSecret",
        name: `${ps.metadata.namespace}/${ps.metadata.name}`,
        target,
        refreshInterval: ps.refreshInterval,
        ...verdict(secret, stores, target),
        stores,
      });
    }
  } finally {
    await clients.closeAll();
  }
  if (request.targets?.length && out.length === 0) {
    throw new InputError(`no ExternalSecret or PushSecret matches ${request.targets.join(", ")}`);
  }
  return out;
}

/**
 * The alternating strategy's roles: active and idle, each password's age, and — when a login
 * is possible (verification on for the target) — whether each role's sessions run as the
 * database owner (`ALTER ROLE … SET role = <owner>`), without which objects one role creates
 * belong to it alone and the other cannot use them.
 */
async function alternatingStatus(
  engine: Engine,
  t: RotationTarget,
  consumer: SecretObject | undefined,
  now: Date,
): Promise<{ roles: AlternatingStatus; warnings: string[] }> {
  if (t.strategy.kind !== "alternating") throw new Error("not alternating");
  const { roles, cluster } = t.strategy;
  const warnings: string[] = [];
  const secrets = await Promise.all(roles.map((r) => engine.kube.readSecret(t.namespace, r.secretName)));
  const active = roles.find((r) => r.role === consumer?.data.username);
  const idle = active === roles[0] ? roles[1] : roles[0];
  const owner = (await engine.kube.readCluster(t.namespace, cluster).catch(() => undefined))?.spec.bootstrap?.initdb?.owner ?? "app";
  const passwords = await Promise.all(
    roles.map(async (r, i) => {
      const s = secrets[i];
      if (!s) {
        warnings.push(`role ${r.role}: its passwordSecret ${t.namespace}/${r.secretName} does not exist`);
        return { role: r.role, secret: r.secretName };
      }
      const rotatedAt = s.annotations[ANNOTATIONS.rotatedAt];
      const at = rotatedAt ? Date.parse(rotatedAt) : Number.NaN;
      const probe = engine.verify?.probe && consumer ? await engine.verify.probe(asLogin(consumer, s), t).catch(() => undefined) : undefined;
      if (probe?.status === "ok" && probe.currentUser !== undefined && probe.currentUser !== owner) {
        warnings.push(
          `role ${r.role}: its sessions run as ${probe.currentUser}, not as the owner ${owner}; objects it creates are unusable by the other role — run once: ALTER ROLE ${r.role} SET role = ${owner} (see README, "Zero-downtime rotation")`,
        );
      }
      return {
        role: r.role,
        secret: r.secretName,
        ...(rotatedAt ? { rotatedAt } : {}),
        ...(Number.isNaN(at) ? {} : { ageSeconds: Math.max(0, Math.round((now.getTime() - at) / 1000)) }),
      };
    }),
  );
  return { roles: { ...(active ? { active: active.role } : {}), idle: idle.role, passwords }, warnings };
}
