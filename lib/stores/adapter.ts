// The engine's store contract (types.ts) over a provider that still implements the earlier
// one (legacy.ts). Fences: a write first observes the remote secret and refuses with
// StoreConflictError when it moved since the state the caller decided on; AWS, whose label
// moves are conditional themselves (RemoveFromVersionId) and whose staging is keyed by the
// rotation id, is fenced by the service. Transitional, until each provider implements the
// primitives under the one protocol.
import { StoreConflictError } from "../errors.ts";
import type { SecretStoreClient as Legacy } from "./legacy.ts";
import type { PushResult, RemoteState, SecretStoreClient, StoredVersion } from "./types.ts";

export function fromLegacy(store: Legacy): SecretStoreClient {
  const observe = async (key: string): Promise<RemoteState> => {
    if (store.describe) {
      const d = await store.describe(key);
      return { exists: d.exists, owned: d.owned, ...(d.current ? { current: d.current } : {}), ...(d.pending ? { pending: d.pending } : {}) };
    }
    const [current, pending] = await Promise.all([store.getCurrent(key), store.getPending(key)]);
    const exists = current !== undefined || pending !== undefined || (await store.exists(key));
    const ref = (v: StoredVersion | undefined) => v && { versionId: v.versionId, ...(v.rotationId ? { rotationId: v.rotationId } : {}) };
    // The legacy contract reports foreign secrets only by refusing to write them: read as owned here.
    return { exists, owned: exists, ...(current ? { current: ref(current)! } : {}), ...(pending ? { pending: ref(pending)! } : {}) };
  };
  const nativeFence = store.provider === "aws";
  const fence = async (key: string, seen: RemoteState, done: (now: RemoteState) => boolean, what: string): Promise<void> => {
    if (nativeFence) return;
    const now = await observe(key);
    if (done(now)) return;
    if (now.current?.versionId !== seen.current?.versionId || now.pending?.versionId !== seen.pending?.versionId) {
      throw new StoreConflictError(`${what} "${key}" in ${store.description}: it changed since it was observed; nothing was written`);
    }
  };
  return {
    provider: store.provider,
    description: store.description,
    capabilities: { nativeStaging: store.provider === "aws" || store.provider === "file", compareAndSwap: nativeFence },
    observe,
    getCurrent: (key) => store.getCurrent(key),
    getPending: (key) => store.getPending(key),
    getPrevious: (key) => store.getPrevious(key),
    async stage(key, value, rotationId, seen) {
      await fence(key, seen, (now) => now.pending?.rotationId === rotationId || now.current?.rotationId === rotationId, "staging into");
      return store.stagePending(key, value, rotationId);
    },
    async promote(key, rotationId, seen) {
      await fence(key, seen, (now) => now.current?.rotationId === rotationId, "promoting in");
      return store.promote(key, rotationId);
    },
    async discard(key, rotationId) {
      await store.discardPending(key, rotationId);
    },
    async push(key, value, options = {}): Promise<PushResult> {
      const { seen, ...rest } = options;
      if (seen) await fence(key, { ...seen, pending: undefined }, () => false, "pushing to").catch(async (e) => {
        // A pending value is no concern of a push: fence on current only.
        const now = await observe(key);
        if (now.current?.versionId !== seen.current?.versionId) throw e;
      });
      return store.push(key, value, rest);
    },
    exists: (key) => store.exists(key),
    delete: (key) => store.delete(key),
    close: async () => store.close?.(),
  };
}
