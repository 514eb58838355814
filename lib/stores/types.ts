// The one contract every secret store implements (see docs/STORE-DESIGN.md). A store knows
// nothing of the rotation protocol that drives it: it keeps, per remote key, a *current* value
// (what consumers read), at most one *pending* value (staged by a rotation, keyed by its
// rotation id) and remembers the *previous* current.

/** One version of a remote secret, named. */
export interface VersionRef {
  /**
   * A version written by a rotation is identified by its rotation id on every store (AWS: the
   * VersionId; elsewhere the protocol records it). A pushed version: the provider's own id.
   */
  readonly versionId: string;
  /** Set on versions written by a rotation. */
  readonly rotationId?: string;
}

/** A version with its whole remote value (a JSON object text for whole-Secret pushes). */
export interface StoredVersion extends VersionRef {
  readonly value: string;
}

/**
 * What one observation of a remote key saw, without values: enough for the engine to decide
 * the next step, and the fence the next write is checked against.
 */
export interface RemoteState {
  /** False also for a secret deleted but still recoverable. */
  readonly exists: boolean;
  /** Carries our ownership marker (also reported for a deleted one). */
  readonly owned: boolean;
  readonly current?: VersionRef;
  readonly pending?: VersionRef;
}

export interface StoreCapabilities {
  /** The service keeps pending/current/previous itself (AWS staging labels); else the `<key>-pending` sibling. */
  readonly nativeStaging: boolean;
  /** Writes are conditional on what was read (AWS RemoveFromVersionId, GCP etag, Vault cas); else a re-read just before the write is the only fence. */
  readonly compareAndSwap: boolean;
}

export interface PushResult {
  /** False when the remote value already equalled the value: no new version was made. */
  readonly changed: boolean;
  readonly versionId?: string;
}

/**
 * FENCES. Every write takes `seen`, the RemoteState the caller decided on. At write time the
 * write goes ahead only if the remote is still in that state (current and pending the same
 * versions; "the same" includes "already done by this very call's rotation", which makes each
 * write idempotent). Otherwise it throws StoreConflictError (a new RotatorError subclass in
 * lib/errors.ts) and writes nothing; the engine then observes again and decides again — it never
 * re-applies. Use the service's own compare-and-swap where it has one; else re-read and compare
 * immediately before the write (capabilities.compareAndSwap = false says so).
 */
export interface SecretStoreClient {
  /** Provider name as in `spec.provider` ("file", "aws", "gcpsm", "azurekv", "vault"). */
  readonly provider: string;
  /** For logs and status, e.g. `aws secretsmanager us-east-1`. Never holds a credential. */
  readonly description: string;
  readonly capabilities: StoreCapabilities;

  /** The remote key's state, no values; one request where the service allows. */
  observe(key: string): Promise<RemoteState>;

  getCurrent(key: string): Promise<StoredVersion | undefined>;
  getPending(key: string): Promise<StoredVersion | undefined>;
  getPrevious(key: string): Promise<StoredVersion | undefined>;

  /**
   * Stages `value` as pending for `rotationId` (32–64 chars; AWS takes it as ClientRequestToken).
   * Already staged (or already current) under this rotation id → returns that version WITH THE
   * VALUE FIRST STAGED (the caller must use the returned value, not its own). A pending value of
   * another rotation id that `seen.pending` names is replaced. Creates the remote secret (with our
   * marker) when `seen.exists` is false. OwnershipError for a secret without our marker.
   * StoreConflictError when current or pending moved since `seen`.
   */
  stage(key: string, value: string, rotationId: string, seen: RemoteState): Promise<StoredVersion>;

  /**
   * Makes the pending version of `rotationId` current; the old current becomes previous.
   * Already current → returns it. StoreStateError when that rotation is not pending;
   * StoreConflictError when current moved since `seen`.
   */
  promote(key: string, rotationId: string, seen: RemoteState): Promise<StoredVersion>;

  /**
   * Drops the pending version of `rotationId` if it is still pending (rollback). A remote secret
   * that never had a current value is deleted with it. Nothing pending under that id → no-op.
   */
  discard(key: string, rotationId: string, seen: RemoteState): Promise<void>;

  /**
   * Writes `value` as the new current version directly (PushSecret, and the engine publishing
   * the Secret as it now is). No new version when the current value is equal. `ifNotExists`:
   * writes only when the remote secret does not exist (as ESO). Leaves a pending version pending.
   * With `seen`: StoreConflictError when current moved since.
   */
  push(key: string, value: string, options?: { ifNotExists?: boolean; seen?: RemoteState }): Promise<PushResult>;

  exists(key: string): Promise<boolean>;
  /** Deletes (AWS: with the SecretStore's recovery window). OwnershipError without our marker; missing is fine. */
  delete(key: string): Promise<void>;
  /** Releases clients, agents and sockets. */
  close(): Promise<void>;
}

/** The ownership marker on every remote secret we create: a tag, label or custom_metadata entry. */
export const MANAGED_BY_KEY = "managed-by";
export const MANAGED_BY_VALUE = "cnpg-rotator";

/** What the engine hands a store factory besides the SecretStore's own `spec.provider.<name>`. */
export interface StoreDeps {
  /** Directory that relative file-store paths resolve against (default: the process's working directory). */
  readonly baseDir?: string;
  /**
   * A credential kept in the cluster, read by the engine and handed over here
   * (Vault's auth.tokenSecretRef). Stores never read the cluster themselves.
   */
  readonly token?: string;
}
