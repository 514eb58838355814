// The Kubernetes side of a rotation: the Secret CNPG reads, the Lease that keeps runs apart.
export { describeAccess, rotationAccessChecks } from "./access.ts";
export { KubernetesClient, type KubernetesClientOptions } from "./client.ts";
export * from "./auth/index.ts";
export {
  type ConnectOptions,
  connectCluster,
  connectClusterFromEnvironment,
  KUBECONFIG_ENV,
  loadKubeConfig,
} from "./connect.ts";
export { activeHolder, LEASE_SECRET_ANNOTATION, leaseNameFor } from "./leases.ts";
export type * from "./types.ts";
