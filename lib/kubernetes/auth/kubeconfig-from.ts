// CNPG_ROTATOR_KUBECONFIG_FROM: the cluster connection kept in a secret store rather than
// in the function's plain configuration (which anyone who can read the function sees).
// Read once at cold start with the function's own identity. Each store's SDK is imported
// only when named. The value is never logged, and no error quotes it.
import { InputError, RotatorError, StoreError } from "../../errors.ts";
import { KUBECONFIG_FROM_ENV, notInThisBuild, parseCaPem, parseServer } from "./environment.ts";

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

type Reference =
  | { readonly store: "aws"; readonly secretId: string; readonly region: string | undefined }
  | { readonly store: "gcpsm"; readonly name: string; readonly location: string | undefined }
  | { readonly store: "azurekv"; readonly vaultUrl: string; readonly name: string; readonly version: string | undefined };

/** Checks the syntax of CNPG_ROTATOR_KUBECONFIG_FROM (no I/O). */
export function parseKubeconfigFrom(value: string): Reference & { readonly description: string } {
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
      return { store: "gcpsm", name, location: m[2], description: `Google Secret Manager ${name}` };
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

/** Fetches and parses the connection `value` names, with the function's own cloud identity. */
export async function readKubeconfigFrom(value: string, env: NodeJS.ProcessEnv = process.env): Promise<StoredConnection> {
  const ref = parseKubeconfigFrom(value);
  const source = `${KUBECONFIG_FROM_ENV} (${ref.description})`;
  let text: string;
  try {
    text = await fetchSecret(ref, env);
  } catch (e) {
    if (e instanceof RotatorError) throw e;
    const err = e as Error;
    const name = err.name && err.name !== "Error" ? `${err.name}: ` : "";
    throw new StoreError(`cannot read the cluster connection from ${source}: ${name}${err.message.split("\n")[0]}`, {
      cause: e,
    });
  }
  return parseStoredConnection(text, source);
}

async function fetchSecret(ref: Reference, env: NodeJS.ProcessEnv): Promise<string> {
  // A cloud's bundle keeps only its own store: the bundlers define CNPG_ROTATOR_BUNDLE_CLOUD
  // (unset unbundled: every store). Written out in each condition, as esbuild folds it only so.
  switch (ref.store) {
    case "aws":
      if (!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "aws") return fetchAws(ref, env);
      throw notInThisBuild(KUBECONFIG_FROM_ENV, "aws store", "aws");
    case "gcpsm":
      if (!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "gcp") return fetchGcp(ref);
      throw notInThisBuild(KUBECONFIG_FROM_ENV, "gcpsm store", "gcp");
    case "azurekv":
      if (!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "azure") return fetchAzure(ref);
      throw notInThisBuild(KUBECONFIG_FROM_ENV, "azurekv store", "azure");
  }
}

async function fetchAws(ref: Extract<Reference, { store: "aws" }>, env: NodeJS.ProcessEnv): Promise<string> {
  const region = ref.region ?? (env.AWS_REGION || env.AWS_DEFAULT_REGION);
  if (!region) {
    throw new InputError(`${KUBECONFIG_FROM_ENV}: give the secret's ARN or set AWS_REGION, so the secret's region is known`);
  }
  const [{ GetSecretValueCommand }, { createSecretsManagerClient }] = await Promise.all([
    import("@aws-sdk/client-secrets-manager"),
    import("../../stores/aws-client.ts"),
  ]);
  // Endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER) and credentials come from the SDK's own chain (shared with the aws store).
  const client = createSecretsManagerClient(region);
  try {
    const out = await client.send(new GetSecretValueCommand({ SecretId: ref.secretId }));
    if (out.SecretString !== undefined) return out.SecretString;
    if (out.SecretBinary !== undefined) return Buffer.from(out.SecretBinary).toString("utf8");
    return "";
  } finally {
    client.destroy();
  }
}

async function fetchGcp(ref: Extract<Reference, { store: "gcpsm" }>): Promise<string> {
  const { SecretManagerServiceClient } = await import("@google-cloud/secret-manager");
  const client = new SecretManagerServiceClient(
    ref.location ? { apiEndpoint: `secretmanager.${ref.location}.rep.googleapis.com` } : {},
  );
  try {
    const [version] = await client.accessSecretVersion({ name: ref.name });
    const data = version.payload?.data;
    return data === undefined || data === null ? "" : typeof data === "string" ? data : Buffer.from(data).toString("utf8");
  } finally {
    await client.close();
  }
}

async function fetchAzure(ref: Extract<Reference, { store: "azurekv" }>): Promise<string> {
  const [{ SecretClient }, { DefaultAzureCredential }] = await Promise.all([
    import("@azure/keyvault-secrets"),
    import("@azure/identity"),
  ]);
  const client = new SecretClient(ref.vaultUrl, new DefaultAzureCredential());
  const secret = await client.getSecret(ref.name, ref.version ? { version: ref.version } : {});
  return secret.value ?? "";
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
