// A fleet's manifests, compiled at package time into one file per target: the consumer of a
// message reads only that target's documents (its ExternalSecret, PushSecrets, Passwords and
// SecretStores) and the fleet's shared ones (KubernetesClusters, Secrets), so its cold start
// and memory stay the same whatever the number of targets. The planner reads plan.json: per
// target only its cluster, name and due rule. all.json holds every document (a compiled
// directory read whole: the CLI, push). Each part is a snapshot readManifests reads (lib/rotation/files.ts); a part
// keeps its documents' numbers, so an error names the same file and document as the YAML.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { InputError } from "../errors.ts";
import type { ManifestSet, Source } from "../manifests/index.ts";
import { type CompiledFile, readManifests, snapshotText } from "../rotation/files.ts";
import { type DueRule, dueRule } from "../rotation/names.ts";
import { planRotations, targetName } from "../rotation/plan.ts";

export const ALL = "all.json";
export const SHARED = "shared.json";
export const PLAN = "plan.json";

/** What the planner knows of a target: where it is and when it is due. */
export interface PlannedTarget {
  readonly cluster: string;
  /** `namespace/name` of the target Secret. */
  readonly target: string;
  readonly rule: DueRule;
}

export function plannedTarget(t: ReturnType<typeof planRotations>[number]): PlannedTarget {
  return { cluster: t.cluster, target: targetName(t), rule: dueRule(t.externalSecret) };
}

/** The planner's part of a compiled directory. */
export function readPlannedTargets(dir: string): PlannedTarget[] {
  const path = join(dir, PLAN);
  let parsed: { targets?: unknown };
  try {
    parsed = JSON.parse(readFileSync(path, "utf8")) as { targets?: unknown };
  } catch (error) {
    if (error instanceof SyntaxError) throw new InputError(`${path} is not JSON (${error.message}); recompile the manifests`);
    throw error;
  }
  if (!Array.isArray(parsed?.targets)) throw new InputError(`${path}: expected the compiled { targets: [...] } of serverless/derive.cjs; recompile the manifests`);
  return parsed.targets as PlannedTarget[];
}

/** The part holding one target, by a hash of its cluster and name (no index to load). */
export function targetPart(cluster: string, target: string): string {
  return `targets/${createHash("sha256").update(`${cluster}|${target}`).digest("hex").slice(0, 24)}.json`;
}

/** Every part of the compiled manifests (relative path → snapshot text), from the checked `set` and the snapshot's files. */
export function splitCompiled(set: ManifestSet, files: readonly CompiledFile[]): Map<string, string> {
  const byName = new Map(files.map((f) => [f.file, f]));
  const part = (sources: readonly Source[]) => {
    const picked = new Map<string, unknown[]>();
    for (const { file, document } of sources) {
      const from = byName.get(file);
      if (!from) continue;
      const docs = picked.get(file) ?? [];
      while (docs.length < document) docs.push(null);
      docs[document - 1] = from.documents[document - 1];
      picked.set(file, docs);
    }
    return snapshotText([...picked].map(([file, documents]) => ({ file, documents })));
  };
  const shared = [...set.clusters, ...set.secrets].map((m) => m.metadata.source);
  const parts = new Map<string, string>([
    [ALL, snapshotText(files)],
    [SHARED, part(shared)],
  ]);
  const targets = planRotations(set);
  parts.set(PLAN, JSON.stringify({ targets: targets.map(plannedTarget) }));
  for (const t of targets) {
    const es = t.externalSecret;
    const pushes = [...new Set(t.publications.map((p) => p.pushSecret))];
    const sources = [
      ...shared,
      es.metadata.source,
      ...es.generators.map((g) => g.metadata.source),
      ...pushes.map((p) => p.metadata.source),
      ...pushes.flatMap((p) => p.stores.map((s) => s.metadata.source)),
    ];
    parts.set(targetPart(t.cluster, targetName(t)), part(sources));
  }
  return parts;
}

/** Whether `dir` holds compiled parts (a deployed function's CNPG_ROTATOR_MANIFESTS). */
export function isCompiledDir(dir: string): boolean {
  return existsSync(join(dir, SHARED)) && existsSync(join(dir, PLAN));
}

/** The manifests of one target (and the shared ones), or undefined when no part names it. */
export function readTargetPart(dir: string, cluster: string, target: string, namespace?: string): ManifestSet | undefined {
  const path = join(dir, targetPart(cluster, target));
  if (!existsSync(path)) return undefined;
  return readManifests([path], namespace ? { namespace } : {});
}

/** The namespace of a `namespace/name` target. */
export function namespaceOf(target: string): string {
  return target.slice(0, target.indexOf("/"));
}
