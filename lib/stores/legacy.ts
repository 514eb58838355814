// The contract the stores implemented before the protocol was written once (issue 10): each
// provider still carries its own pending/current/previous state machine behind it, and
// adapter.ts presents it as the engine's SecretStoreClient (types.ts), fences included.
// Transitional: it goes as each provider moves to the primitives.

/** One version of a remote secret. `value` is the whole remote value (a JSON object text for whole-Secret pushes). */
export interface StoredVersion {
  /**
   * The version's id. A version written by a rotation is identified by its rotation id on
   * every store (AWS makes it the VersionId; the others only number a version when promote
   * writes it); a pushed version by the provider's own id (GCP / KV v2 version number,
   * Azure version, file counter).
   */
  readonly versionId: string;
  readonly value: string;
  /**
   * Set on versions written by a rotation. (AWS keeps no per-version metadata:
   * there it is the VersionId, absent only on our direct pushes.)
   */
  readonly rotationId?: string;
}

/** A version named without its value: what `describe` reports. */
export interface VersionRef {
  readonly versionId: string;
  readonly rotationId?: string;
}

/** A remote secret's state without its values (`describe`). */
export interface RemoteState {
  /** Whether the remote secret exists; one deleted but still recoverable does not (as `exists`). */
  readonly exists: boolean;
  /** Whether it carries our ownership marker (also for a deleted one). */
  readonly owned: boolean;
  /** The version `getCurrent` would return. */
  readonly current?: VersionRef;
  /** The version `getPending` would return. */
  readonly pending?: VersionRef;
}

export interface PushResult {
  /** False when the remote value already equalled the value: no new version was made. */
  readonly changed: boolean;
  readonly versionId?: string;
}

export interface SecretStoreClient {
  /** Provider name as in `spec.provider` ("file", "aws", "gcpsm", "azurekv", "vault"). */
  readonly provider: string;
  /** Human description for logs and status, e.g. `aws secretsmanager us-east-1`. Never holds a credential. */
  readonly description: string;

  /**
   * Stages `value` as pending for `rotationId` (32 to 64 characters, e.g. a
   * UUID: AWS takes it as ClientRequestToken). Idempotent: staging again with
   * the same rotation id returns the version already staged, with the value
   * first staged (a different `value` is ignored), and never makes a second
   * one; if that rotation is already current, returns the current version.
   * A pending value of another rotation id is replaced.
   * Creates the remote secret (with our ownership marker) if it is missing.
   * Throws OwnershipError if the remote secret exists without our marker.
   */
  stagePending(key: string, value: string, rotationId: string): Promise<StoredVersion>;

  /**
   * Optional: the state `getCurrent` + `getPending` give, without reading any value, in
   * (at most) one request. The engine prefers it and reads a value only when it needs one.
   * A store may remember what it saw for the `stagePending` / `promote` that follow, as
   * long as a stale memory can never make it write wrongly.
   */
  describe?(key: string): Promise<RemoteState>;

  /** The pending version, if any. */
  getPending(key: string): Promise<StoredVersion | undefined>;

  /**
   * Makes the pending version of `rotationId` current; the old current
   * becomes previous. Idempotent: if that rotation is already current, returns it.
   * Throws StoreStateError if there is no pending version of that rotation.
   */
  promote(key: string, rotationId: string): Promise<StoredVersion>;

  /**
   * Drops the pending version of `rotationId`, if it is still pending (rollback).
   * A remote secret that never had a current value is deleted with it, so no
   * consumer is left reading a value nobody accepted.
   */
  discardPending(key: string, rotationId: string): Promise<void>;

  /** The current version, if the remote secret exists and has one. */
  getCurrent(key: string): Promise<StoredVersion | undefined>;

  /** The version before the current one, if kept. */
  getPrevious(key: string): Promise<StoredVersion | undefined>;

  /**
   * Writes `value` as the new current version directly (PushSecret without a
   * rotation). No new version if the current value is equal. With
   * `ifNotExists`, writes only when the remote secret does not exist (an
   * existing one, ours or not, is left alone: `changed: false`, as ESO does).
   * Leaves a pending version pending. Throws OwnershipError for a remote
   * secret without our marker.
   */
  push(key: string, value: string, options?: { ifNotExists?: boolean }): Promise<PushResult>;

  /** Whether the remote secret exists (with or without our marker); one deleted but still recoverable does not. */
  exists(key: string): Promise<boolean>;

  /**
   * Deletes the remote secret (AWS: with the SecretStore's recovery window; a
   * later write restores it). Throws OwnershipError without our marker; a
   * missing secret is not an error.
   */
  delete(key: string): Promise<void>;

  /** Releases clients / sockets. */
  close?(): Promise<void>;
}
