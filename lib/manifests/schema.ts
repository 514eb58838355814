// Schemas of the manifests we accept: ESO's own kinds, in the fields ESO
// defines, plus plain v1 Secrets. Fields ESO defines but we cannot honour are
// refused in load.ts with a message saying so; unknown fields are errors, as
// kubectl's strict field validation makes them.
import * as z from "zod";
import { parseDuration } from "./duration.ts";

const name = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "expected a lower-case DNS name (a-z, 0-9, '-', '.')")
  .max(253);

const stringMap = z.record(z.string(), z.string());

export const metadataSchema = z.looseObject({
  name,
  namespace: name.optional(),
  labels: stringMap.optional(),
  annotations: stringMap.optional(),
});

export const durationString = z
  .string()
  .refine((s) => parseDuration(s) !== undefined && parseDuration(s)! >= 0, {
    message: 'expected a Go duration such as "24h", "30m", "1h30m" or "0"',
  });

const secretKey = z.string().regex(/^[-._a-zA-Z0-9]+$/, "expected a Secret key (letters, digits, '-', '_', '.')");

// --- generators.external-secrets.io/v1alpha1 Password -----------------------

export const passwordSpecSchema = z.strictObject({
  length: z.int().optional(),
  digits: z.int().optional(),
  symbols: z.int().optional(),
  symbolCharacters: z.string().optional(),
  noUpper: z.boolean().optional(),
  allowRepeat: z.boolean().optional(),
  secretKeys: z.array(z.string()).optional(),
  encoding: z.string().optional(),
});

// --- external-secrets.io ExternalSecret -------------------------------------

export const CREATION_POLICIES = ["Owner", "Orphan", "Merge", "None", "CreateOrMerge"] as const;
export const REFRESH_POLICIES = ["Periodic", "CreatedOnce", "OnChange"] as const;

const storeRef = z.strictObject({
  name,
  kind: z.enum(["SecretStore", "ClusterSecretStore"]).optional(),
});

const generatorRef = z.strictObject({
  apiVersion: z.string(),
  kind: z.string(),
  name,
});

const templateSchema = z.strictObject({
  type: z.string().optional(),
  engineVersion: z.enum(["v1", "v2"]).optional(),
  metadata: z
    .strictObject({
      labels: stringMap.optional(),
      annotations: stringMap.optional(),
      finalizers: z.array(z.string()).optional(),
    })
    .optional(),
  mergePolicy: z.enum(["Replace", "Merge"]).optional(),
  data: z.record(secretKey, z.string()).optional(),
  templateFrom: z.array(z.unknown()).optional(),
});

export const externalSecretSpecSchema = z.strictObject({
  secretStoreRef: storeRef.optional(),
  target: z.strictObject({
    name,
    creationPolicy: z.enum(CREATION_POLICIES).optional(),
    deletionPolicy: z.enum(["Delete", "Merge", "Retain"]).optional(),
    template: templateSchema.optional(),
    immutable: z.boolean().optional(),
  }),
  refreshPolicy: z.enum(REFRESH_POLICIES).optional(),
  refreshInterval: durationString.optional(),
  data: z.array(z.unknown()).optional(),
  dataFrom: z
    .array(
      z.strictObject({
        extract: z.unknown().optional(),
        find: z.unknown().optional(),
        rewrite: z.array(z.unknown()).optional(),
        sourceRef: z
          .strictObject({
            storeRef: storeRef.optional(),
            generatorRef: generatorRef.optional(),
          })
          .optional(),
      }),
    )
    .optional(),
});

// --- external-secrets.io PushSecret ------------------------------------------

export const pushSecretSpecSchema = z.strictObject({
  refreshInterval: durationString.optional(),
  secretStoreRefs: z
    .array(
      z.strictObject({
        name: name.optional(),
        kind: z.enum(["SecretStore", "ClusterSecretStore"]).optional(),
        labelSelector: z.unknown().optional(),
      }),
    )
    .min(1, "expected at least one store"),
  updatePolicy: z.enum(["Replace", "IfNotExists"]).optional(),
  deletionPolicy: z.enum(["Delete", "None"]).optional(),
  selector: z.strictObject({
    secret: z
      .strictObject({
        name: name.optional(),
        selector: z.unknown().optional(),
      })
      .optional(),
    generatorRef: generatorRef.optional(),
  }),
  data: z
    .array(
      z.strictObject({
        match: z.strictObject({
          secretKey: secretKey.optional(),
          remoteRef: z.strictObject({
            remoteKey: z.string().min(1, "expected a remote key"),
            property: z.string().optional(),
          }),
        }),
        metadata: z.unknown().optional(),
        conversionStrategy: z.enum(["None", "ReverseUnicode"]).optional(),
      }),
    )
    .optional(),
  template: z.unknown().optional(),
  updateStrategy: z.unknown().optional(),
});

// --- external-secrets.io SecretStore / ClusterSecretStore --------------------

const secretKeySelector = z.strictObject({
  name,
  key: z.string().min(1),
  namespace: name.optional(),
});

export const vaultProviderSchema = z.strictObject({
  server: z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }),
  path: z.string().optional(),
  version: z.enum(["v1", "v2"]).optional(),
  namespace: z.string().optional(),
  caBundle: z.string().optional(),
  auth: z.strictObject({
    tokenSecretRef: secretKeySelector,
  }),
});

export const awsProviderSchema = z.strictObject({
  service: z.enum(["SecretsManager", "ParameterStore"]),
  region: z.string().min(1),
  role: z.string().optional(),
  auth: z.unknown().optional(),
  prefix: z.string().optional(),
  secretsManager: z.unknown().optional(),
});

export const gcpProviderSchema = z.strictObject({
  projectID: z.string().min(1),
  location: z.string().optional(),
  auth: z.unknown().optional(),
});

export const azureProviderSchema = z.strictObject({
  vaultUrl: z.url({ protocol: /^https?$/, error: "expected an https URL" }),
  tenantId: z.string().optional(),
  authType: z.string().optional(),
  authSecretRef: z.unknown().optional(),
  identityId: z.string().optional(),
  environmentType: z.string().optional(),
});

/** Ours, for local runs: one JSON file on disk. */
export const fileProviderSchema = z.strictObject({
  path: z.string().min(1, "expected a file path"),
});

export const secretStoreSpecSchema = z.strictObject({
  provider: z.record(z.string(), z.unknown()),
  controller: z.string().optional(),
  refreshInterval: z.number().optional(),
  retrySettings: z.unknown().optional(),
  conditions: z.unknown().optional(),
});

/**
 * Every provider's `spec.provider.<name>` schema: the one list of provider names (a new store adds
 * its line here and in lib/stores/index.ts; PROVIDERS and ProviderConfig follow).
 */
export const providerSchemas = {
  file: fileProviderSchema,
  aws: awsProviderSchema,
  gcpsm: gcpProviderSchema,
  azurekv: azureProviderSchema,
  vault: vaultProviderSchema,
} as const;
export type ProviderName = keyof typeof providerSchemas;
export const PROVIDERS = Object.keys(providerSchemas) as readonly ProviderName[];

// --- v1 Secret ----------------------------------------------------------------

export const secretSchema = z.looseObject({
  type: z.string().optional(),
  data: z.record(secretKey, z.string()).optional(),
  stringData: z.record(secretKey, z.string()).optional(),
  immutable: z.boolean().optional(),
});

export type PasswordSpecManifest = z.infer<typeof passwordSpecSchema>;
export type ExternalSecretSpec = z.infer<typeof externalSecretSpecSchema>;
export type PushSecretSpec = z.infer<typeof pushSecretSpecSchema>;
export type VaultProvider = z.infer<typeof vaultProviderSchema>;
export type AwsProvider = z.infer<typeof awsProviderSchema>;
export type GcpProvider = z.infer<typeof gcpProviderSchema>;
export type AzureProvider = z.infer<typeof azureProviderSchema>;
export type FileProvider = z.infer<typeof fileProviderSchema>;

// --- cnpg-rotator.io/v1alpha1 KubernetesCluster: one cluster of a fleet (README "Fleets") -------
// How a function reaches one cluster, in the terms of the CNPG_ROTATOR_CLUSTER* and
// CNPG_ROTATOR_KUBECONFIG_FROM variables (lib/kubernetes/auth/environment.ts): the
// connection is read by the same code, so a cluster here behaves as a single-cluster
// deployment configured by those variables.
export type KubernetesClusterSpec = z.infer<typeof kubernetesClusterSpecSchema>;
export const CLUSTER_API_VERSION = "cnpg-rotator.io/v1alpha1";
export const kubernetesClusterSpecSchema = z
  .strictObject({
    /** As CNPG_ROTATOR_KUBECONFIG_FROM: `aws:<name or ARN>`, `gcpsm:projects/…`, `azurekv:https://…`. */
    kubeconfigFrom: z.string().regex(/^(aws|gcpsm|azurekv):\S+$/, "expected aws:<name or ARN>, gcpsm:projects/<p>/secrets/<name> or azurekv:https://<vault>.vault.azure.net/secrets/<name>").optional(),
    /** The name of an environment variable holding a kubeconfig (YAML or base64), as CNPG_ROTATOR_KUBECONFIG does. */
    kubeconfigEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected the name of an environment variable").optional(),
    /** As CNPG_ROTATOR_CLUSTER_SERVER / _CA: the API server named directly (needs `identity`). */
    server: z.string().startsWith("https://", "expected the https:// URL of the API server").optional(),
    certificateAuthorityData: z.string().min(1).optional(),
    /** As CNPG_ROTATOR_CLUSTER: authenticate with a short-lived token of the function's identity. */
    identity: z.string().regex(/^(eks:[A-Za-z0-9][A-Za-z0-9_-]*|gke|aks)$/, "expected eks:<cluster-name>, gke or aks").optional(),
    /** The EKS cluster's region, for STS (default: the function's AWS_REGION). */
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, "expected an AWS region such as eu-west-1").optional(),
    /** At most this many rotations of this cluster at once in one invocation (default CNPG_ROTATOR_CLUSTER_CONCURRENCY, else 4). */
    maxConcurrentRotations: z.number().int().min(1).max(64).optional(),
  })
  .check((ctx) => {
    const s = ctx.value;
    const sources = (["kubeconfigFrom", "kubeconfigEnv", "server"] as const).filter((k) => s[k] !== undefined);
    if (sources.length !== 1) {
      ctx.issues.push({
        code: "custom",
        input: s,
        path: sources.length > 1 ? [sources[1]!] : [],
        message:
          sources.length === 0
            ? "expected exactly one of kubeconfigFrom, kubeconfigEnv or server (with certificateAuthorityData and identity)"
            : `${sources.join(" and ")} both name the API server; set only one`,
      });
    }
    if (s.server !== undefined && s.identity === undefined) {
      ctx.issues.push({ code: "custom", input: s, path: ["identity"], message: "required with server (eks:<cluster-name>, gke or aks), as CNPG_ROTATOR_CLUSTER is with CNPG_ROTATOR_CLUSTER_SERVER" });
    }
    if (s.server !== undefined && s.certificateAuthorityData === undefined) {
      ctx.issues.push({ code: "custom", input: s, path: ["certificateAuthorityData"], message: "required with server: the cluster's CA (PEM or base64 of it)" });
    }
    if (s.server === undefined && s.certificateAuthorityData !== undefined) {
      ctx.issues.push({ code: "custom", input: s, path: ["certificateAuthorityData"], message: "only with server" });
    }
    if (s.region !== undefined && !s.identity?.startsWith("eks:")) {
      ctx.issues.push({ code: "custom", input: s, path: ["region"], message: "only with identity eks:<cluster-name>" });
    }
  });
