// Pure conversions between the API's Secret and ours, and the merge patch of one change.
import { isUtf8 } from "node:buffer";
import type { V1Secret } from "@kubernetes/client-node/dist/gen/models/V1Secret.js";
import type { SecretChange, SecretObject } from "./types.ts";

export function toSecretObject(s: V1Secret, namespace: string, name: string): SecretObject {
  const data: Record<string, string> = {};
  const binaryKeys: string[] = [];
  for (const [k, v] of Object.entries(s.data ?? {})) {
    const bytes = Buffer.from(v, "base64");
    if (!isUtf8(bytes)) binaryKeys.push(k);
    data[k] = bytes.toString("utf8");
  }
  return {
    name: s.metadata?.name ?? name,
    namespace: s.metadata?.namespace ?? namespace,
    uid: s.metadata?.uid ?? "",
    resourceVersion: s.metadata?.resourceVersion ?? "",
    type: s.type ?? "Opaque",
    labels: { ...s.metadata?.labels },
    annotations: { ...s.metadata?.annotations },
    data,
    binaryKeys,
  };
}

export function encodeData(data: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(data)) out[k] = Buffer.from(v, "utf8").toString("base64");
  return out;
}

/** A JSON merge patch (RFC 7396) for a Secret. */
export interface SecretMergePatch {
  metadata: {
    resourceVersion: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string | null>;
  };
  data?: Record<string, string>;
}

/**
 * The merge patch that applies `change` to `current`, holding only what differs
 * (compared on the stored base64, so binary keys are never touched), or undefined when
 * nothing differs. Carries the resourceVersion read, so the server refuses it with 409
 * if anyone wrote the Secret since.
 */
export function mergePatchFor(current: V1Secret, change: SecretChange): SecretMergePatch | undefined {
  const meta = current.metadata ?? {};
  const data = differing(current.data, change.data ? encodeData(change.data) : undefined);
  const labels = differing(meta.labels, change.labels);
  const annotations = differing(meta.annotations, change.annotations);
  if (!data && !labels && !annotations) return undefined;
  return {
    metadata: {
      resourceVersion: meta.resourceVersion ?? "",
      ...(labels ? { labels } : {}),
      ...(annotations ? { annotations } : {}),
    },
    ...(data ? { data } : {}),
  };
}

/** The entries of `wanted` that change `have`; a null removes a present key. */
function differing<V extends string | null>(
  have: Record<string, string> | undefined,
  wanted: Record<string, V> | undefined,
): Record<string, V> | undefined {
  if (!wanted) return undefined;
  const out: Record<string, V> = {};
  let any = false;
  for (const [k, v] of Object.entries(wanted)) {
    const present = have !== undefined && Object.hasOwn(have, k);
    if (v === null ? present : !present || have[k] !== v) {
      out[k] = v;
      any = true;
    }
  }
  return any ? out : undefined;
}

/** The Secret a `create` would start from: what change() sees when CreateOrMerge finds nothing. */
export function emptySecret(
  namespace: string,
  name: string,
  type: string,
  labels: Record<string, string> = {},
): SecretObject {
  return { name, namespace, uid: "", resourceVersion: "", type, labels: { ...labels }, annotations: {}, data: {}, binaryKeys: [] };
}

/** The annotations of a change as a new object carries them (removals dropped). */
export function presentAnnotations(a: Record<string, string | null> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(a ?? {})) if (v !== null) out[k] = v;
  return out;
}
