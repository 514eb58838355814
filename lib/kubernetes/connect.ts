// Finding the cluster: a function outside the cluster names the API server and CA in its
// configuration (env) or keeps them in a secret store, and authenticates with a short-lived
// token of its cloud identity; a user at a shell has KUBECONFIG or ~/.kube/config.
// The variables and their precedence are documented in auth/environment.ts.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import type { Cluster, User } from "@kubernetes/client-node/dist/config_types.js";
import { InputError } from "../errors.ts";
import { createLogger, type Logger } from "../log.ts";
import { useTokenProvider } from "./auth/authenticator.ts";
import {
  CLUSTER_ENV,
  CLUSTER_SERVER_ENV,
  type CloudCredentials,
  type ClusterEnvironment,
  cloudTokenProvider,
  INSECURE_SKIP_TLS_VERIFY_ENV,
  KUBECONFIG_FROM_ENV,
  readClusterEnvironment,
  readInsecureSkipTlsVerify,
} from "./auth/environment.ts";
import { readKubeconfigFrom, type StoredConnection, type StoredSecretReader } from "./auth/kubeconfig-from.ts";
import type { TokenProvider } from "./auth/token.ts";
import { KubernetesClient, type KubernetesClientOptions } from "./client.ts";
import { checkProxyUrl } from "./transport.ts";
import type { ClusterConnection } from "./types.ts";

/** Env var holding a whole kubeconfig (YAML text, or base64 of it) for functions without a file system to ship one. */
export const KUBECONFIG_ENV = "CNPG_ROTATOR_KUBECONFIG";

export interface ConnectOptions extends KubernetesClientOptions {
  /** Where the CNPG_ROTATOR_* settings are read; default process.env. */
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Gets one info line naming the server and the kind of credential. The warning about
   * turned-off TLS verification goes here too, or to a stderr logger when none is given:
   * it is never dropped.
   */
  readonly log?: Logger;
  /** Authenticates every request with this provider's token instead of the kubeconfig's user or CNPG_ROTATOR_CLUSTER. */
  readonly tokenProvider?: TokenProvider;
  /** Identities for CNPG_ROTATOR_CLUSTER's tokens instead of each cloud's default chain. */
  readonly cloudCredentials?: CloudCredentials;
  /** Milliseconds since the epoch, for token expiry; a test seam. */
  readonly now?: () => number;
}

/**
 * A client for `c` (kubeconfig file or YAML, and context), or with neither file nor YAML
 * given, for the cluster the environment configures (see auth/environment.ts) except
 * CNPG_ROTATOR_KUBECONFIG_FROM, which needs I/O: use connectClusterFromEnvironment then.
 * InputError when nothing is configured or the configuration is unusable. Nothing is
 * fetched here; a cloud token is fetched by the first request.
 */
export function connectCluster(c: ClusterConnection = {}, options: ConnectOptions = {}): KubernetesClient {
  const env = options.env ?? process.env;
  if (isExplicit(c)) return connect(loadKubeConfig(c, env), readInsecureSkipTlsVerify(env), options.tokenProvider, options);
  const settings = readClusterEnvironment(env);
  if (settings.kubeconfigFrom) {
    throw new InputError(
      `${KUBECONFIG_FROM_ENV} is set: the connection is read from a secret store at cold start, which needs ` +
        `connectClusterFromEnvironment() (asynchronous) instead of connectCluster()`,
    );
  }
  return connectWith(c, settings, undefined, options);
}

/**
 * What every deployed function calls once per cold start: the cluster the environment
 * configures, CNPG_ROTATOR_KUBECONFIG_FROM included (fetched now, with the function's
 * own identity). The variables and their precedence are in auth/environment.ts.
 */
export async function connectClusterFromEnvironment(
  options: ConnectOptions & {
    readonly context?: string;
    /** Reads CNPG_ROTATOR_KUBECONFIG_FROM's secret: the engine hands over its stores' reader (lib/rotation/context.ts). */
    readonly readStoredSecret?: StoredSecretReader;
  } = {},
): Promise<KubernetesClient> {
  const env = options.env ?? process.env;
  const settings = readClusterEnvironment(env);
  const c: ClusterConnection = options.context !== undefined ? { context: options.context } : {};
  if (settings.kubeconfigFrom && env[KUBECONFIG_ENV]) {
    throw new InputError(`both ${KUBECONFIG_FROM_ENV} and ${KUBECONFIG_ENV} give a kubeconfig; set only one`);
  }
  let stored: StoredConnection | undefined;
  if (settings.kubeconfigFrom) {
    if (!options.readStoredSecret) {
      throw new InputError(`${KUBECONFIG_FROM_ENV} is set, but this caller gave connectClusterFromEnvironment() no reader of secret stores`);
    }
    stored = await readKubeconfigFrom(settings.kubeconfigFrom, options.readStoredSecret, env);
  }
  return connectWith(c, settings, stored, options);
}

/** Server and CA from the first source that has them; credential from CNPG_ROTATOR_CLUSTER or the kubeconfig's user. */
function connectWith(
  c: ClusterConnection,
  settings: ClusterEnvironment,
  stored: StoredConnection | undefined,
  options: ConnectOptions,
): KubernetesClient {
  const env = options.env ?? process.env;
  const insecure = settings.insecureSkipTlsVerify;
  if (c.context !== undefined && (settings.endpoint || stored?.kind === "endpoint")) {
    throw new InputError(
      `context "${c.context}" was asked for, but ${settings.endpoint ? `env ${CLUSTER_SERVER_ENV}` : stored!.source} ` +
        "names the API server directly, without a kubeconfig and its contexts",
    );
  }
  let kc: KubeConfig;
  if (settings.endpoint) {
    if (env[KUBECONFIG_ENV]) {
      throw new InputError(`both ${CLUSTER_SERVER_ENV} and ${KUBECONFIG_ENV} name the API server; set only one`);
    }
    kc = endpointKubeConfig(settings.endpoint.server, settings.endpoint.caPem, undefined);
    check(kc, `env ${CLUSTER_SERVER_ENV}`, insecure);
  } else if (stored?.kind === "kubeconfig") {
    kc = new KubeConfig();
    load(stored.source, () => kc.loadFromString(stored.yaml));
    useContext(kc, stored.source, c.context);
    check(kc, stored.source, insecure);
  } else if (stored?.kind === "endpoint") {
    if (!stored.caPem && !insecure) {
      throw new InputError(`${stored.source}: field ca (the cluster's CA certificate, PEM or base64 of it) is missing`);
    }
    if (!stored.token && !settings.cloud && !options.tokenProvider) {
      throw new InputError(
        `${stored.source}: field token is missing; store one, or set ${CLUSTER_ENV} to authenticate with the function's cloud identity`,
      );
    }
    kc = endpointKubeConfig(stored.server, stored.caPem, stored.token);
    check(kc, stored.source, insecure);
  } else {
    kc = loadKubeConfig(c, env);
  }
  const provider =
    options.tokenProvider ??
    (settings.cloud
      ? cloudTokenProvider(settings.cloud, {
          ...(options.cloudCredentials ? { credentials: options.cloudCredentials } : {}),
          ...(options.now ? { now: options.now } : {}),
        })
      : undefined);
  return connect(kc, insecure, provider, options);
}

/** The client for the checked `kc`: only its current context, with the provider's token and the TLS override applied. */
function connect(
  kc: KubeConfig,
  insecure: boolean,
  provider: TokenProvider | undefined,
  options: ConnectOptions,
): KubernetesClient {
  const context = kc.getContextObject(kc.getCurrentContext())!;
  const loaded = kc.getCurrentCluster()!;
  const cluster: Cluster = insecure ? { ...loaded, skipTLSVerify: true } : loaded;
  const user = kc.getCurrentUser();
  const final = new KubeConfig();
  if (provider) {
    useTokenProvider(final, cluster, provider, context.namespace);
  } else {
    final.loadFromOptions({
      clusters: [cluster],
      users: user ? [user] : [],
      contexts: [context],
      currentContext: context.name,
    });
  }
  if (insecure) {
    // Every cold start, so it is in front of whoever reads the function's logs.
    (options.log ?? createLogger()).warn(
      { server: cluster.server, [INSECURE_SKIP_TLS_VERIFY_ENV]: true },
      `INSECURE: the Kubernetes API server's TLS certificate is NOT verified (${INSECURE_SKIP_TLS_VERIFY_ENV}=true): ` +
        "anyone on the network path can read and change the Secrets this function writes. " +
        "Give the cluster's CA instead and remove this setting.",
    );
  }
  options.log?.info(
    { server: cluster.server, credential: provider ? provider.description : describeUser(user) },
    "Kubernetes API server",
  );
  return new KubernetesClient(final, options);
}

function isExplicit(c: ClusterConnection): boolean {
  return c.kubeconfigYaml !== undefined || c.kubeconfigPath !== undefined;
}

/** A one-context kubeconfig for a server named directly; with `token` its user is that static token. */
function endpointKubeConfig(server: string, caPem: string | undefined, token: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: "cluster",
        server,
        skipTLSVerify: false,
        ...(caPem ? { caData: Buffer.from(caPem, "utf8").toString("base64") } : {}),
      },
    ],
    users: [{ name: "user", ...(token ? { token } : {}) }],
    contexts: [{ name: "cluster", cluster: "cluster", user: "user" }],
    currentContext: "cluster",
  });
  return kc;
}

function describeUser(user: User | null): string {
  if (!user) return "none (anonymous)";
  const kind = user.token
    ? "bearer token"
    : user.certData || user.certFile
      ? "client certificate"
      : user.exec
        ? `exec plugin ${String(user.exec.command ?? "")}`
        : user.authProvider
          ? `auth-provider ${String(user.authProvider.name ?? "")}`
          : "no credential";
  return `kubeconfig user "${user.name}" (${kind})`;
}

/**
 * Loads and checks the kubeconfig `c` names, or with nothing named: env
 * CNPG_ROTATOR_KUBECONFIG, else KUBECONFIG, else ~/.kube/config.
 */
export function loadKubeConfig(c: ClusterConnection = {}, env: NodeJS.ProcessEnv = process.env): KubeConfig {
  const kc = new KubeConfig();
  let source: string;
  if (c.kubeconfigYaml !== undefined) {
    source = "the kubeconfig given";
    load(source, () => kc.loadFromString(c.kubeconfigYaml!));
  } else if (c.kubeconfigPath !== undefined) {
    source = `kubeconfig file ${c.kubeconfigPath}`;
    if (!existsSync(c.kubeconfigPath)) throw new InputError(`${source} does not exist`);
    load(source, () => kc.loadFromFile(c.kubeconfigPath!));
  } else if (env[KUBECONFIG_ENV]) {
    source = `env ${KUBECONFIG_ENV}`;
    const yaml = decodeEnvKubeconfig(env[KUBECONFIG_ENV]);
    load(source, () => kc.loadFromString(yaml));
  } else if (env.KUBECONFIG) {
    source = `KUBECONFIG (${env.KUBECONFIG})`;
    const missing = env.KUBECONFIG.split(delimiter).filter((f) => f && !existsSync(f));
    if (missing.length > 0) throw new InputError(`${source} names files that do not exist: ${missing.join(", ")}`);
    load(source, () => kc.loadFromDefault());
  } else {
    const file = join(env.HOME ?? homedir(), ".kube", "config");
    if (!existsSync(file)) {
      throw new InputError(
        `no Kubernetes cluster configured: set ${KUBECONFIG_ENV} (kubeconfig YAML or its base64), ` +
          `${KUBECONFIG_FROM_ENV} (a secret store holding it), ${CLUSTER_SERVER_ENV} and _CA with ${CLUSTER_ENV}, ` +
          `or KUBECONFIG, or create ${file}`,
      );
    }
    source = `kubeconfig file ${file}`;
    load(source, () => kc.loadFromFile(file));
  }
  useContext(kc, source, c.context);
  check(kc, source, readInsecureSkipTlsVerify(env));
  return kc;
}

function useContext(kc: KubeConfig, source: string, context: string | undefined): void {
  if (context === undefined) return;
  if (!kc.getContextObject(context)) {
    const known = kc.getContexts().map((x) => x.name);
    throw new InputError(
      `${source} has no context "${context}"; it has ${known.length ? known.map((n) => `"${n}"`).join(", ") : "none"}`,
    );
  }
  kc.setCurrentContext(context);
}

// YAML always holds a ":"; base64 never does (line breaks from `base64` are allowed).
function decodeEnvKubeconfig(value: string): string {
  const text = value.trim();
  if (text.includes(":")) return value;
  if (!/^[A-Za-z0-9+/=_\-\s]+$/.test(text)) {
    throw new InputError(`env ${KUBECONFIG_ENV} is neither kubeconfig YAML nor base64 of it`);
  }
  const decoded = Buffer.from(text.replace(/\s+/g, ""), "base64").toString("utf8");
  if (!decoded.includes(":")) throw new InputError(`env ${KUBECONFIG_ENV} is neither kubeconfig YAML nor base64 of it`);
  return decoded;
}

// The YAML parser's message quotes the offending text, which may be a token: keep only the position.
function load(source: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    const err = e as Error & { mark?: { line?: number } };
    if (err.name === "YAMLException") {
      const line = err.mark?.line !== undefined ? ` (line ${err.mark.line + 1})` : "";
      throw new InputError(`${source} is not valid YAML${line}`);
    }
    throw new InputError(`${source} is not a usable kubeconfig: ${err.message}`);
  }
}

function check(kc: KubeConfig, source: string, insecure: boolean): void {
  const contextName = kc.getCurrentContext();
  if (!contextName) throw new InputError(`${source} sets no current-context; pass a context`);
  const context = kc.getContextObject(contextName);
  if (!context) throw new InputError(`${source}: current-context "${contextName}" is not among its contexts`);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new InputError(`${source}: context "${contextName}" names cluster "${context.cluster}", which it lacks`);
  if (!cluster.server.startsWith("https://")) {
    throw new InputError(`${source}: cluster "${cluster.name}" server must be an https:// URL, got "${cluster.server}"`);
  }
  checkProxyUrl(cluster, source);
  // Secrets travel over this connection: the server's certificate is verified unless the operator says otherwise.
  if (cluster.skipTLSVerify && !insecure) {
    throw new InputError(
      `${source}: cluster "${cluster.name}" sets insecure-skip-tls-verify; give its CA (certificate-authority-data) instead ` +
        `(or, never in production, set ${INSECURE_SKIP_TLS_VERIFY_ENV}=true)`,
    );
  }
}
