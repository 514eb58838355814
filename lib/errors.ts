// Every error the engine raises on purpose. Messages say what was expected and
// what was found; none may ever contain a secret value.

/** Base of every error we raise on purpose. */
export class RotatorError extends Error {
  override name = "RotatorError";
}

/**
 * The user gave us something we cannot use (a manifest, an event, a flag).
 * Raised before anything is written; the CLI exits 2 on it.
 */
export class InputError extends RotatorError {
  override name = "InputError";
}

/** A YAML document or one of its fields is not a valid manifest. */
export class ManifestError extends InputError {
  override name = "ManifestError";
}

/** A `Password` generator spec that cannot produce a password. */
export class GeneratorError extends InputError {
  override name = "GeneratorError";
}

/** A template that does not parse, names an unknown function or fails to render. */
export class TemplateError extends InputError {
  override name = "TemplateError";
}

/** A rendered connection string that a client would read back differently. */
export class ConnectionStringError extends InputError {
  override name = "ConnectionStringError";
}

/**
 * A PushSecret would copy Secret keys whose bytes are not UTF-8 text: a store value (and a
 * whole-Secret push's JSON object) holds text, so they would arrive with U+FFFD in place of
 * their bytes. Refused rather than corrupted; `keys` names them. Not an InputError: it is the
 * state of one Secret, so it fails that target and the others run.
 */
export class BinaryKeyError extends RotatorError {
  override name = "BinaryKeyError";
  readonly keys: readonly string[];
  constructor(message: string, keys: readonly string[]) {
    super(message);
    this.keys = keys;
  }
}

/** A remote secret exists but lacks our ownership marker: we never touch it. */
export class OwnershipError extends RotatorError {
  override name = "OwnershipError";
}

/** A store is not in the state an operation needs (e.g. no pending version to promote). */
export class StoreStateError extends RotatorError {
  override name = "StoreStateError";
}

/** A store's API failed; `cause` holds the provider error. */
export class StoreError extends RotatorError {
  override name = "StoreError";
}

/**
 * A fenced write found its target no longer in the state the run observed and decided on (a
 * Secret's resourceVersion, a store's current or pending version): nothing was written. The
 * engine observes again and decides again; it never re-applies the old decision.
 */
export class ConflictError extends RotatorError {
  override name = "ConflictError";
}

/** The Secret changed since it was read (409 Conflict on its resourceVersion), or was created or deleted meanwhile. */
export class SecretConflictError extends ConflictError {
  override name = "SecretConflictError";
}

/** A remote secret's current or pending version moved since it was observed. */
export class StoreConflictError extends ConflictError {
  override name = "StoreConflictError";
  /** Refused on a retry after an attempt that got no answer: that attempt may have been applied. */
  afterLostAnswer = false;
}

/**
 * The run no longer holds its target's Lease (taken over, or about to lapse because renewals
 * failed): it stops before its next write, so a stalled run can never write over a newer one.
 */
export class LeaseLostError extends RotatorError {
  override name = "LeaseLostError";
}

/** The target Secret does not exist and the creation policy forbids creating it. */
export class SecretMissingError extends RotatorError {
  override name = "SecretMissingError";
}

/** The Kubernetes API refused a request for lack of permission (403). */
export class PermissionError extends RotatorError {
  override name = "PermissionError";
}

/** A Kubernetes API call failed for another reason. */
export class KubernetesError extends RotatorError {
  override name = "KubernetesError";
}

/**
 * A rotation's test step (SPEC §5.4) could not log in with the new password in
 * time: the rotation is not promoted. Carries no secret: the rotation id, the
 * last login status and, once the engine has rolled the Secret back
 * (lib/rotation/rollback.ts), `rolledBack`.
 */
export class VerificationError extends RotatorError {
  override name = "VerificationError";
  readonly rotationId: string | undefined;
  /** Status of the last login attempt: "auth-failed", "unreachable" or "error". */
  readonly lastStatus: string | undefined;
  readonly attempts: number;
  /** Set when the Secret was put back to the store's current password after this failure. */
  rolledBack = false;

  constructor(message: string, details: { rotationId?: string; lastStatus?: string; attempts?: number } = {}) {
    super(message);
    this.rotationId = details.rotationId;
    this.lastStatus = details.lastStatus;
    this.attempts = details.attempts ?? 0;
  }
}
