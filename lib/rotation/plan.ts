// Which rotations a set of manifests asks for, and where each publishes.
// Pure: resolves references and refuses, before anything is written, a
// rotation that could not stage or could not be resumed after a crash.
import { BinaryKeyError, InputError } from "../errors.ts";
import {
  DEFAULT_CLUSTER,
  type ExternalSecret,
  KUBERNETES_CLUSTER_ANNOTATION,
  type ManifestSet,
  PROVIDERS,
  type PushSecret,
  type PushSecretData,
  type SecretStore,
} from "../manifests/index.ts";
import { renderTemplate } from "../template/index.ts";
import { generateValues, renderTarget } from "./render.ts";
import { type Strategy, strategyOf } from "./strategy.ts";

/** One remote secret a rotation stages into and promotes: a store and a remote key. */
export interface Publication {
  readonly store: SecretStore;
  readonly pushSecret: PushSecret;
  readonly remoteKey: string;
  /** The PushSecret data entries writing this remote key, applied in order. */
  readonly entries: readonly PushSecretData[];
}

export interface RotationTarget {
  readonly externalSecret: ExternalSecret;
  /** The KubernetesCluster the Secret lives in ("default": the one the environment configures). */
  readonly cluster: string;
  readonly namespace: string;
  readonly secretName: string;
  readonly publications: readonly Publication[];
  /** For each generated key, a Secret key holding it verbatim: how a resumed rotation finds its password again. */
  readonly recoveryKeys: Readonly<Record<string, string>>;
  /** One role (as ESO), or two CNPG managed roles taking turns behind this consumer Secret. */
  readonly strategy: Strategy;
}

/** `namespace/name` of a target Secret, as users write it in manual events. */
export function targetName(t: { namespace: string; secretName: string }): string {
  return `${t.namespace}/${t.secretName}`;
}

/** The cluster an ExternalSecret or PushSecret names (annotation cnpg-rotator.io/kubernetes-cluster), else the default. */
export function clusterOfManifest(m: { readonly metadata: { readonly annotations: Readonly<Record<string, string>> } }): string {
  return m.metadata.annotations[KUBERNETES_CLUSTER_ANNOTATION] ?? DEFAULT_CLUSTER;
}

/** The manifests of one cluster's targets: its ExternalSecrets and PushSecrets, and everything they share. */
export function clusterSubset(set: ManifestSet, cluster: string): ManifestSet {
  return {
    ...set,
    externalSecrets: set.externalSecrets.filter((es) => clusterOfManifest(es) === cluster),
    pushSecrets: set.pushSecrets.filter((ps) => clusterOfManifest(ps) === cluster),
  };
}

export function planRotations(set: ManifestSet): RotationTarget[] {
  const targets: RotationTarget[] = [];
  const seen = new Map<string, ExternalSecret>();
  const sampled = new Set<string>();
  // By cluster and Secret, so planning N targets costs N lookups, not N × N comparisons.
  const pushSecretsOf = new Map<string, PushSecret[]>();
  for (const p of set.pushSecrets) {
    const k = `${clusterOfManifest(p)}|${p.metadata.namespace}/${p.secretName}`;
    if (!pushSecretsOf.has(k)) pushSecretsOf.set(k, []);
    pushSecretsOf.get(k)!.push(p);
  }
  for (const es of set.externalSecrets) {
    const namespace = es.metadata.namespace;
    const secretName = es.target.name;
    const where = `ExternalSecret ${namespace}/${es.metadata.name}`;
    const id = `${namespace}/${secretName}`;
    // One Secret name in two clusters is two Secrets.
    const cluster = clusterOfManifest(es);
    const other = seen.get(`${cluster}|${id}`);
    if (other) {
      throw new InputError(
        `${where}: Secret ${id} is already the target of ExternalSecret ${namespace}/${other.metadata.name}; two rotations of one Secret would undo each other`,
      );
    }
    seen.set(`${cluster}|${id}`, es);

    const pushSecrets = pushSecretsOf.get(`${cluster}|${id}`) ?? [];
    if (pushSecrets.length === 0) {
      throw new InputError(
        `${where}: no store is selected for Secret ${id}, so there is nowhere to stage the new password before the Secret changes. ` +
          `Add a SecretStore (spec.provider.file for local runs; ${PROVIDERS.filter((p) => p !== "file").join(", ")}) and a PushSecret with ` +
          `spec.selector.secret.name: ${secretName} and spec.secretStoreRefs naming that store (see README, "Choosing the store").`,
      );
    }
    const publications = pushSecrets.flatMap(publicationsOf);
    const strategy = strategyOf(es);
    if (strategy.kind === "alternating") {
      for (const r of strategy.roles) {
        const other = set.externalSecrets.find(
          (o) =>
            o !== es &&
            o.metadata.namespace === namespace &&
            o.target.name === r.secretName &&
            clusterOfManifest(o) === cluster,
        );
        if (other) {
          throw new InputError(
            `${where}: role ${r.role}'s passwordSecret ${namespace}/${r.secretName} is the target of ExternalSecret ${namespace}/${other.metadata.name} too; only the alternating rotation may write it`,
          );
        }
      }
    }
    // The render and read-back checks of a real rotation, on a sample: a template that would
    // refuse every password (a missing key, a password in a URI's user) fails here, with its
    // own reason, before any run takes a Lease — and `validate` runs the same checks.
    // Once per template and generators: a thousand targets of one template are one check.
    const user = strategy.kind === "alternating" ? strategy.roles[0].role : undefined;
    const sample = JSON.stringify([es.target.template ?? null, es.generators.map((g) => g.spec), user ?? null]);
    if (!sampled.has(sample)) {
      renderTarget(es, generateValues(es), undefined, user !== undefined ? { user } : {});
      sampled.add(sample);
    }
    targets.push({
      externalSecret: es,
      cluster,
      namespace,
      secretName,
      publications,
      recoveryKeys: recoveryKeys(es, publications, where),
      strategy,
    });
  }
  return targets;
}

/** The remote secrets one PushSecret writes: each store × each remote key, with its data entries in order. */
export function publicationsOf(pushSecret: PushSecret): Publication[] {
  const { namespace } = pushSecret.metadata;
  const byKey = new Map<string, PushSecretData[]>();
  for (const entry of pushSecret.data) {
    if (entry.secretKey === undefined && entry.property !== undefined) {
      throw new InputError(
        `PushSecret ${namespace}/${pushSecret.metadata.name}: remoteRef.property needs match.secretKey (a whole Secret is pushed as one JSON object)`,
      );
    }
    byKey.set(entry.remoteKey, [...(byKey.get(entry.remoteKey) ?? []), entry]);
  }
  return pushSecret.stores.flatMap((store) =>
    [...byKey].map(([remoteKey, entries]) => ({ store, pushSecret, remoteKey, entries })),
  );
}

/**
 * For each key the generators produce, a Secret key whose template writes it
 * unchanged and that some publication carries. A rotation interrupted after
 * staging reads its password back from there, so it resumes with the same one.
 */
function recoveryKeys(es: ExternalSecret, publications: readonly Publication[], where: string): Record<string, string> {
  const generated = [...new Set(es.generators.flatMap((g) => g.spec.secretKeys))];
  const probe = Object.fromEntries(generated.map((k, i) => [k, `probe-${i}-${k}`]));
  const template = es.target.template;
  const identity = (secretKey: string): string | undefined => {
    const parsed = template?.data?.[secretKey];
    if (!parsed) {
      const passthrough = !template?.data || template.mergePolicy === "Merge";
      return passthrough && secretKey in probe ? secretKey : undefined;
    }
    let out: string;
    try {
      out = renderTemplate(parsed, probe);
    } catch {
      return undefined;
    }
    return generated.find((k) => probe[k] === out);
  };
  const pushed = (secretKey: string) =>
    publications.some((p) => p.entries.some((e) => e.secretKey === undefined || e.secretKey === secretKey));
  const candidates = [...Object.keys(template?.data ?? {}), ...generated];
  const result: Record<string, string> = {};
  for (const k of generated) {
    const key = candidates.find((c) => identity(c) === k && pushed(c));
    if (!key) {
      throw new InputError(
        `${where}: no store receives the generated "${k}" unchanged, so a rotation interrupted midway could not resume with the same password. ` +
          `Push the whole Secret (a PushSecret data entry without secretKey) or a key whose template is "{{ .${k} }}".`,
      );
    }
    result[k] = key;
  }
  return result;
}

/**
 * The remote value of one publication, given the Secret's data after the merge and the remote's
 * current value. `binaryKeys` are the Secret keys whose bytes are not UTF-8 text (SecretObject):
 * copying one is refused with a BinaryKeyError, never done with U+FFFD in place of its bytes.
 */
export function remoteValue(
  publication: Publication,
  secretData: Readonly<Record<string, string>>,
  currentRemote: string | undefined,
  binaryKeys: readonly string[] = [],
): string {
  const copied = publication.entries.flatMap((e) =>
    e.secretKey === undefined ? Object.keys(secretData) : e.secretKey in secretData ? [e.secretKey] : [],
  );
  const binary = [...new Set(copied.filter((k) => binaryKeys.includes(k)))];
  if (binary.length > 0) {
    const { namespace, name } = publication.pushSecret.metadata;
    throw new BinaryKeyError(
      `PushSecret ${namespace}/${name}: Secret key${binary.length > 1 ? "s" : ""} ${binary.map((k) => `"${k}"`).join(", ")} ` +
        `hold${binary.length > 1 ? "" : "s"} bytes that are not UTF-8 text, and a store value is text (a whole-Secret push ` +
        `stores a JSON object of text values), so ${publication.remoteKey} would get U+FFFD in place of those bytes. ` +
        "Nothing was pushed: push the keys you need with match.secretKey, leaving these out, or keep such a value base64-encoded in the Secret",
      binary,
    );
  }
  let value: string | undefined = currentRemote;
  for (const entry of publication.entries) {
    if (entry.secretKey === undefined) {
      value = wholeSecretJson(secretData);
      continue;
    }
    const v = secretData[entry.secretKey];
    if (v === undefined) {
      throw new InputError(
        `PushSecret ${publication.pushSecret.metadata.namespace}/${publication.pushSecret.metadata.name}: the Secret has no key "${entry.secretKey}"`,
      );
    }
    if (entry.property === undefined) {
      value = v;
      continue;
    }
    let object: Record<string, unknown> = {};
    if (value !== undefined && value !== "") {
      try {
        const parsed: unknown = JSON.parse(value);
        if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) object = parsed as Record<string, unknown>;
        else throw new Error("not an object");
      } catch {
        throw new InputError(
          `PushSecret ${publication.pushSecret.metadata.name}: remote key ${publication.remoteKey} does not hold a JSON object, so property "${entry.property}" cannot be set`,
        );
      }
    }
    // Keys sorted, as Go's encoding/json writes a map (and as Vault's KV fields round-trip).
    const merged: Record<string, unknown> = { ...object, [entry.property]: v };
    value = JSON.stringify(Object.fromEntries(Object.keys(merged).sort().map((k) => [k, merged[k]])));
  }
  return value ?? "";
}

/** A whole Secret as one JSON object, keys sorted like Go's encoding/json writes a map. */
export function wholeSecretJson(data: Readonly<Record<string, string>>): string {
  const sorted: Record<string, string> = {};
  for (const key of Object.keys(data).sort()) sorted[key] = data[key]!;
  return JSON.stringify(sorted);
}

/** The Secret keys a publication's remote value carries, read back from a staged value. */
export function readRemoteValue(publication: Publication, value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of publication.entries) {
    if (entry.secretKey === undefined) {
      Object.assign(out, parseObject(value));
    } else if (entry.property === undefined) {
      out[entry.secretKey] = value;
    } else {
      const field = parseObject(value)[entry.property];
      if (typeof field === "string") out[entry.secretKey] = field;
    }
  }
  return out;
}

function parseObject(value: string): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(value);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) {
      return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === "string")) as Record<string, string>;
    }
  } catch {
    // not JSON: nothing to read back
  }
  return {};
}

