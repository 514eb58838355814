// Cluster credentials that need no long-lived Kubernetes token: short-lived tokens of the
// function's cloud identity, and the connection itself read from a secret store.
export { AKS_SCOPE, type AzureTokenCredential } from "./aks.ts";
export { AUTH_PROVIDER_NAME, tokenAuthenticator, useTokenProvider } from "./authenticator.ts";
export { type AwsCredentials, type AwsCredentialsProvider, EKS_TOKEN_PREFIX, eksToken } from "./eks.ts";
export {
  CLUSTER_CA_ENV,
  CLUSTER_ENV,
  CLUSTER_SERVER_ENV,
  type CloudCluster,
  type CloudCredentials,
  type ClusterEnvironment,
  cloudTokenProvider,
  INSECURE_SKIP_TLS_VERIFY_ENV,
  KUBECONFIG_FROM_ENV,
  readClusterEnvironment,
  readInsecureSkipTlsVerify,
} from "./environment.ts";
export { GKE_SCOPE, type GoogleAccessTokenClient } from "./gke.ts";
export {
  type KubeconfigReference,
  parseKubeconfigFrom,
  readKubeconfigFrom,
  type StoredConnection,
  type StoredSecretReader,
} from "./kubeconfig-from.ts";
export { type Token, TokenProvider, type TokenProviderOptions, type TokenSource } from "./token.ts";
