// How a function outside the cluster finds it and proves who it is, read from its
// environment. The block below is written to be pasted into the README.
//
// ## Connecting to the cluster
//
// A function needs the API server's URL, the CA that signed its certificate, and a
// credential. The credential should be the function's own cloud identity, so that no
// long-lived Kubernetes token sits in its configuration:
//
// | Variable | Value |
// |---|---|
// | `CNPG_ROTATOR_CLUSTER` | `eks:<cluster-name>`, `gke` or `aks`: authenticate every request with a short-lived token of the function's cloud identity (see below). Unset: use the kubeconfig's own user. |
// | `CNPG_ROTATOR_CLUSTER_SERVER` | `https://...` URL of the API server (EKS: the cluster's "API server endpoint"; GKE: `https://<endpoint IP or DNS>`; AKS: the cluster's FQDN). Only with `CNPG_ROTATOR_CLUSTER`. |
// | `CNPG_ROTATOR_CLUSTER_CA` | The cluster CA certificate, PEM or base64 of the PEM (what `certificate-authority-data` holds; EKS and GKE consoles show it base64). Required with `CNPG_ROTATOR_CLUSTER_SERVER`. |
// | `CNPG_ROTATOR_KUBECONFIG_FROM` | Read the connection from a secret store at cold start instead of the function's plain configuration: `aws:<secret name or ARN>` (AWS Secrets Manager, AWSCURRENT), `gcpsm:projects/<project>/secrets/<name>[/versions/<v>]` (Google Secret Manager, latest by default; `projects/<p>/locations/<l>/secrets/<n>` for a regional secret), `azurekv:https://<vault>.vault.azure.net/secrets/<name>[/<version>]` (Azure Key Vault). The secret holds a kubeconfig (YAML, JSON, or base64 of either) or JSON `{"server": "https://...", "ca": "<PEM or base64 PEM>", "token": "..."}`. With `CNPG_ROTATOR_CLUSTER` only its server and CA are used (`token` may be left out). The function's identity needs read access (`secretsmanager:GetSecretValue`, `roles/secretmanager.secretAccessor`, or Key Vault Secrets User). The value is never logged. |
// | `CNPG_ROTATOR_KUBECONFIG` | A whole kubeconfig, YAML or its base64, in the configuration itself. |
// | `KUBECONFIG`, `~/.kube/config` | As kubectl reads them (for the CLI). |
// | `CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY` | `true` turns off verification of the API server's certificate. Never do this in production: anyone on the path can then read and change the Secrets. A warning is logged at every cold start. Default `false`; a kubeconfig's `insecure-skip-tls-verify` is refused unless this is `true`. |
//
// Where the server and CA come from, first match wins: `CNPG_ROTATOR_CLUSTER_SERVER` +
// `CNPG_ROTATOR_CLUSTER_CA`; `CNPG_ROTATOR_KUBECONFIG_FROM`; `CNPG_ROTATOR_KUBECONFIG`;
// `KUBECONFIG`; `~/.kube/config`. Setting two of the first three is an error. The credential
// is the `CNPG_ROTATOR_CLUSTER` token when set (the kubeconfig's user is then ignored),
// else the kubeconfig's user (token or client certificate; `exec` plugins need their
// binary, which a function does not have).
//
// Cloud identities (`CNPG_ROTATOR_CLUSTER`):
// - `eks:<cluster-name>`: a token made as `aws eks get-token` makes it (a presigned STS
//   GetCallerIdentity URL, regional endpoint of `AWS_REGION`, else `AWS_DEFAULT_REGION`),
//   signed with the runtime's default credentials (the Lambda's execution role). Give that
//   role access with an EKS access entry (or the aws-auth ConfigMap) and RBAC (deploy/rbac.yaml).
//   Tokens live 15 minutes; a new one is made a minute before.
// - `gke`: an OAuth2 access token (scope cloud-platform) of Application Default
//   Credentials (the function's service account). Grant it `roles/container.developer` or
//   RBAC on its email.
// - `aks`: a Microsoft Entra ID token for the AKS server application
//   (`6dae42f8-4368-4678-94ff-3960e28e3630/.default`) from DefaultAzureCredential (the
//   function's managed identity; `AZURE_CLIENT_ID` selects a user-assigned one). The
//   cluster needs Entra ID integration; bind RBAC to the identity's object id.
import { InputError } from "../../errors.ts";
import { parseCaPem } from "../../pem.ts";
import { type AzureTokenCredential, azureAccessToken, defaultAzureCredential } from "./aks.ts";
import {
  type AwsCredentialsProvider,
  checkAwsRegion,
  checkEksClusterName,
  defaultAwsCredentials,
  eksToken,
} from "./eks.ts";
import { defaultGoogleClient, type GoogleAccessTokenClient, googleAccessToken } from "./gke.ts";
import { TokenProvider } from "./token.ts";

// The cloud a bundle is built for: the bundlers define process.env.CNPG_ROTATOR_BUNDLE_CLOUD
// as "aws", "gcp" or "azure" (serverless.yml, deploy/build.ts); unbundled runs (tests, CLI)
// leave it unset and keep every cloud. Where a condition must drop another cloud's SDK from
// the bundle it is written out instead: esbuild folds it only so, not through these consts.
const BUNDLE_CLOUD = process.env.CNPG_ROTATOR_BUNDLE_CLOUD;
const WITH_AWS = !BUNDLE_CLOUD || BUNDLE_CLOUD === "aws";
const WITH_GCP = !BUNDLE_CLOUD || BUNDLE_CLOUD === "gcp";
const WITH_AZURE = !BUNDLE_CLOUD || BUNDLE_CLOUD === "azure";
const CLOUD_TITLE: Record<string, string> = { aws: "AWS", gcp: "GCP", azure: "Azure" };

/** For a setting that needs what this cloud's bundle left out: names the build and where to go instead. */
export function notInThisBuild(setting: string, what: string, cloud: "aws" | "gcp" | "azure"): InputError {
  const title = (c: string) => CLOUD_TITLE[c] ?? c;
  return new InputError(
    `${setting}: this ${title(BUNDLE_CLOUD ?? "")} build has no ${what}; deploy the ${title(cloud)} function or use the CLI`,
  );
}

export const CLUSTER_ENV = "CNPG_ROTATOR_CLUSTER";
export const CLUSTER_SERVER_ENV = "CNPG_ROTATOR_CLUSTER_SERVER";
export const CLUSTER_CA_ENV = "CNPG_ROTATOR_CLUSTER_CA";
export const KUBECONFIG_FROM_ENV = "CNPG_ROTATOR_KUBECONFIG_FROM";
export const INSECURE_SKIP_TLS_VERIFY_ENV = "CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY";

/** The cloud identity that authenticates requests. */
export type CloudCluster =
  | { readonly kind: "eks"; readonly clusterName: string; readonly region: string }
  | { readonly kind: "gke" }
  | { readonly kind: "aks" };

/** The API server named directly, without a kubeconfig. */
export interface ClusterEndpoint {
  readonly server: string;
  /** PEM; absent only when TLS verification is off. */
  readonly caPem?: string;
}

export interface ClusterEnvironment {
  readonly cloud?: CloudCluster;
  readonly endpoint?: ClusterEndpoint;
  readonly kubeconfigFrom?: string;
  readonly insecureSkipTlsVerify: boolean;
}

/** Reads and checks the variables above (nothing is fetched). InputError names the variable at fault. */
export function readClusterEnvironment(env: NodeJS.ProcessEnv): ClusterEnvironment {
  const insecureSkipTlsVerify = readInsecureSkipTlsVerify(env);
  const cloud = readCloud(env);
  const server = env[CLUSTER_SERVER_ENV]?.trim() || undefined;
  const ca = env[CLUSTER_CA_ENV]?.trim() || undefined;
  const kubeconfigFrom = env[KUBECONFIG_FROM_ENV]?.trim() || undefined;
  let endpoint: ClusterEndpoint | undefined;
  if (server !== undefined || ca !== undefined) {
    if (!cloud) {
      throw new InputError(
        `${server !== undefined ? CLUSTER_SERVER_ENV : CLUSTER_CA_ENV} is set but ${CLUSTER_ENV} is not: the server and CA ` +
          `given this way are used with a cloud identity only; set ${CLUSTER_ENV} (eks:<name>, gke or aks), or give a kubeconfig instead`,
      );
    }
    if (server === undefined) throw new InputError(`${CLUSTER_CA_ENV} is set but ${CLUSTER_SERVER_ENV} is not; set both`);
    if (ca === undefined && !insecureSkipTlsVerify) {
      throw new InputError(
        `${CLUSTER_SERVER_ENV} is set but ${CLUSTER_CA_ENV} is not: give the cluster's CA certificate (PEM or base64 of it) ` +
          `so the API server's certificate can be verified`,
      );
    }
    if (kubeconfigFrom !== undefined) {
      throw new InputError(`both ${CLUSTER_SERVER_ENV} and ${KUBECONFIG_FROM_ENV} name the API server; set only one`);
    }
    endpoint = {
      server: parseServer(server, CLUSTER_SERVER_ENV),
      ...(ca !== undefined ? { caPem: parseCaPem(ca, CLUSTER_CA_ENV) } : {}),
    };
  }
  return {
    ...(cloud ? { cloud } : {}),
    ...(endpoint ? { endpoint } : {}),
    ...(kubeconfigFrom ? { kubeconfigFrom } : {}),
    insecureSkipTlsVerify,
  };
}

/** CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY: true, or false when unset. */
export function readInsecureSkipTlsVerify(env: NodeJS.ProcessEnv): boolean {
  const value = env[INSECURE_SKIP_TLS_VERIFY_ENV]?.trim().toLowerCase();
  if (value === undefined || value === "" || value === "false") return false;
  if (value === "true") return true;
  throw new InputError(`${INSECURE_SKIP_TLS_VERIFY_ENV}: expected true or false, found "${env[INSECURE_SKIP_TLS_VERIFY_ENV]}"`);
}

function readCloud(env: NodeJS.ProcessEnv): CloudCluster | undefined {
  const value = env[CLUSTER_ENV]?.trim();
  if (!value) return undefined;
  if (value === "gke") {
    if (!WITH_GCP) throw notInThisBuild(`${CLUSTER_ENV}=${value}`, "GKE token provider", "gcp");
    return { kind: value };
  }
  if (value === "aks") {
    if (!WITH_AZURE) throw notInThisBuild(`${CLUSTER_ENV}=${value}`, "AKS token provider", "azure");
    return { kind: value };
  }
  if (value.startsWith("eks:")) {
    if (!WITH_AWS) throw notInThisBuild(`${CLUSTER_ENV}=${value}`, "EKS token provider", "aws");
    const clusterName = value.slice(4);
    checkEksClusterName(clusterName, CLUSTER_ENV);
    const region = env.AWS_REGION || env.AWS_DEFAULT_REGION;
    if (!region) {
      throw new InputError(`${CLUSTER_ENV}=${value} needs the AWS region for STS: set AWS_REGION (Lambda sets it)`);
    }
    checkAwsRegion(region, env.AWS_REGION ? "AWS_REGION" : "AWS_DEFAULT_REGION");
    return { kind: "eks", clusterName, region };
  }
  throw new InputError(`${CLUSTER_ENV}: expected eks:<cluster-name>, gke or aks, found "${value}"`);
}

/** An https URL of an API server, as the client takes it. */
export function parseServer(value: string, where: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InputError(`${where}: expected the https:// URL of the API server, found "${value}"`);
  }
  if (url.protocol !== "https:") throw new InputError(`${where}: the API server URL must be https://, found "${value}"`);
  if (url.username || url.password || url.search || url.hash) {
    throw new InputError(`${where}: the API server URL must not carry credentials, a query or a fragment`);
  }
  return value.replace(/\/+$/, "");
}

/** Identities to use instead of each cloud's default chain (an explicit credential, or a test's fake). */
export interface CloudCredentials {
  /** Default: @aws-sdk/credential-provider-node's default chain. */
  readonly aws?: AwsCredentialsProvider;
  /** Default: google-auth-library's Application Default Credentials. */
  readonly google?: GoogleAccessTokenClient;
  /** Default: @azure/identity's DefaultAzureCredential. */
  readonly azure?: AzureTokenCredential;
}

export interface CloudTokenOptions {
  readonly credentials?: CloudCredentials;
  /** Milliseconds since the epoch; a test seam. */
  readonly now?: () => number;
}

/**
 * The token provider for `cloud`. Nothing is loaded or fetched until the first request:
 * each cloud's SDK is imported then, so a function only loads its own cloud's.
 */
export function cloudTokenProvider(cloud: CloudCluster, options: CloudTokenOptions = {}): TokenProvider {
  const now = options.now ?? Date.now;
  const given = options.credentials ?? {};
  // Each branch under its build flag, so a cloud's bundle keeps only its own provider.
  if (cloud.kind === "eks" && (!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "aws")) {
    const credentials = once(() => (given.aws ? Promise.resolve(given.aws) : defaultAwsCredentials()));
    return new TokenProvider(
      `an EKS token for cluster "${cloud.clusterName}" (AWS default credentials, STS ${cloud.region})`,
      async () => {
        const resolved = await (await credentials())();
        return eksToken({ ...cloud, credentials: resolved, signingDate: new Date(now()) });
      },
      { now },
    );
  }
  if (cloud.kind === "gke" && (!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "gcp")) {
    const client = once(() => (given.google ? Promise.resolve(given.google) : defaultGoogleClient()));
    return new TokenProvider(
      "a GKE access token (Google Application Default Credentials)",
      async () => googleAccessToken(await client(), now()),
      { now },
    );
  }
  if (cloud.kind === "aks" && (!process.env.CNPG_ROTATOR_BUNDLE_CLOUD || process.env.CNPG_ROTATOR_BUNDLE_CLOUD === "azure")) {
    const credential = once(() => (given.azure ? Promise.resolve(given.azure) : defaultAzureCredential()));
    return new TokenProvider(
      "an AKS access token (Microsoft Entra ID, DefaultAzureCredential)",
      async () => azureAccessToken(await credential()),
      { now },
    );
  }
  const target = ({ eks: "aws", gke: "gcp", aks: "azure" } as const)[cloud.kind];
  throw notInThisBuild(CLUSTER_ENV, `${cloud.kind.toUpperCase()} token provider`, target);
}

/** Memoizes a successful promise; a failure is retried on the next call. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => {
    p ??= make().catch((e) => {
      p = undefined;
      throw e;
    });
    return p;
  };
}
