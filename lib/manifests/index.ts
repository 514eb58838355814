export { formatDuration, parseDuration } from "./duration.ts";
export { type LoadOptions, loadManifests, type ManifestFile } from "./load.ts";
export { CREATION_POLICIES, PROVIDERS, type ProviderName } from "./schema.ts";
export type * from "./types.ts";
