// Mutual exclusion per target with a coordination.k8s.io/v1 Lease, the way Kubernetes
// leader election does it: whoever last wrote holderIdentity owns the Lease until
// renewTime + leaseDurationSeconds; every write carries the resourceVersion read.
import { createHash } from "node:crypto";
import { PermissionError } from "../errors.ts";
import { unless } from "./api.ts";
import type { ApiCalls, Lease, LeaseSpec } from "./calls.ts";
import type { LeaseHandle } from "./types.ts";

const PREFIX = "cnpg-rotator-";
const MAX_NAME = 253; // Lease names are DNS subdomains
const HASH_LENGTH = 10;
const MANAGED_BY = { "app.kubernetes.io/managed-by": "cnpg-rotator" };
export const LEASE_SECRET_ANNOTATION = "cnpg-rotator/secret";

/** `cnpg-rotator-<secret>`; a name too long for a Lease is cut and suffixed with a hash of the whole. */
export function leaseNameFor(secretName: string): string {
  const full = PREFIX + secretName;
  if (full.length <= MAX_NAME) return full;
  const hash = createHash("sha256").update(secretName).digest("hex").slice(0, HASH_LENGTH);
  const kept = full.slice(0, MAX_NAME - HASH_LENGTH - 1).replace(/[-.]+$/, "");
  return `${kept}-${hash}`;
}

/** The holder of a Lease that has not lapsed at `now`, if any. */
export function activeHolder(spec: LeaseSpec | undefined, now: Date): string | undefined {
  const holder = spec?.holderIdentity;
  if (!holder) return undefined;
  const renewed = toDate(spec.renewTime) ?? toDate(spec.acquireTime);
  if (!renewed) return undefined;
  const until = renewed.getTime() + (spec.leaseDurationSeconds ?? 0) * 1000;
  return until > now.getTime() ? holder : undefined;
}

/** A MicroTime as the API writes it (RFC 3339, six fractional digits), as client-node's V1MicroTime serialises. */
function microTime(d: Date): string {
  return d.toISOString().replace(/Z$/, "000Z");
}

function toDate(v: unknown): Date | undefined {
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? undefined : v;
  if (typeof v !== "string" || !v) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** Runs one Lease call, mapping its failure (not 404/409, which the caller handles) to a typed error. */
export type LeaseCall = <T>(verb: "get" | "create" | "update" | "delete", name: string, fn: () => Promise<T>) => Promise<T>;

interface LeaseContext {
  readonly api: Pick<ApiCalls, "readLease" | "createLease" | "replaceLease" | "deleteLease">;
  readonly call: LeaseCall;
}

/**
 * One GET, then one POST (no Lease yet) or one PUT (lapsed or free). Returns undefined
 * when another run holds it or wins the race (409). Holder ids are unique per run, so a
 * Lease already held by `holder` is this run's own: its earlier create or update applied but
 * the answer was lost (then retried). It is taken as held rather than left blocking the
 * target for a whole TTL.
 *
 * `beforeTake` runs between the GET and the write, only when the Lease is free (or already
 * this run's); if it throws, nothing is written. What it reads is as good as read under the
 * Lease: the write carries the resourceVersion of the GET (a POST: that there is none), so it
 * goes ahead only if no other run took the Lease since the GET found it released or lapsed.
 */
export type AcquireLeaseArgs = [namespace: string, secretName: string, holder: string, ttlSeconds: number, beforeTake?: () => Promise<void>];

export async function acquireLease(
  ctx: LeaseContext,
  ...[namespace, secretName, holder, ttlSeconds, beforeTake]: AcquireLeaseArgs
): Promise<LeaseHandle | undefined> {
  const name = leaseNameFor(secretName);
  const existing = await ctx.call("get", name, () => unless([404], ctx.api.readLease(namespace, name)));
  const active = existing && activeHolder(existing.spec, new Date());
  if (active !== undefined && active !== holder) return undefined;
  await beforeTake?.();
  const now = new Date();
  if (!existing) {
    const body: Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name, namespace, labels: { ...MANAGED_BY }, annotations: { [LEASE_SECRET_ANNOTATION]: secretName } },
      spec: heldSpec(holder, ttlSeconds, now, now, 0),
    };
    const created = await ctx.call("create", name, () =>
      unless([409], ctx.api.createLease(namespace, body)),
    );
    return created ? new HeldLease(ctx, created, undefined, holder, ttlSeconds, now) : ownIfHeld(ctx, namespace, name, holder, ttlSeconds, undefined);
  }
  if (active === holder) return new HeldLease(ctx, existing, undefined, holder, ttlSeconds, renewedAt(existing.spec) ?? now);
  // Counted like client-go's leader election: every change of holder, a released Lease included.
  const transitions = (existing.spec?.leaseTransitions ?? 0) + (existing.spec?.holderIdentity !== holder ? 1 : 0);
  const body = withSpec(existing, heldSpec(holder, ttlSeconds, now, now, transitions));
  const updated = await ctx.call("update", name, () =>
    unless([409], ctx.api.replaceLease(namespace, name, body)),
  );
  return updated ? new HeldLease(ctx, updated, existing, holder, ttlSeconds, now) : ownIfHeld(ctx, namespace, name, holder, ttlSeconds, existing);
}

/** After a 409: one GET; the Lease is ours if `holder` holds it (our own write, whose answer was lost). */
async function ownIfHeld(
  ctx: LeaseContext,
  namespace: string,
  name: string,
  holder: string,
  ttlSeconds: number,
  found: Lease | undefined,
): Promise<LeaseHandle | undefined> {
  const now = new Date();
  const fresh = await ctx.call("get", name, () => unless([404], ctx.api.readLease(namespace, name)));
  if (!fresh || activeHolder(fresh.spec, now) !== holder) return undefined;
  return new HeldLease(ctx, fresh, found, holder, ttlSeconds, renewedAt(fresh.spec) ?? now);
}

function renewedAt(spec: LeaseSpec | undefined): Date | undefined {
  return toDate(spec?.renewTime) ?? toDate(spec?.acquireTime);
}

function heldSpec(holder: string, ttl: number, acquired: Date, renewed: Date, transitions: number): LeaseSpec {
  return {
    holderIdentity: holder,
    leaseDurationSeconds: ttl,
    acquireTime: microTime(acquired),
    renewTime: microTime(renewed),
    leaseTransitions: transitions,
  };
}

// A PUT replaces the object: keep its metadata (with the resourceVersion read) and change the spec only.
function withSpec(lease: Lease, spec: LeaseSpec): Lease {
  const { managedFields: _, ...metadata } = lease.metadata ?? {};
  return { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata, spec };
}

class HeldLease implements LeaseHandle {
  readonly namespace: string;
  readonly name: string;
  readonly holder: string;
  readonly ttlSeconds: number;
  expiresAt: Date;
  #ctx: LeaseContext;
  #lease: Lease;
  /** The Lease as acquire found it; undefined when acquire created it. */
  #found: Lease | undefined;
  #released = false;

  constructor(
    ctx: LeaseContext,
    lease: Lease,
    found: Lease | undefined,
    holder: string,
    ttlSeconds: number,
    renewed: Date,
  ) {
    this.#ctx = ctx;
    this.#lease = lease;
    this.#found = found;
    this.namespace = lease.metadata?.namespace ?? "";
    this.name = lease.metadata?.name ?? "";
    this.holder = holder;
    this.ttlSeconds = ttlSeconds;
    this.expiresAt = new Date(renewed.getTime() + ttlSeconds * 1000);
  }

  /** One PUT. False when the Lease was taken over, deleted or released: stop writing. */
  async renew(): Promise<boolean> {
    if (this.#released) return false;
    const now = new Date();
    const updated = await this.#update((spec) => ({ ...spec, renewTime: microTime(now) }));
    if (!updated) return false;
    this.expiresAt = new Date(now.getTime() + this.ttlSeconds * 1000);
    return true;
  }

  /** One PUT clearing holderIdentity. A Lease lost or gone is left alone. */
  async release(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    await this.#update(({ holderIdentity: _, ...rest }) => rest);
  }

  /**
   * Puts the Lease back as acquire found it, for a run refused as bad input: one PUT of the
   * spec it had, or one DELETE (preconditioned on our last write) of a Lease acquire created.
   * Without the RBAC verb delete it is released instead. A Lease lost or gone is left alone.
   */
  async restore(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    const found = this.#found;
    if (found) {
      await this.#update(() => found.spec ?? {});
      return;
    }
    const { api, call } = this.#ctx;
    const { namespace, name } = this;
    const { uid, resourceVersion } = this.#lease.metadata ?? {};
    try {
      await call("delete", name, () =>
        unless([409, 404], 
          api.deleteLease(namespace, name, { ...(uid ? { uid } : {}), ...(resourceVersion ? { resourceVersion } : {}) }),
        ),
      );
    } catch (e) {
      if (!(e instanceof PermissionError)) throw e;
      await this.#update(({ holderIdentity: _, ...rest }) => rest);
    }
  }

  /**
   * PUTs `change(spec)` on the Lease as last seen. On 409 one GET tells a takeover (holder
   * changed: undefined) from someone else's edit of a Lease still ours (then one retry).
   */
  async #update(change: (spec: LeaseSpec) => LeaseSpec): Promise<Lease | undefined> {
    const { api, call } = this.#ctx;
    const { namespace, name } = this;
    for (let attempt = 0; ; attempt++) {
      const body = withSpec(this.#lease, change(this.#lease.spec ?? {}));
      const updated = await call("update", name, () =>
        unless([409, 404], api.replaceLease(namespace, name, body)),
      );
      if (updated) {
        this.#lease = updated;
        return updated;
      }
      if (attempt > 0) return undefined;
      const fresh = await call("get", name, () => unless([404], api.readLease(namespace, name)));
      if (!fresh || fresh.spec?.holderIdentity !== this.holder) return undefined;
      this.#lease = fresh;
    }
  }
}
