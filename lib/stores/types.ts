// The engine's contract with a store (SecretStoreClient: per remote key a *current* value, what
// consumers read, at most one *pending* one staged by a rotation, and the *previous* current),
// implemented once in lib/protocol/ over the primitives below (docs/STORE-DESIGN.md).

/** One version of a remote secret, named. */
export interface VersionRef {
  /** A rotation's version: its rotation id, on every store (AWS: the VersionId). A pushed one: the provider's id. */
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

export interface PushResult {
  /** False when the remote value already equalled the value: no new version was made. */
  readonly changed: boolean;
  readonly versionId?: string;
}

/**
 * FENCES. Every write takes `seen`, the RemoteState the caller decided on, and goes ahead only if
 * the remote is still in that state, or already as this very call leaves it (so each write is
 * idempotent). Otherwise StoreConflictError, nothing written: the engine observes and decides again.
 */
export interface SecretStoreClient {
  /** Provider name as in `spec.provider` (a key of lib/manifests/schema.ts providerSchemas). */
  readonly provider: string;
  /** For logs and status, e.g. `aws secretsmanager us-east-1`. Never holds a credential. */
  readonly description: string;

  /** The remote key's state, no values; one request where the service allows. */
  observe(key: string): Promise<RemoteState>;

  getCurrent(key: string): Promise<StoredVersion | undefined>;
  getPending(key: string): Promise<StoredVersion | undefined>;
  getPrevious(key: string): Promise<StoredVersion | undefined>;

  /**
   * Stages `value` as pending for `rotationId` (32–64 chars: AWS's ClientRequestToken), replacing
   * another rotation's pending value, creating the secret (with our marker) where there is none.
   * Already staged or current under this id → that version WITH THE VALUE FIRST STAGED (use it,
   * not your own). OwnershipError without our marker; StoreConflictError when moved since `seen`.
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
   * Writes `value` as the current version directly (PushSecret; publishing the Secret), none when
   * equal, a pending one left pending. `ifNotExists`: only where no secret exists (as ESO).
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
  /** A credential kept in the cluster (Vault's auth.tokenSecretRef), read by the engine: stores never read the cluster. */
  readonly token?: string;
}

// ---- Primitives: all a provider implements (lib/stores/<provider>.ts), below the protocol of
// lib/protocol/. They read and write what the service has, every request through `storeCalls`.

/** Tags, labels, annotations or custom_metadata: our ownership marker and our bookkeeping. */
export type Marks = Readonly<Record<string, string>>;

/** What is common to both kinds of primitives. */
export interface PrimitivesBase {
  readonly provider: string;
  /** As SecretStoreClient.description. */
  readonly description: string;
  /** What the service calls the marker, for OwnershipError: "tag", "label", "custom_metadata entry". */
  readonly markKind: string;
  /** Whether the writes below are conditional in the service itself (else the protocol's re-read is the fence). */
  readonly compareAndSwap: boolean;
  /**
   * The service's name for a remote key, and for its staging sibling where the protocol keeps
   * one (undefined when no sibling name fits: such a key can be pushed, not rotated).
   * InputError for a key the service cannot name, before any request.
   */
  names(key: string): { readonly key: string; readonly pending?: string };
  /** InputError for a value the service cannot hold (Azure: over 25 KB), before any request. */
  checkValue?(name: string, value: string): void;
  close(): Promise<void>;
}

/** A version (by the provider's id) holding staging labels (AWSCURRENT, AWSPENDING, AWSPREVIOUS and ours). */
export interface LabelledVersion extends VersionRef {
  readonly labels: readonly string[];
}

/** One secret's metadata as a service with native staging reports it (no values). */
export interface LabelledSecret {
  /** Deleted but recoverable (AWS's recovery window). */
  readonly deleted: boolean;
  readonly marks: Marks;
  /** Every version that holds a label. */
  readonly versions: readonly LabelledVersion[];
}

/**
 * A service that keeps pending / current / previous itself, as labels on versions (AWS, file).
 * A rotation's version has the rotation id as its id, so what `observe` reports names versions
 * as the service does, and a promote can move labels straight from the observation.
 */
export interface NativePrimitives extends PrimitivesBase {
  readonly staging: "native";
  /** One request: the secret's metadata and labels; undefined when there is no such secret. */
  describe(name: string): Promise<LabelledSecret | undefined>;
  /** The version holding `label`, or the version `versionId`; undefined when none (or the secret is deleted). */
  read(name: string, which: { readonly label: string } | { readonly versionId: string }): Promise<(StoredVersion & LabelledVersion) | undefined>;
  /** Creates the secret with our marker and no value (`first`: with that value as its current version); false when it exists. */
  create(name: string, first?: { readonly value: string }): Promise<false | { readonly versionId?: string }>;
  /**
   * Writes a version carrying `labels` (none given: the service's default, current). Its id is
   * `rotationId` where given; a repeat of the same write, or a rotation id already used with
   * another value, writes nothing and returns the version that id names, labelled as it is now.
   * `replaces` is the current version, for the idempotency key of a push. Returns the version
   * with the value it holds.
   */
  put(name: string, value: string, options: { rotationId?: string; labels?: readonly string[]; replaces?: string }): Promise<StoredVersion & LabelledVersion>;
  /**
   * Moves `label` to version `to` and/or off version `from`; StoreConflictError when `from` does not
   * hold it (with `afterLostAnswer` when refused on a retry after an attempt that got no answer).
   */
  move(name: string, label: string, change: { readonly to?: string; readonly from?: string }): Promise<void>;
  /** Undeletes a secret in its recovery window. */
  restore(name: string): Promise<void>;
  /** Deletes: "recoverable" with the SecretStore's recovery window, "now" without one. */
  remove(name: string, how: "recoverable" | "now"): Promise<void>;
}

/** One secret's metadata as a service without native staging reports it (no values). */
export interface SecretHead {
  /** Deleted but recoverable (Azure's soft delete). */
  readonly deleted: boolean;
  readonly marks: Marks;
  /** The version consumers read (the latest readable one), without its value. */
  readonly latest?: VersionRef;
  /** The service's compare-and-swap token (GCP etag, Vault version), opaque to the protocol. */
  readonly revision?: string;
}

/** A service whose consumers read the latest version: the protocol stages in a `<key>-pending` sibling (GCP, Azure, Vault). */
export interface SiblingPrimitives extends PrimitivesBase {
  readonly staging: "sibling";
  /** The secret's metadata; undefined when there is no such secret (a soft-deleted one is `deleted`). */
  head(name: string): Promise<SecretHead | undefined>;
  /** The latest readable version, the one before it, or a given one (the provider's ids); undefined when none. */
  read(name: string, which: "latest" | "previous" | { readonly versionId: string }): Promise<StoredVersion | undefined>;
  /** Creates the secret with `marks` and no version, where the service can (false: it exists). */
  createEmpty?(name: string, marks: Marks): Promise<boolean>;
  /**
   * Adds a version recorded as `rotationId`'s (none: a plain version), conditional on `head` (what
   * was just read; undefined: create-only, with `marks`) where the service can. StoreConflictError
   * when that condition fails. Returns the version's own id.
   */
  write(name: string, value: string, options: { readonly head: SecretHead | undefined; readonly marks: Marks; readonly rotationId?: string }): Promise<string>;
  /** Records that the latest version (`head.latest`, written but not recorded) is `rotationId`'s. */
  adopt(name: string, head: SecretHead, rotationId: string): Promise<void>;
  /** Deletes the secret and all its versions (conditional on `head` where the service can); `purge`: leave no soft-deleted copy where allowed. */
  remove(name: string, options: { readonly head?: SecretHead; readonly purge: boolean }): Promise<void>;
}

export type StorePrimitives = NativePrimitives | SiblingPrimitives;
