// Finding the cluster: a function outside the cluster gets its kubeconfig from its
// configuration (env), a user at a shell from KUBECONFIG or ~/.kube/config.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { InputError } from "../errors.ts";
import { KubernetesClient, type KubernetesClientOptions } from "./client.ts";
import type { ClusterConnection } from "./types.ts";

/** Env var holding a whole kubeconfig (YAML text, or base64 of it) for functions without a file system to ship one. */
export const KUBECONFIG_ENV = "CNPG_ROTATOR_KUBECONFIG";

/**
 * A client for `c`, or with nothing given: env CNPG_ROTATOR_KUBECONFIG, else KUBECONFIG,
 * else ~/.kube/config. InputError when none is there or the kubeconfig is unusable.
 */
export function connectCluster(
  c: ClusterConnection = {},
  options: KubernetesClientOptions & { env?: NodeJS.ProcessEnv } = {},
): KubernetesClient {
  return new KubernetesClient(loadKubeConfig(c, options.env ?? process.env), options);
}

/** Loads and checks the kubeconfig `connectCluster` would use. */
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
        `no Kubernetes cluster configured: set ${KUBECONFIG_ENV} (kubeconfig YAML or its base64) or KUBECONFIG, ` +
          `or create ${file}`,
      );
    }
    source = `kubeconfig file ${file}`;
    load(source, () => kc.loadFromFile(file));
  }
  if (c.context !== undefined) {
    if (!kc.getContextObject(c.context)) {
      const known = kc.getContexts().map((x) => x.name);
      throw new InputError(
        `${source} has no context "${c.context}"; it has ${known.length ? known.map((n) => `"${n}"`).join(", ") : "none"}`,
      );
    }
    kc.setCurrentContext(c.context);
  }
  check(kc, source);
  return kc;
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

function check(kc: KubeConfig, source: string): void {
  const contextName = kc.getCurrentContext();
  if (!contextName) throw new InputError(`${source} sets no current-context; pass a context`);
  const context = kc.getContextObject(contextName);
  if (!context) throw new InputError(`${source}: current-context "${contextName}" is not among its contexts`);
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new InputError(`${source}: context "${contextName}" names cluster "${context.cluster}", which it lacks`);
  if (!cluster.server.startsWith("https://")) {
    throw new InputError(`${source}: cluster "${cluster.name}" server must be an https:// URL, got "${cluster.server}"`);
  }
  // Secrets travel over this connection: the server's certificate is always verified.
  if (cluster.skipTLSVerify) {
    throw new InputError(
      `${source}: cluster "${cluster.name}" sets insecure-skip-tls-verify; give its CA (certificate-authority-data) instead`,
    );
  }
}
