// CNPG_ROTATOR_KUBECONFIG_FROM: the cluster connection kept in a secret store rather than
// in the function's plain configuration (which anyone who can read the function sees).
// Read once at cold start with the function's own identity, through the stores' own
// primitives: the cluster client and the stores meet only in the engine, which hands the
// reader over (lib/rotation/context.ts: readStoredConnection). The value is never logged,
// and no error quotes it.
import { InputError, RotatorError, StoreError } from "../../errors.ts";
import { parseCaPem } from "../../pem.ts";
import { KUBECONFIG_FROM_ENV, parseServer } from "./environment.ts";

export type StoredConnection =
  /** A kubeconfig, as YAML (JSON is YAML too). */
  | { readonly kind: "kubeconfig"; readonly yaml: string; readonly source: string }
  /** `{server, ca, token}` as read from the store. */
  | {
      readonly kind: "endpoint";
      readonly server: string;
      readonly caPem?: string;
      readonly token?: string;
      readonly source: string;
    };

/** Where CNPG_ROTATOR_KUBECONFIG_FROM points. */
export type KubeconfigReference =
  | { readonly store: "aws"; readonly secretId: string; readonly region: string | undefined }
  | {
      readonly store: "gcpsm";
      /** The full resource name, `projects/<p>[/locations/<l>]/secrets/<s>/versions/<v>`. */
      readonly name: string;
      readonly project: string;
      readonly location: string | undefined;
      readonly secret: string;
      readonly version: string;
    }
  | { readonly store: "azurekv"; readonly vaultUrl: string; readonly name: string; readonly version: string | undefined };

/** Reads the secret a reference names, with the function's own identity (the engine's stores provide it). */
export type StoredSecretReader = (ref: KubeconfigReference, env: NodeJS.ProcessEnv) => Promise<string>;

/** Checks the syntax of CNPG_ROTATOR_KUBECONFIG_FROM (no I/O). */
export function parseKubeconfigFrom(value: string): KubeconfigReference & { readonly description: string } {
  const colon = value.indexOf(":");
  const scheme = colon < 0 ? "" : value.slice(0, colon);
  const rest = value.slice(colon + 1).trim();
  const expected =
    "expected aws:<secret name or ARN>, gcpsm:projects/<project>/secrets/<name>, " +
    "or azurekv:https://<vault>.vault.azure.net/secrets/<name>";
  switch (scheme) {
    case "aws": {
      if (!rest) throw new InputError(`${KUBECONFIG_FROM_ENV}: ${expected}; the secret name is empty`);
      // arn:<partition>:secretsmanager:<region>:<account>:secret:<name>
      const arn = /^arn:[\w-]+:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+$/.exec(rest);
      if (rest.startsWith("arn:") && !arn) {
        throw new InputError(`${KUBECONFIG_FROM_ENV}: "${rest}" is not a Secrets Manager secret ARN`);
      }
      return { store: "aws", secretId: rest, region: arn?.[1], description: `AWS Secrets Manager secret "${rest}"` };
    }
    case "gcpsm": {
      const m = /^projects\/([^/]+)\/(?:locations\/([a-z0-9-]+)\/)?secrets\/([^/]+)(?:\/versions\/([^/]+))?$/.exec(rest);
      if (!m) throw new InputError(`${KUBECONFIG_FROM_ENV}: "${value}": ${expected}`);
      const name = m[4] ? rest : `${rest}/versions/latest`;
      return {
        store: "gcpsm",
        name,
        project: m[1]!,
        location: m[2],
        secret: m[3]!,
        version: m[4] ?? "latest",
        description: `Google Secret Manager ${name}`,
      };
    }
    case "azurekv": {
      const url = URL.parse(rest);
      const m = /^\/secrets\/([0-9A-Za-z-]{1,127})(?:\/([0-9A-Za-z]+))?\/?$/.exec(url?.pathname ?? "");
      if (url?.protocol !== "https:" || !m || url.search || url.hash) {
        throw new InputError(`${KUBECONFIG_FROM_ENV}: "${value}": ${expected}`);
      }
      return {
        store: "azurekv",
        vaultUrl: url.origin,
        name: m[1]!,
        version: m[2],
        description: `Azure Key Vault secret ${url.origin}/secrets/${m[1]}${m[2] ? `/${m[2]}` : ""}`,
      };
    }
    case "vault":
      // A Vault token in the configuration is the long-lived secret this setting exists to avoid.
      throw new InputError(
        `${KUBECONFIG_FROM_ENV}: vault: is not supported (reading Vault needs a credential of its own in the configuration); ${expected}`,
      );
    default:
      throw new InputError(`${KUBECONFIG_FROM_ENV}: "${value}": ${expected}`);
  }
}

/** Fetches (with `read`, the function's own cloud identity) and parses the connection `value` names. */
export async function readKubeconfigFrom(
  value: string,
  read: StoredSecretReader,
  env: NodeJS.ProcessEnv = process.env,
): Promise<StoredConnection> {
  const ref = parseKubeconfigFrom(value);
  const source = `${KUBECONFIG_FROM_ENV} (${ref.description})`;
  let text: string;
  try {
    text = await read(ref, env);
  } catch (e) {
    if (e instanceof InputError) throw e;
    const err = e as Error;
    const name = err.name && err.name !== "Error" && !(e instanceof RotatorError) ? `${err.name}: ` : "";
    throw new StoreError(`cannot read the cluster connection from ${source}: ${name}${err.message.split("\n")[0]}`, { cause: e });
  }
  return parseStoredConnection(text, source);
}

/**
 * A kubeconfig (YAML or JSON, or base64 of either) or `{server, ca, token}` JSON. Errors
 * say which shape was expected, never quote the text (the JSON and YAML parsers' own
 * messages do, so they are not passed on).
 */
export function parseStoredConnection(text: string, source: string): StoredConnection {
  let body = text.trim();
  if (!body) throw new InputError(`${source} is empty; expected a kubeconfig or JSON {server, ca, token}`);
  if (!body.includes(":") && /^[A-Za-z0-9+/=_\-\s]+$/.test(body)) {
    body = Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8").trim();
  }
  if (!body.startsWith("{")) {
    if (!body.includes(":")) {
      throw new InputError(`${source} is neither a kubeconfig, nor JSON {server, ca, token}, nor base64 of one`);
    }
    return { kind: "kubeconfig", yaml: body, source };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new InputError(`${source} starts like JSON but is not valid JSON; expected a kubeconfig or {server, ca, token}`);
  }
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new InputError(`${source}: expected a JSON object`);
  }
  const o = parsed as Record<string, unknown>;
  if ("clusters" in o || "contexts" in o || o.kind === "Config") return { kind: "kubeconfig", yaml: body, source };
  const unknown = Object.keys(o).filter((k) => !["server", "ca", "token"].includes(k));
  if (unknown.length > 0) {
    throw new InputError(`${source}: expected only the fields server, ca and token; found also ${unknown.join(", ")}`);
  }
  for (const k of ["server", "ca", "token"] as const) {
    if (o[k] !== undefined && typeof o[k] !== "string") throw new InputError(`${source}: field ${k} must be a string`);
  }
  if (typeof o.server !== "string" || !o.server) throw new InputError(`${source}: field server (the API server's https:// URL) is missing`);
  return {
    kind: "endpoint",
    server: parseServer(o.server, `${source} field server`),
    ...(typeof o.ca === "string" && o.ca ? { caPem: parseCaPem(o.ca, `${source} field ca`) } : {}),
    ...(typeof o.token === "string" && o.token ? { token: o.token } : {}),
    source,
  };
}
