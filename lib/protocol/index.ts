// The rotation protocol, written once above the stores' primitives (docs/STORE-DESIGN.md): pending,
// current and previous, the fences and the ownership check. A provider (lib/stores/<name>.ts)
// implements only NativePrimitives or SiblingPrimitives (lib/stores/types.ts), and never imports this.
import type { ProviderConfig } from "../manifests/types.ts";
import { InputError, OwnershipError, StoreConflictError, StoreError, StoreStateError } from "../errors.ts";
import { createPrimitives } from "../stores/index.ts";
import { CURRENT, OURS, PENDING, PENDING_SUFFIX, PREVIOUS, ROTATION_ID, records, serialize, UNPROMOTED } from "../stores/primitives.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE } from "../stores/types.ts";
import type { LabelledSecret, LabelledVersion, Marks, NativePrimitives, PushResult, RemoteState, StoreDeps } from "../stores/types.ts";
import type { SecretHead, SecretStoreClient, SiblingPrimitives, StoredVersion, StorePrimitives, VersionRef } from "../stores/types.ts";

/** The client the engine uses, over a provider's primitives. */
export function createClient(primitives: StorePrimitives): SecretStoreClient {
  return primitives.staging === "native" ? new NativeStore(primitives) : new SiblingStore(primitives);
}

/** The client for a SecretStore's `spec.provider`. Throws InputError for a provider without a store (in this build). */
export async function createStore(provider: ProviderConfig, deps: StoreDeps = {}): Promise<SecretStoreClient> {
  return createClient(await createPrimitives(provider, deps));
}

const isOwned = (marks: Marks | undefined) => marks?.[MANAGED_BY_KEY] === MANAGED_BY_VALUE;

/** Ownership, fences, one call at a time per key in this process: what both ways of staging share. */
abstract class Protocol<P extends StorePrimitives> {
  readonly provider: string;
  readonly description: string;
  protected readonly p: P;
  // Calls that change one key run one after another, so concurrent calls of this process see
  // each other's writes (the only fence Azure has within a process; the Lease keeps others out).
  readonly #queues = new Map<string, Promise<void>>();

  constructor(p: P) {
    this.p = p;
    this.provider = p.provider;
    this.description = p.description;
  }

  close(): Promise<void> {
    return this.p.close();
  }

  /** `body` on the key's names, after every call of this process before it that changes the key. */
  protected serialized<T>(key: string, body: (names: ReturnType<P["names"]>) => Promise<T>): Promise<T> {
    const names = this.p.names(key) as ReturnType<P["names"]>;
    return serialize(this.#queues, names.key, () => body(names));
  }

  protected assertOwned(name: string, marks: Marks, action: string): void {
    if (isOwned(marks)) return;
    const found = marks[MANAGED_BY_KEY];
    throw new OwnershipError(
      `refusing to ${action} "${name}" in ${this.description}: expected ${this.p.markKind} ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}, found ${
        found === undefined ? `no such ${this.p.markKind}` : `${MANAGED_BY_KEY}=${found}`
      }; it was not created by cnpg-rotator`,
    );
  }

  /** The fence of a write decided on `seen`: StoreConflictError, nothing written, when the remote moved since. */
  protected fence(action: string, name: string, now: RemoteState, seen: RemoteState, what: "current" | "both"): void {
    const moved =
      now.exists !== seen.exists ||
      now.current?.versionId !== seen.current?.versionId ||
      (what === "both" && now.pending?.versionId !== seen.pending?.versionId);
    if (!moved) return;
    throw new StoreConflictError(
      `cannot ${action} "${name}" in ${this.description}: expected ${showState(seen)} as observed, found ${showState(now)}; nothing was written`,
    );
  }

  protected checkRotationId(name: string, rotationId: string): void {
    if (rotationId.length < 32 || rotationId.length > 64) {
      throw new StoreError(
        `cannot stage into "${name}" in ${this.description}: expected a rotation id of 32 to 64 characters (AWS takes it as ClientRequestToken), found ${rotationId.length}`,
      );
    }
  }

  protected moved(action: string, name: string, found: string): StoreConflictError {
    return new StoreConflictError(`cannot ${action} "${name}" in ${this.description}: ${found}; observe it again`);
  }

  protected notPending(name: string, rotationId: string, found: string): StoreStateError {
    return new StoreStateError(
      `cannot promote rotation ${rotationId} of "${name}" in ${this.description}: expected it pending, found ${found}`,
    );
  }
}

const showVersion = (r: VersionRef | undefined) => (r ? `version ${r.versionId}` : "none");
const showState = (s: RemoteState) => (s.exists ? `current ${showVersion(s.current)}, pending ${showVersion(s.pending)}` : "no secret");
/** True when `write` went ahead, false when it lost its compare-and-swap; other errors pass. */
const wentAhead = (write: Promise<unknown>) =>
  write.then(
    () => true,
    (error: unknown) => (error instanceof StoreConflictError ? false : Promise.reject(error)),
  );

/** A version as the engine names it: a rotation's by its rotation id, any other by the provider's id. */
function refOf(v: { readonly versionId: string; readonly rotationId?: string }): VersionRef {
  return v.rotationId === undefined ? { versionId: v.versionId } : { versionId: v.rotationId, rotationId: v.rotationId };
}

/** A version as the provider reads it (by its own id), as the engine names it. */
function storedOf(v: StoredVersion): StoredVersion;
function storedOf(v: StoredVersion | undefined): StoredVersion | undefined;
function storedOf(v: StoredVersion | undefined): StoredVersion | undefined {
  return v && { ...refOf(v), value: v.value };
}

// ---- Native staging (AWS, file): labels on versions, moved by the service.

const has = (v: LabelledVersion | undefined, label: string) => v?.labels.includes(label) ?? false;
/** Current in the protocol's sense: the current label, on a version that is not a never-promoted first one. */
const isPromoted = (v: LabelledVersion | undefined) => has(v, CURRENT) && !has(v, UNPROMOTED);
const holder = (s: LabelledSecret | undefined, label: string) => s?.versions.find((v) => v.labels.includes(label));

function nativeState(s: LabelledSecret | undefined): RemoteState {
  if (!s) return { exists: false, owned: false };
  if (s.deleted) return { exists: false, owned: isOwned(s.marks) };
  const current = s.versions.find(isPromoted);
  const pending = holder(s, PENDING);
  return {
    exists: true,
    owned: isOwned(s.marks),
    ...(current ? { current: refOf(current) } : {}),
    ...(pending ? { pending: refOf(pending) } : {}),
  };
}

class NativeStore extends Protocol<NativePrimitives> implements SecretStoreClient {
  /** Values by version: a version never changes, so one read (or written) here is never read again. */
  readonly #values = new Map<string, string>();

  async observe(key: string): Promise<RemoteState> {
    return nativeState(await this.p.describe(this.p.names(key).key));
  }

  getCurrent = (key: string) => this.#byLabel(key, CURRENT);
  getPending = (key: string) => this.#byLabel(key, PENDING);
  getPrevious = (key: string) => this.#byLabel(key, PREVIOUS);

  async stage(key: string, value: string, rotationId: string, seen: RemoteState): Promise<StoredVersion> {
    return this.serialized(key, async ({ key: name }) => {
      this.checkRotationId(name, rotationId);
      const secret = await this.p.describe(name);
      if (secret) this.assertOwned(name, secret.marks, "stage a pending version in");
      const mine = secret?.deleted ? undefined : secret?.versions.find((v) => v.rotationId === rotationId);
      // The first value staged for a rotation is the one kept: a retry must not change the password.
      if (has(mine, PENDING) || isPromoted(mine)) return this.#version(name, mine!);
      this.fence("stage a pending version in", name, nativeState(secret), seen, "both");
      if (!secret) {
        if ((await this.p.create(name)) === false) throw this.moved("stage a pending version in", name, "it was created meanwhile");
      } else if (secret.deleted) {
        await this.p.restore(name);
      }
      // AWS makes a secret's first version current whatever it is asked: ours marks it as not promoted.
      // (A secret restored from its recovery window keeps its labels.)
      const labels = holder(secret, CURRENT) ? [PENDING] : [PENDING, UNPROMOTED];
      const put = await this.p.put(name, value, { rotationId, labels });
      // A version of this rotation staged and discarded before: the service does not relabel it on a repeat.
      if (!has(put, PENDING)) await this.p.move(name, PENDING, { to: put.versionId, ...from(holder(secret, PENDING)) });
      return this.#remember(name, put, put.value);
    });
  }

  async promote(key: string, rotationId: string, seen: RemoteState): Promise<StoredVersion> {
    return this.serialized(key, async ({ key: name }) => {
      if (seen.owned && seen.current && seen.pending?.rotationId === rotationId) {
        // As observed, without a second look: moving the current label off the version seen holding
        // it is the service's compare-and-swap (refused: look, and go on from what is there).
        if (await wentAhead(this.p.move(name, CURRENT, { to: rotationId, from: seen.current.versionId }))) {
          const moved = await this.p.move(name, PENDING, { from: rotationId }).then(
            () => true as const,
            (error: unknown) => (error instanceof StoreConflictError ? error : Promise.reject(error)),
          );
          if (moved === true) return this.#version(name, { versionId: rotationId, rotationId, labels: [CURRENT] });
          if (moved.afterLostAnswer) {
            // Refused only on a retry: this very move was applied and its answer lost, so the retry
            // found no label to move. The store is as this promote leaves it: done.
            const after = await this.p.describe(name);
            const now = after && !after.deleted ? after.versions.find((v) => v.rotationId === rotationId) : undefined;
            if (isPromoted(now) && !holder(after, PENDING)) return this.#version(name, now!);
          }
          // Discarded or replaced since observed: never leave it current.
          await this.p.move(name, CURRENT, { to: seen.current.versionId, from: rotationId });
          throw this.notPending(name, rotationId, "it was discarded or replaced since observed");
        }
      }
      const secret = await this.p.describe(name);
      if (!secret || secret.deleted) throw this.notPending(name, rotationId, "no such secret");
      this.assertOwned(name, secret.marks, "promote a version of");
      const mine = secret.versions.find((v) => v.rotationId === rotationId);
      if (!has(mine, PENDING) && !isPromoted(mine)) {
        const pending = holder(secret, PENDING);
        throw this.notPending(name, rotationId, pending ? `version ${refOf(pending).versionId} pending` : "nothing pending");
      }
      const current = holder(secret, CURRENT);
      if (!isPromoted(mine)) this.fence("promote a version of", name, nativeState(secret), seen, "current");
      // Each step is safe to repeat: a promote that stopped half way is finished by the next one.
      // Moving the current label off the version seen holding it is the service's compare-and-swap.
      if (current?.versionId !== mine!.versionId) {
        await this.p.move(name, CURRENT, { to: mine!.versionId, ...from(current) });
      }
      if (has(mine, UNPROMOTED)) await this.p.move(name, UNPROMOTED, { from: mine!.versionId });
      if (has(mine, PENDING)) await this.p.move(name, PENDING, { from: mine!.versionId });
      return this.#version(name, mine!);
    });
  }

  async discard(key: string, rotationId: string, _seen: RemoteState): Promise<void> {
    return this.serialized(key, async ({ key: name }) => {
      const secret = await this.p.describe(name);
      // Nothing of ours can be pending in a foreign or deleted secret; nothing of this rotation, nothing to drop.
      if (!secret || secret.deleted || !isOwned(secret.marks)) return;
      const mine = secret.versions.find((v) => v.rotationId === rotationId);
      if (!has(mine, PENDING)) return;
      // Never promoted, so no consumer may read a value from it: the only way back to "no value" is no secret.
      if (!secret.versions.some(isPromoted)) return this.p.remove(name, "now");
      await this.p.move(name, PENDING, { from: mine!.versionId });
    });
  }

  async push(key: string, value: string, options: { ifNotExists?: boolean; seen?: RemoteState } = {}): Promise<PushResult> {
    return this.serialized(key, async ({ key: name }): Promise<PushResult> => {
      let secret = await this.p.describe(name);
      if (!secret && !options.seen?.exists) {
        const created = await this.p.create(name, { value });
        if (created) return { changed: true, ...created };
        secret = await this.p.describe(name); // Created meanwhile: go on as if it had been there.
      }
      if (!secret) throw this.moved("push to", name, "it is gone");
      const current = secret.deleted ? undefined : secret.versions.find(isPromoted);
      const currentRef = current && refOf(current);
      // Like ESO's updatePolicy IfNotExists: an existing secret, ours or not, is left alone.
      if (options.ifNotExists && !secret.deleted) return { changed: false, versionId: currentRef?.versionId };
      this.assertOwned(name, secret.marks, "push to");
      if (current && (await this.#version(name, current)).value === value) return { changed: false, versionId: currentRef!.versionId };
      if (options.seen) this.fence("push to", name, nativeState(secret), options.seen, "current");
      if (secret.deleted) await this.p.restore(name);
      const live = secret.deleted ? undefined : secret;
      const put = await this.p.put(name, value, { ...(current ? { replaces: current.versionId } : {}) });
      // The idempotency key named an old version (this value pushed once onto the same current): no label moved.
      if (!has(put, CURRENT)) await this.p.move(name, CURRENT, { to: put.versionId, ...from(holder(live, CURRENT)) });
      this.#remember(name, put, value);
      return { changed: true, versionId: refOf(put).versionId };
    });
  }

  async exists(key: string): Promise<boolean> {
    const secret = await this.p.describe(this.p.names(key).key);
    return secret !== undefined && !secret.deleted;
  }

  async delete(key: string): Promise<void> {
    await this.serialized(key, async ({ key: name }) => {
      const secret = await this.p.describe(name);
      if (!secret || secret.deleted) return;
      this.assertOwned(name, secret.marks, "delete");
      await this.p.remove(name, "recoverable");
    });
  }

  async #byLabel(key: string, label: string): Promise<StoredVersion | undefined> {
    const name = this.p.names(key).key;
    const v = await this.p.read(name, { label });
    if (!v || (label !== PENDING && has(v, UNPROMOTED))) return undefined;
    return this.#remember(name, v, v.value);
  }

  async #version(name: string, v: LabelledVersion): Promise<StoredVersion> {
    const value = this.#values.get(`${name}\n${v.versionId}`);
    if (value !== undefined) return storedOf({ ...v, value });
    const read = await this.p.read(name, { versionId: v.versionId });
    if (!read) throw new StoreStateError(`version ${v.versionId} of "${name}" in ${this.description} is gone`);
    return this.#remember(name, read, read.value);
  }

  #remember(name: string, v: LabelledVersion, value: string): StoredVersion {
    if (this.#values.size >= 1000) this.#values.delete(this.#values.keys().next().value!);
    this.#values.set(`${name}\n${v.versionId}`, value);
    return storedOf({ ...v, value });
  }

}

function from(v: LabelledVersion | undefined): { from?: string } {
  return v ? { from: v.versionId } : {};
}

// ---- The `<key>-pending` sibling (GCP, Azure, Vault): consumers read `<key>`'s latest version.

/** The rotation a sibling of ours is marked with (a sibling without it is a secret in its own right). */
const markedRotation = (s: SecretHead | undefined) => (s && !s.deleted && isOwned(s.marks) ? s.marks[ROTATION_ID] : undefined);
/** The rotation whose value a sibling holds: marked, and with a version. */
const rotationOf = (s: SecretHead | undefined) => (s?.latest ? markedRotation(s) : undefined);

function siblingState(k: SecretHead | undefined, s: SecretHead | undefined): RemoteState {
  const rotationId = rotationOf(s);
  const pending = rotationId === undefined ? {} : { pending: { versionId: rotationId, rotationId } };
  // A secret whose first rotation is in flight may exist only as its sibling so far (Azure).
  if (!k || k.deleted) return { exists: rotationId !== undefined, owned: k ? isOwned(k.marks) : rotationId !== undefined, ...pending };
  return { exists: true, owned: isOwned(k.marks), ...(k.latest ? { current: refOf(k.latest) } : {}), ...pending };
}

class SiblingStore extends Protocol<SiblingPrimitives> implements SecretStoreClient {
  async observe(key: string): Promise<RemoteState> {
    const [k, s] = await this.#heads(this.p.names(key));
    return siblingState(k, s);
  }

  getCurrent = async (key: string) => storedOf(await this.p.read(this.p.names(key).key, "latest"));
  getPrevious = async (key: string) => storedOf(await this.p.read(this.p.names(key).key, "previous"));
  async getPending(key: string): Promise<StoredVersion | undefined> {
    const { pending } = this.p.names(key);
    return pending === undefined ? undefined : this.#staged(pending, await this.p.head(pending));
  }

  async stage(key: string, value: string, rotationId: string, seen: RemoteState): Promise<StoredVersion> {
    return this.serialized(key, async (all) => {
      const names = this.#rotatable(key, all);
      this.checkRotationId(names.key, rotationId);
      this.p.checkValue?.(names.pending, value);
      const [k, s] = await this.#heads(names);
      // A soft-deleted <key> is recovered at promote: find out now if it is not ours, not after the database changed.
      if (k) this.assertOwned(names.key, k.marks, "stage a pending version for");
      if (s) this.#assertSibling(names.pending, s, "stage a pending version in");
      // The first value staged for a rotation is the one kept: a retry must not change the password.
      const staged = rotationOf(s) === rotationId ? await this.#staged(names.pending, s) : undefined;
      if (staged) return staged;
      if (k && !k.deleted && k.latest?.rotationId === rotationId) {
        const current = await this.getCurrent(key);
        if (current?.rotationId === rotationId) return current;
      }
      // Promoted before and pushed over since (a publish): the rotation is done here; staging it
      // again, with a run's own values, would promote a second password under its id.
      const done = k && !k.deleted ? records(k.marks).find((r) => r?.rotationId === rotationId)?.versionId : undefined;
      if (done !== undefined) {
        const promoted = storedOf(await this.p.read(names.key, { versionId: done }));
        if (promoted?.rotationId === rotationId) return promoted;
        throw this.moved(`stage rotation ${rotationId} in`, names.key, `it was promoted there already (version ${done})`);
      }
      this.fence("stage a pending version in", names.key, siblingState(k, s), seen, "both");
      // Another rotation's pending value, or a stage that stopped before its value: staged afresh.
      if (s && !s.deleted) await this.p.remove(names.pending, { head: s, purge: true });
      if (!k && this.p.createEmpty && !(await this.p.createEmpty(names.key, OURS))) throw this.moved("stage into", names.key, "it was created meanwhile");
      try {
        await this.p.write(names.pending, value, { head: undefined, marks: { ...OURS, [ROTATION_ID]: rotationId } });
      } catch (error) {
        // Lost a create-only write to a concurrent stage of this same rotation: its value is the one kept.
        const again = error instanceof StoreConflictError ? await this.p.head(names.pending) : undefined;
        const theirs = rotationOf(again) === rotationId ? await this.#staged(names.pending, again) : undefined;
        if (theirs) return theirs;
        throw error;
      }
      return { versionId: rotationId, value, rotationId };
    });
  }

  async promote(key: string, rotationId: string, seen: RemoteState): Promise<StoredVersion> {
    return this.serialized(key, async (names) => {
      const [k, s] = await this.#heads(names);
      if (k) this.assertOwned(names.key, k.marks, "promote a version of");
      const ours = rotationOf(s) === rotationId ? s : undefined;
      const marked = markedRotation(s) === rotationId;
      if (k && !k.deleted && k.latest?.rotationId === rotationId) {
        // Promoted before, maybe by a call that stopped before deleting the sibling: finish that.
        if (ours) await this.p.remove(names.pending!, { head: ours, purge: true });
        const current = await this.getCurrent(key);
        if (current) return current;
      }
      if (!ours) {
        if (marked) throw this.notPending(names.key, rotationId, `"${names.pending}" without a staged value`);
        const other = rotationOf(s);
        throw this.notPending(names.key, rotationId, !k && !s ? "no such secret" : other ? `rotation ${other} pending` : "nothing pending");
      }
      const staged = await this.p.read(names.pending!, "latest");
      if (!staged) throw this.notPending(names.key, rotationId, `"${names.pending}" without a staged value`);
      const live = k && !k.deleted ? k : undefined;
      const latest = live?.latest && live.latest.rotationId === undefined ? await this.p.read(names.key, "latest") : undefined;
      if (live && latest?.versionId === live.latest?.versionId && latest?.value === staged.value) {
        // A promote that stopped after writing the value left it as the latest version: record it, write no copy.
        await this.p.adopt(names.key, live, rotationId);
      } else {
        this.fence("promote a version of", names.key, siblingState(k, s), seen, "current");
        try {
          await this.p.write(names.key, staged.value, { head: k, marks: k?.marks ?? OURS, rotationId });
        } catch (error) {
          // Lost to a concurrent promote of this same rotation: what this promote would have made.
          const again = error instanceof StoreConflictError ? await this.p.head(names.key) : undefined;
          if (again?.latest?.rotationId !== rotationId) throw error;
        }
      }
      await this.p.remove(names.pending!, { head: ours, purge: true });
      return { versionId: rotationId, value: staged.value, rotationId };
    });
  }

  async discard(key: string, rotationId: string, _seen: RemoteState): Promise<void> {
    return this.serialized(key, async (names) => {
      const [k, s] = await this.#heads(names);
      // Nothing of ours, or of this rotation, is pending: nothing to drop.
      if (rotationOf(s) !== rotationId) return;
      // <key> first: should we stop between the two, the sibling still says what to finish.
      if (k && !k.deleted && isOwned(k.marks) && !k.latest) await this.p.remove(names.key, { head: k, purge: false });
      await this.p.remove(names.pending!, { head: s, purge: true });
    });
  }

  async push(key: string, value: string, options: { ifNotExists?: boolean; seen?: RemoteState } = {}): Promise<PushResult> {
    return this.serialized(key, async (names): Promise<PushResult> => {
      this.p.checkValue?.(names.key, value);
      const k = await this.p.head(names.key);
      // Like ESO's updatePolicy IfNotExists: an existing secret, ours or not, is left alone (and its value unread).
      if (k && !k.deleted && options.ifNotExists) return { changed: false, ...(k.latest ? { versionId: refOf(k.latest).versionId } : {}) };
      if (k) this.assertOwned(names.key, k.marks, "push to");
      const current = k && !k.deleted && k.latest ? await this.p.read(names.key, "latest") : undefined;
      if (current?.value === value) return { changed: false, versionId: refOf(current).versionId };
      if (options.seen) {
        const now: RemoteState = { exists: !!k && !k.deleted, owned: true, ...(current ? { current: refOf(current) } : {}) };
        this.fence("push to", names.key, now, { ...options.seen, exists: options.seen.exists && now.exists }, "current");
      }
      try {
        return { changed: true, versionId: await this.p.write(names.key, value, { head: k, marks: k?.marks ?? OURS }) };
      } catch (error) {
        // Lost to a concurrent write: of this very value, that is what this push would have made.
        const again = error instanceof StoreConflictError ? await this.p.read(names.key, "latest") : undefined;
        if (again?.value === value) return { changed: false, versionId: refOf(again).versionId };
        throw error;
      }
    });
  }

  async exists(key: string): Promise<boolean> {
    const names = this.p.names(key);
    const k = await this.p.head(names.key);
    if (k && !k.deleted) return true;
    // A secret being created by its first rotation may exist only as its sibling so far.
    return names.pending !== undefined && rotationOf(await this.p.head(names.pending)) !== undefined;
  }

  async delete(key: string): Promise<void> {
    await this.serialized(key, async (names) => {
      const [k, s] = await this.#heads(names);
      if (k && !k.deleted) {
        this.assertOwned(names.key, k.marks, "delete");
        await this.p.remove(names.key, { head: k, purge: false });
      }
      // A rotation in flight goes with it (it must not bring the secret back); a foreign secret of that name stays.
      if (markedRotation(s) !== undefined) await this.p.remove(names.pending!, { head: s, purge: true });
    });
  }

  #heads(names: { key: string; pending?: string }): Promise<[SecretHead | undefined, SecretHead | undefined]> {
    return Promise.all([this.p.head(names.key), names.pending === undefined ? undefined : this.p.head(names.pending)]);
  }

  #rotatable(key: string, names: { key: string; pending?: string }): { key: string; pending: string } {
    if (names.pending === undefined) {
      throw new InputError(
        `remote key "${key}" in ${this.description} can be pushed but not rotated: the name of its staging sibling "${key}${PENDING_SUFFIX}" is too long for the service`,
      );
    }
    return { key: names.key, pending: names.pending };
  }

  /** The sibling's staged version, if it holds one of ours. */
  async #staged(name: string, s: SecretHead | undefined): Promise<StoredVersion | undefined> {
    const rotationId = rotationOf(s);
    const v = rotationId === undefined ? undefined : await this.p.read(name, "latest");
    return v && { versionId: rotationId!, value: v.value, rotationId: rotationId! };
  }

  #assertSibling(name: string, s: SecretHead, action: string): void {
    this.assertOwned(name, s.marks, action);
    if (s.marks[ROTATION_ID] === undefined) {
      throw new StoreStateError(
        `refusing to ${action} "${name}" in ${this.description}: that secret is managed in its own right, not a staging sibling (no ${this.p.markKind} ${ROTATION_ID})`,
      );
    }
  }
}
