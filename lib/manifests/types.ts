import type { ResolvedPasswordSpec } from "../generator/index.ts";
import type { ParsedTemplate } from "../template/index.ts";
import type * as z from "zod";
import type { KubernetesClusterSpec, ProviderName, providerSchemas, REFRESH_POLICIES } from "./schema.ts";

/** Where a manifest came from, for error messages: file and 1-based document number. */
export interface Source {
  readonly file: string;
  readonly document: number;
}

export interface ObjectMeta {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly source: Source;
}

export interface Password {
  readonly kind: "Password";
  readonly metadata: ObjectMeta;
  readonly spec: ResolvedPasswordSpec;
}

/** Creation policies we carry out; the others are refused at load time. */
export type SupportedCreationPolicy = "Merge" | "CreateOrMerge";
export type RefreshPolicy = (typeof REFRESH_POLICIES)[number];

export interface TargetTemplate {
  readonly type?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** Parsed once at load, so an unknown function fails before any schedule fires. */
  readonly data?: Readonly<Record<string, ParsedTemplate>>;
  readonly mergePolicy: "Replace" | "Merge";
}

export interface ExternalSecret {
  readonly kind: "ExternalSecret";
  readonly metadata: ObjectMeta;
  readonly target: {
    readonly name: string;
    readonly creationPolicy: SupportedCreationPolicy;
    readonly template?: TargetTemplate;
  };
  /** As written ("24h"), for display. */
  readonly refreshInterval: string;
  /** 0 means: generate once. */
  readonly refreshIntervalMs: number;
  readonly refreshPolicy: RefreshPolicy;
  /** The Password generators named in dataFrom, in order; later keys win. */
  readonly generators: readonly Password[];
  /** Hash of the spec and its generators, for refreshPolicy OnChange. */
  readonly specHash: string;
}

export interface PushSecretData {
  /** A key of the source Secret; absent = push the whole Secret as one JSON object. */
  readonly secretKey?: string;
  readonly remoteKey: string;
  /** A field of a JSON value in the store; only that field changes. */
  readonly property?: string;
}

export interface PushSecret {
  readonly kind: "PushSecret";
  readonly metadata: ObjectMeta;
  readonly secretName: string;
  readonly stores: readonly SecretStore[];
  readonly data: readonly PushSecretData[];
  readonly updatePolicy: "Replace" | "IfNotExists";
  readonly deletionPolicy: "Delete" | "None";
  readonly refreshInterval: string;
  readonly refreshIntervalMs: number;
}

/** A SecretStore's one provider: its name and its validated `spec.provider.<name>`. */
export type ProviderConfig = {
  readonly [N in ProviderName]: { readonly name: N; readonly config: z.infer<(typeof providerSchemas)[N]> };
}[ProviderName];

export interface SecretStore {
  readonly kind: "SecretStore" | "ClusterSecretStore";
  readonly metadata: ObjectMeta;
  readonly provider: ProviderConfig;
}

export interface Secret {
  readonly kind: "Secret";
  readonly metadata: ObjectMeta;
  readonly type?: string;
  /** Decoded values (data is base64 in YAML, stringData plain). */
  readonly data: Readonly<Record<string, string>>;
}

/** One cluster of a fleet (cnpg-rotator.io/v1alpha1 KubernetesCluster); cluster-scoped, so its namespace is unused. */
export interface KubernetesCluster {
  readonly kind: "KubernetesCluster";
  readonly metadata: ObjectMeta;
  readonly spec: KubernetesClusterSpec;
}

export type Manifest = Password | ExternalSecret | PushSecret | SecretStore | Secret | KubernetesCluster;

export interface ManifestSet {
  readonly passwords: readonly Password[];
  readonly externalSecrets: readonly ExternalSecret[];
  readonly pushSecrets: readonly PushSecret[];
  readonly secretStores: readonly SecretStore[];
  readonly secrets: readonly Secret[];
  /** The clusters targets name (annotation cnpg-rotator.io/kubernetes-cluster); none: the one the environment configures. */
  readonly clusters: readonly KubernetesCluster[];
  /** Fields ESO would accept that have no effect here. */
  readonly warnings: readonly string[];
}
