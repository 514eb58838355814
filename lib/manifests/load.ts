import { createHash } from "node:crypto";
import { parseAllDocuments } from "yaml";
import type { z } from "zod";
import { GeneratorError, ManifestError, TemplateError } from "../errors.ts";
import { resolvePasswordSpec } from "../generator/index.ts";
import { type ParsedTemplate, parseTemplate } from "../template/index.ts";
import { parseDuration } from "./duration.ts";
import {
  CLUSTER_API_VERSION,
  externalSecretSpecSchema,
  kubernetesClusterSpecSchema,
  metadataSchema,
  PROVIDERS,
  type ProviderName,
  passwordSpecSchema,
  providerSchemas,
  pushSecretSpecSchema,
  secretSchema,
  secretStoreSpecSchema,
} from "./schema.ts";
import type {
  ExternalSecret,
  KubernetesCluster,
  ManifestSet,
  ObjectMeta,
  Password,
  ProviderConfig,
  PushSecret,
  Secret,
  SecretStore,
  Source,
  SupportedCreationPolicy,
} from "./types.ts";

export interface ManifestFile {
  /** Shown in errors; a path or "<stdin>". */
  readonly file: string;
  readonly text: string;
  /** The file's documents already parsed (a compiled snapshot, lib/rotation/files.ts): `text` is then not read. */
  readonly documents?: readonly unknown[];
}

export interface LoadOptions {
  /** Namespace of documents that name none, as `kubectl -n` would. Default "default". */
  readonly namespace?: string;
}

const API_VERSIONS: Record<string, readonly string[]> = {
  Password: ["generators.external-secrets.io/v1alpha1"],
  ExternalSecret: ["external-secrets.io/v1", "external-secrets.io/v1beta1"],
  PushSecret: ["external-secrets.io/v1alpha1", "external-secrets.io/v1"],
  SecretStore: ["external-secrets.io/v1", "external-secrets.io/v1beta1"],
  ClusterSecretStore: ["external-secrets.io/v1", "external-secrets.io/v1beta1"],
  Secret: ["v1"],
  KubernetesCluster: [CLUSTER_API_VERSION],
};

/** On an ExternalSecret: the KubernetesCluster its target Secret lives in (absent: DEFAULT_CLUSTER). */
export const KUBERNETES_CLUSTER_ANNOTATION = "cnpg-rotator.io/kubernetes-cluster";
/** The cluster of targets that name none: the one the environment configures (CNPG_ROTATOR_CLUSTER*, a kubeconfig). */
export const DEFAULT_CLUSTER = "default";

const PASSWORD_API = "generators.external-secrets.io/v1alpha1";

interface RawDoc {
  readonly source: Source;
  readonly kind: string;
  readonly metadata: ObjectMeta;
  readonly body: Record<string, unknown>;
}

/** Collects every problem of a load, so one run tells the user all of them. */
class Problems {
  readonly errors: string[] = [];
  readonly warnings: string[] = [];

  at(doc: { source: Source; kind?: string; name?: string }, path: string): (message: string) => void {
    const where = `${doc.source.file}: document ${doc.source.document}${doc.kind ? ` (${doc.kind}${doc.name ? `/${doc.name}` : ""})` : ""}`;
    return (message) => this.errors.push(`${where}: ${path ? `${path}: ` : ""}${message}`);
  }

  warn(doc: RawDoc, path: string, message: string): void {
    this.warnings.push(
      `${doc.source.file}: document ${doc.source.document} (${doc.kind}/${doc.metadata.name}): ${path}: ${message}`,
    );
  }

  zod(doc: { source: Source; kind?: string; name?: string }, prefix: string, error: z.ZodError): void {
    for (const issue of error.issues) {
      const path = [prefix, ...issue.path.map(String)].filter(Boolean).join(".");
      let message = issue.message;
      if (issue.code === "unrecognized_keys") {
        message = `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
      } else if (issue.code === "invalid_value" && "values" in issue) {
        message = `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
      }
      this.at(doc, path)(message.replace(/^Invalid input: /, ""));
    }
  }
}

/** Reads multi-document YAML files of ESO manifests and plain Secrets; throws ManifestError listing every problem. */
export function loadManifests(files: readonly ManifestFile[], options: LoadOptions = {}): ManifestSet {
  const problems = new Problems();
  const docs = files.flatMap((f) => readDocuments(f, options.namespace ?? "default", problems));

  const passwords = docs.filter((d) => d.kind === "Password").map((d) => toPassword(d, problems));
  const secretStores = docs
    .filter((d) => d.kind === "SecretStore" || d.kind === "ClusterSecretStore")
    .map((d) => toSecretStore(d, problems));
  const secrets = docs.filter((d) => d.kind === "Secret").map((d) => toSecret(d, problems));
  const clusters = docs.filter((d) => d.kind === "KubernetesCluster").map((d) => toKubernetesCluster(d, problems));
  const ok = <T>(x: T | undefined): x is T => x !== undefined;
  const set = {
    passwords: passwords.filter(ok),
    secretStores: secretStores.filter(ok),
    secrets: secrets.filter(ok),
    clusters: clusters.filter(ok),
  };
  const externalSecrets = docs
    .filter((d) => d.kind === "ExternalSecret")
    .map((d) => toExternalSecret(d, set.passwords, problems))
    .filter(ok);
  const pushSecrets = docs
    .filter((d) => d.kind === "PushSecret")
    .map((d) => toPushSecret(d, set.secretStores, problems))
    .filter(ok);

  checkUnique(docs, problems);
  checkClusterNames(docs, set.clusters, problems);
  throwIf(problems);
  return { ...set, externalSecrets, pushSecrets, warnings: [...problems.warnings, ...awsWriteRateWarnings(externalSecrets, pushSecrets)] };
}

function throwIf(problems: Problems): void {
  if (problems.errors.length === 0) return;
  const n = problems.errors.length;
  throw new ManifestError(
    n === 1 ? problems.errors[0]! : `${n} problems in the manifests:\n  - ${problems.errors.join("\n  - ")}`,
  );
}

function readDocuments(file: ManifestFile, namespace: string, problems: Problems): RawDoc[] {
  const out: RawDoc[] = [];
  const parsed = file.documents
    ? file.documents.map((value) => ({ errors: [] as { message: string }[], toJS: () => value }))
    : parseAllDocuments(file.text, { prettyErrors: true, uniqueKeys: true });
  const documents = Array.isArray(parsed) ? parsed : [parsed];
  documents.forEach((document, i) => {
    const source = { file: file.file, document: i + 1 };
    if (document.errors.length > 0) {
      for (const e of document.errors) problems.at({ source }, "")(`invalid YAML: ${e.message.split("\n")[0]}`);
      return;
    }
    const value: unknown = document.toJS();
    if (value === null || value === undefined) return; // an empty document, e.g. a trailing ---
    if (typeof value !== "object" || Array.isArray(value)) {
      problems.at({ source }, "")("expected a Kubernetes object (a YAML mapping with apiVersion and kind)");
      return;
    }
    const body = value as Record<string, unknown>;
    const kind = body.kind;
    const apiVersion = body.apiVersion;
    if (typeof kind !== "string") {
      problems.at({ source }, "kind")("missing; expected one of " + Object.keys(API_VERSIONS).join(", "));
      return;
    }
    const accepted = API_VERSIONS[kind];
    if (!accepted) {
      problems.at({ source, kind }, "kind")(
        `unsupported kind "${kind}"; expected one of ${Object.keys(API_VERSIONS).join(", ")}`,
      );
      return;
    }
    const meta = metadataSchema.safeParse(body.metadata);
    const name = meta.success ? meta.data.name : undefined;
    if (!accepted.includes(String(apiVersion))) {
      problems.at({ source, kind, ...(name ? { name } : {}) }, "apiVersion")(
        `expected ${accepted.join(" or ")} for kind ${kind}, found ${JSON.stringify(apiVersion ?? null)}`,
      );
      return;
    }
    if (!meta.success) {
      problems.zod({ source, kind }, "metadata", meta.error);
      return;
    }
    const known = new Set(["apiVersion", "kind", "metadata", "spec", "status", "type", "data", "stringData", "immutable"]);
    for (const key of Object.keys(body)) {
      if (!known.has(key)) problems.at({ source, kind, name: meta.data.name }, key)("unknown field");
    }
    out.push({
      source,
      kind,
      body,
      metadata: {
        name: meta.data.name,
        namespace: meta.data.namespace ?? namespace,
        labels: meta.data.labels ?? {},
        annotations: meta.data.annotations ?? {},
        source,
      },
    });
  });
  return out;
}

/** The document's spec as `schema` reads it (a missing one as `absent`); undefined, with the problems noted, when it does not fit. */
function parseSpec<S extends z.ZodType>(doc: RawDoc, problems: Problems, schema: S, absent?: unknown): z.infer<S> | undefined {
  if (doc.body.spec === undefined) problems.at(ctx(doc), "spec")("missing");
  const parsed = schema.safeParse(doc.body.spec ?? absent);
  if (parsed.success) return parsed.data;
  problems.zod(ctx(doc), "spec", parsed.error);
  return undefined;
}

function ctx(doc: RawDoc) {
  return { source: doc.source, kind: doc.kind, name: doc.metadata.name };
}

function toPassword(doc: RawDoc, problems: Problems): Password | undefined {
  const parsed = parseSpec(doc, problems, passwordSpecSchema, {});
  if (!parsed) return undefined;
  const { length, symbolCharacters } = parsed;
  if (length !== undefined && length <= 0) {
    problems.warn(doc, "spec.length", `${length} means the default length, 24 (as in ESO); write 24 or leave it out`);
  }
  const multiByte = [...new Set(symbolCharacters ?? "")].filter((c) => c.codePointAt(0)! > 0x7f);
  if (multiByte.length > 0) {
    problems.warn(
      doc,
      "spec.symbolCharacters",
      `has multi-byte characters (${multiByte.join(" ")}): ESO's generator treats symbolCharacters as bytes, so under ESO ` +
        "it draws one byte of such a character and writes it as another character (é comes out as Ã or ©), and may insert " +
        "later characters inside one, leaving broken UTF-8; cnpg-rotator draws whole characters, so its passwords are not " +
        "what ESO would make. Use ASCII symbols to get the same alphabet under both",
    );
  }
  try {
    return { kind: "Password", metadata: doc.metadata, spec: resolvePasswordSpec(parsed) };
  } catch (e) {
    if (!(e instanceof GeneratorError)) throw e;
    const [field, ...rest] = e.message.split(": ");
    const isField = rest.length > 0 && /^[a-zA-Z[\]0-9]+$/.test(field!);
    problems.at(ctx(doc), isField ? `spec.${field}` : "spec")(isField ? rest.join(": ") : e.message);
    return undefined;
  }
}

function toExternalSecret(doc: RawDoc, passwords: readonly Password[], problems: Problems): ExternalSecret | undefined {
  const s = parseSpec(doc, problems, externalSecretSpecSchema);
  if (!s) return undefined;
  const fail = (path: string, message: string) => problems.at(ctx(doc), path)(message);

  const creationPolicy = s.target.creationPolicy ?? "Owner";
  if (creationPolicy !== "Merge" && creationPolicy !== "CreateOrMerge") {
    const why: Record<string, string> = {
      Owner:
        "Owner makes the ExternalSecret object own the Secret, and there is no ExternalSecret object in the cluster here",
      Orphan: "Orphan replaces the whole Secret with the rendered keys, which would drop the keys CNPG wrote",
      None: "None writes no Secret, so there is nothing to rotate",
    };
    fail(
      "spec.target.creationPolicy",
      `${creationPolicy} is not supported (${why[creationPolicy]}); use Merge (update an existing Secret, as the CNPG docs do) or CreateOrMerge (create it if missing)` +
        (s.target.creationPolicy === undefined ? " — ESO's default is Owner, so set it explicitly" : ""),
    );
  }
  if (s.target.immutable) fail("spec.target.immutable", "an immutable Secret cannot be rotated");
  if (s.target.deletionPolicy !== undefined && s.target.deletionPolicy !== "Retain") {
    problems.warn(doc, "spec.target.deletionPolicy", "has no effect: the rotator never deletes a target Secret");
  }
  if (s.secretStoreRef) {
    problems.warn(doc, "spec.secretStoreRef", "has no effect: values come from generators; stores are chosen by PushSecrets");
  }
  if (s.data && s.data.length > 0) {
    fail(
      "spec.data",
      "reading values from a SecretStore is not supported; generate them with dataFrom[].sourceRef.generatorRef (a Password)",
    );
  }
  const generators: Password[] = [];
  (s.dataFrom ?? []).forEach((item, i) => {
    const path = `spec.dataFrom[${i}]`;
    for (const field of ["extract", "find", "rewrite"] as const) {
      if (item[field] !== undefined) fail(`${path}.${field}`, "not supported; only sourceRef.generatorRef is");
    }
    if (item.sourceRef?.storeRef) fail(`${path}.sourceRef.storeRef`, "not supported; only generatorRef is");
    const ref = item.sourceRef?.generatorRef;
    if (!ref) {
      if (!item.sourceRef?.storeRef) fail(`${path}.sourceRef.generatorRef`, "missing; expected a Password generator");
      return;
    }
    if (ref.kind !== "Password") {
      fail(`${path}.sourceRef.generatorRef.kind`, `expected Password, found "${ref.kind}" (other generators are not supported)`);
      return;
    }
    if (ref.apiVersion !== PASSWORD_API) {
      fail(`${path}.sourceRef.generatorRef.apiVersion`, `expected ${PASSWORD_API}, found "${ref.apiVersion}"`);
      return;
    }
    const found = passwords.find((p) => p.metadata.name === ref.name && p.metadata.namespace === doc.metadata.namespace);
    if (!found) {
      fail(
        `${path}.sourceRef.generatorRef.name`,
        `no Password "${ref.name}" in namespace ${doc.metadata.namespace} among the manifests given`,
      );
      return;
    }
    generators.push(found);
  });
  if ((s.dataFrom ?? []).length === 0 && !(s.data && s.data.length > 0)) {
    fail("spec.dataFrom", "missing; expected a generatorRef to a Password generator");
  }

  const t = s.target.template;
  let template: ExternalSecret["target"]["template"];
  if (t) {
    if (t.engineVersion === "v1") fail("spec.target.template.engineVersion", 'v1 is not supported; use "v2" (the default)');
    if (t.templateFrom && t.templateFrom.length > 0) {
      fail("spec.target.template.templateFrom", "not supported; put the templates in template.data");
    }
    if (t.metadata?.finalizers && t.metadata.finalizers.length > 0) {
      fail("spec.target.template.metadata.finalizers", "not supported");
    }
    const data: Record<string, ParsedTemplate> = {};
    for (const [key, source] of Object.entries(t.data ?? {})) {
      try {
        data[key] = parseTemplate(source, key);
      } catch (e) {
        if (!(e instanceof TemplateError)) throw e;
        fail(`spec.target.template.data.${key}`, e.message);
      }
    }
    template = {
      ...(t.type !== undefined ? { type: t.type } : {}),
      labels: t.metadata?.labels ?? {},
      annotations: t.metadata?.annotations ?? {},
      ...(t.data ? { data } : {}),
      mergePolicy: t.mergePolicy ?? "Replace",
    };
  }

  const refreshInterval = s.refreshInterval ?? "1h"; // ESO's default
  const specHash = createHash("sha256")
    .update(JSON.stringify({ spec: s, generators: generators.map((g) => g.spec) }))
    .digest("hex")
    .slice(0, 16);
  return {
    kind: "ExternalSecret",
    metadata: doc.metadata,
    target: {
      name: s.target.name,
      creationPolicy: creationPolicy as SupportedCreationPolicy,
      ...(template ? { template } : {}),
    },
    refreshInterval,
    refreshIntervalMs: parseDuration(refreshInterval)!,
    refreshPolicy: s.refreshPolicy ?? "Periodic",
    generators,
    specHash,
  };
}

function toPushSecret(doc: RawDoc, stores: readonly SecretStore[], problems: Problems): PushSecret | undefined {
  const s = parseSpec(doc, problems, pushSecretSpecSchema);
  if (!s) return undefined;
  const fail = (path: string, message: string) => problems.at(ctx(doc), path)(message);
  if (s.template !== undefined) fail("spec.template", "not supported");
  if (s.updateStrategy !== undefined) fail("spec.updateStrategy", "not supported");
  if (s.selector.generatorRef) fail("spec.selector.generatorRef", "not supported; select a Secret");
  if (s.selector.secret?.selector !== undefined) fail("spec.selector.secret.selector", "not supported; name the Secret");
  const secretName = s.selector.secret?.name;
  if (!secretName) fail("spec.selector.secret.name", "missing; expected the name of the Secret to push");

  const resolved: SecretStore[] = [];
  s.secretStoreRefs.forEach((ref, i) => {
    const path = `spec.secretStoreRefs[${i}]`;
    if (ref.labelSelector !== undefined) fail(`${path}.labelSelector`, "not supported; name the store");
    if (!ref.name) {
      fail(`${path}.name`, "missing");
      return;
    }
    const kind = ref.kind ?? "SecretStore";
    const found = stores.find(
      (st) =>
        st.kind === kind &&
        st.metadata.name === ref.name &&
        (kind === "ClusterSecretStore" || st.metadata.namespace === doc.metadata.namespace),
    );
    if (!found) {
      fail(`${path}.name`, `no ${kind} "${ref.name}"${kind === "SecretStore" ? ` in namespace ${doc.metadata.namespace}` : ""} among the manifests given`);
      return;
    }
    resolved.push(found);
  });

  const data = (s.data ?? []).map((d, i) => {
    if (d.conversionStrategy === "ReverseUnicode") fail(`spec.data[${i}].conversionStrategy`, "ReverseUnicode is not supported");
    if (d.metadata !== undefined) problems.warn(doc, `spec.data[${i}].metadata`, "has no effect here");
    return {
      ...(d.match.secretKey !== undefined ? { secretKey: d.match.secretKey } : {}),
      remoteKey: d.match.remoteRef.remoteKey,
      ...(d.match.remoteRef.property !== undefined ? { property: d.match.remoteRef.property } : {}),
    };
  });
  if (data.length === 0) fail("spec.data", "missing; expected at least one match.remoteRef.remoteKey");

  const refreshInterval = s.refreshInterval ?? "1h";
  return {
    kind: "PushSecret",
    metadata: doc.metadata,
    secretName: secretName ?? "",
    stores: resolved,
    data,
    updatePolicy: s.updatePolicy ?? "Replace",
    deletionPolicy: s.deletionPolicy ?? "None",
    refreshInterval,
    refreshIntervalMs: parseDuration(refreshInterval)!,
  };
}

function toSecretStore(doc: RawDoc, problems: Problems): SecretStore | undefined {
  const spec = parseSpec(doc, problems, secretStoreSpecSchema);
  if (!spec) return undefined;
  const fail = (path: string, message: string) => problems.at(ctx(doc), path)(message);
  const names = Object.keys(spec.provider);
  if (names.length !== 1) {
    fail("spec.provider", `expected exactly one provider (one of ${PROVIDERS.join(", ")}), found ${names.length}`);
    return undefined;
  }
  const name = names[0]!;
  if (!(PROVIDERS as readonly string[]).includes(name)) {
    fail(`spec.provider.${name}`, `unsupported provider; expected one of ${PROVIDERS.join(", ")}`);
    return undefined;
  }
  const schema = providerSchemas[name as ProviderName];
  const config = schema.safeParse(spec.provider[name]);
  if (!config.success) {
    problems.zod(ctx(doc), `spec.provider.${name}`, config.error);
    return undefined;
  }
  if (name === "vault" && (config.data as { version?: string }).version === "v1") {
    fail("spec.provider.vault.version", 'KV v1 keeps no versions, so a rotation cannot stage safely; use "v2"');
    return undefined;
  }
  if (name === "aws" && (config.data as { service: string }).service !== "SecretsManager") {
    fail("spec.provider.aws.service", 'only "SecretsManager" is supported');
    return undefined;
  }
  return {
    kind: doc.kind as SecretStore["kind"],
    metadata: doc.metadata,
    provider: { name, config: config.data } as ProviderConfig,
  };
}

function toSecret(doc: RawDoc, problems: Problems): Secret | undefined {
  const parsed = secretSchema.safeParse(doc.body);
  if (!parsed.success) {
    problems.zod(ctx(doc), "", parsed.error);
    return undefined;
  }
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed.data.data ?? {})) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value.replace(/\s/g, ""))) {
      problems.at(ctx(doc), `data.${key}`)("expected base64");
      continue;
    }
    data[key] = Buffer.from(value, "base64").toString("utf8");
  }
  Object.assign(data, parsed.data.stringData ?? {});
  return {
    kind: "Secret",
    metadata: doc.metadata,
    ...(parsed.data.type !== undefined ? { type: parsed.data.type } : {}),
    data,
  };
}

function toKubernetesCluster(doc: RawDoc, problems: Problems): KubernetesCluster | undefined {
  const spec = parseSpec(doc, problems, kubernetesClusterSpecSchema);
  if (!spec) return undefined;
  return { kind: "KubernetesCluster", metadata: doc.metadata, spec };
}

/** Every cluster an ExternalSecret or PushSecret names is among the KubernetesClusters (or the default one). */
function checkClusterNames(docs: readonly RawDoc[], clusters: readonly KubernetesCluster[], problems: Problems): void {
  const known = new Set([DEFAULT_CLUSTER, ...clusters.map((c) => c.metadata.name)]);
  for (const d of docs) {
    const named =
      d.kind === "ExternalSecret" || d.kind === "PushSecret" ? d.metadata.annotations[KUBERNETES_CLUSTER_ANNOTATION] : undefined;
    if (named === undefined || known.has(named)) continue;
    problems.at(ctx(d), `metadata.annotations["${KUBERNETES_CLUSTER_ANNOTATION}"]`)(
      `no KubernetesCluster "${named}" among the manifests given; known: ${[...known].map((n) => `"${n}"`).join(", ")} ` +
        `("${DEFAULT_CLUSTER}" is the cluster the environment configures)`,
    );
  }
}

function checkUnique(docs: readonly RawDoc[], problems: Problems): void {
  const seen = new Map<string, RawDoc>();
  for (const d of docs) {
    const clusterScoped = d.kind === "ClusterSecretStore" || d.kind === "KubernetesCluster";
    const id = `${d.kind}/${clusterScoped ? "" : d.metadata.namespace}/${d.metadata.name}`;
    const first = seen.get(id);
    if (first) {
      problems.at(ctx(d), "metadata.name")(
        `duplicate ${d.kind} "${d.metadata.name}" (first in ${first.source.file} document ${first.source.document})`,
      );
    } else {
      seen.set(id, d);
    }
  }
}

/** AWS advises against writing a secret more often than about once per 10 minutes (version quota). */
function awsWriteRateWarnings(externalSecrets: readonly ExternalSecret[], pushSecrets: readonly PushSecret[]): string[] {
  const tenMinutes = 10 * 60_000;
  return externalSecrets.flatMap((es) => {
    if (es.refreshIntervalMs === 0 || es.refreshIntervalMs >= tenMinutes) return [];
    const aws = pushSecrets.filter(
      (p) =>
        p.metadata.namespace === es.metadata.namespace &&
        p.secretName === es.target.name &&
        p.stores.some((st) => st.provider.name === "aws"),
    );
    return aws.map(
      (p) =>
        `${es.metadata.source.file}: document ${es.metadata.source.document} (ExternalSecret/${es.metadata.name}): spec.refreshInterval: ` +
        `${es.refreshInterval} rotates more often than AWS advises for Secrets Manager (about one write per 10 minutes per secret), ` +
        `and PushSecret ${p.metadata.name} publishes to an aws store`,
    );
  });
}
