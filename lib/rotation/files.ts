import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { InputError } from "../errors.ts";
import { type LoadOptions, loadManifests, type ManifestFile, type ManifestSet } from "../manifests/index.ts";

/** Reads manifest files: each path a file, a directory of *.yaml / *.yml, or - for stdin. */
export function readManifests(paths: readonly string[], options: LoadOptions = {}): ManifestSet {
  const files: ManifestFile[] = [];
  for (const name of paths) {
    if (name === "-") {
      files.push({ file: "<stdin>", text: readFileSync(0, "utf8") });
      continue;
    }
    for (const path of manifestFiles(name)) {
      const text = readFileSync(path, "utf8");
      files.push(...(path.endsWith(".json") ? compiledFiles(text, path) : [{ file: path, text }]));
    }
  }
  return loadManifests(files, options);
}

// A compiled snapshot: the documents of every manifest file, parsed once at package time, so
// a cold start reads JSON (tens of milliseconds for 10,000 targets) instead of parsing YAML
// (seconds). Every check still runs on load: only the YAML parse is done ahead.
const SNAPSHOT_KEY = "cnpg-rotator/compiled-manifests";

/** One manifest file of a snapshot: its documents in order (a null where one was left out or empty). */
export interface CompiledFile {
  readonly file: string;
  readonly documents: readonly unknown[];
}

interface Snapshot {
  readonly [SNAPSHOT_KEY]: 1;
  readonly files: readonly CompiledFile[];
}

/** A snapshot of `files`, as readManifests reads it back. */
export function snapshotText(files: readonly CompiledFile[]): string {
  return JSON.stringify({ [SNAPSHOT_KEY]: 1, files } satisfies Snapshot);
}

function compiledFiles(text: string, path: string): ManifestFile[] {
  let snapshot: Partial<Snapshot>;
  try {
    snapshot = JSON.parse(text) as Partial<Snapshot>;
  } catch {
    throw new InputError(`${path}: not JSON; expected manifests compiled by compileManifests (or give *.yaml files)`);
  }
  if (snapshot[SNAPSHOT_KEY] !== 1 || !Array.isArray(snapshot.files)) {
    throw new InputError(`${path}: not a compiled manifest snapshot (no "${SNAPSHOT_KEY}": 1)`);
  }
  return snapshot.files.map((f) => ({ file: f.file, text: "", documents: f.documents }));
}

/**
 * The manifests under `paths`, checked (an InputError as readManifests gives), and the same as
 * one compiled snapshot (JSON text) that readManifests reads back identically. Each file is
 * parsed once; `nameOf` names it in the snapshot (and so in error messages).
 */
export function compileManifests(
  paths: readonly string[],
  options: LoadOptions = {},
  nameOf: (path: string) => string = (path) => path,
): { set: ManifestSet; snapshot: string; files: readonly CompiledFile[] } {
  const files: CompiledFile[] = [];
  const given: ManifestFile[] = [];
  for (const name of paths) {
    for (const path of manifestFiles(name)) {
      const text = readFileSync(path, "utf8");
      const docs = parseAllDocuments(text, { uniqueKeys: true });
      const all = Array.isArray(docs) ? docs : [docs];
      if (all.some((d) => d.errors.length > 0)) {
        given.push({ file: nameOf(path), text }); // the loader reports the YAML errors, with their positions
        continue;
      }
      const documents = all.map((d) => d.toJS() ?? null);
      files.push({ file: nameOf(path), documents });
      given.push({ file: nameOf(path), text, documents });
    }
  }
  const set = loadManifests(given, options);
  return { set, snapshot: snapshotText(files), files };
}

/**
 * The manifests a deployed function ships with: CNPG_ROTATOR_MANIFESTS (comma-separated
 * files or directories, default ./manifests; on AWS the compiled snapshot) and
 * CNPG_ROTATOR_NAMESPACE for documents that name no namespace. Reads files only; needs no cluster.
 */
export function manifestsFromEnvironment(
  env: NodeJS.ProcessEnv = process.env,
  override: { paths?: readonly string[]; namespace?: string } = {},
): ManifestSet {
  const paths = override.paths ?? (env.CNPG_ROTATOR_MANIFESTS ?? "manifests").split(",").filter(Boolean);
  const namespace = override.namespace ?? env.CNPG_ROTATOR_NAMESPACE;
  return readManifests(paths, namespace ? { namespace } : {});
}

/** The files a manifest path names: the file itself, or a directory's *.yaml in order (or its compiled all.json). */
function manifestFiles(name: string): string[] {
  let stat: ReturnType<typeof statSync>;
  try {
    stat = statSync(name);
  } catch {
    throw new InputError(`${name}: no such file or directory`);
  }
  if (!stat.isDirectory()) return [name];
  const list = readdirSync(name)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => join(name, f));
  // A directory of compiled parts (lib/fleet/compiled.ts) is read whole through its all.json.
  if (list.length === 0 && existsSync(join(name, "all.json"))) list.push(join(name, "all.json"));
  if (list.length === 0) throw new InputError(`${name}: no *.yaml files in this directory`);
  return list;
}
