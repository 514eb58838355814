export { formatDuration, parseDuration } from "./duration.ts";
export { DEFAULT_CLUSTER, KUBERNETES_CLUSTER_ANNOTATION, type LoadOptions, loadManifests, type ManifestFile } from "./load.ts";
export { CLUSTER_API_VERSION, CREATION_POLICIES, PROVIDERS, type ProviderName } from "./schema.ts";
export type * from "./types.ts";
