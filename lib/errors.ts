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
