import { readdirSync, readFileSync, statSync } from "node:fs";
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
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(name);
    } catch {
      throw new InputError(`${name}: no such file or directory`);
    }
    const list = stat.isDirectory()
      ? readdirSync(name)
          .filter((f) => /\.ya?ml$/.test(f))
          .sort()
          .map((f) => join(name, f))
      : [name];
    if (list.length === 0) throw new InputError(`${name}: no *.yaml files in this directory`);
    for (const path of list) {
      const text = readFileSync(path, "utf8");
      files.push(...(path.endsWith(".json") && !stat.isDirectory() ? compiledFiles(text, path) : [{ file: path, text }]));
    }
  }
  return loadManifests(files, options);
}

// A compiled snapshot: the documents of every manifest file, parsed once at package time, so
// a cold start reads JSON (tens of milliseconds for 10,000 targets) instead of parsing YAML
// (seconds). Every check still runs on load: only the YAML parse is done ahead.
const SNAPSHOT_KEY = "cnpg-rotator/compiled-manifests";

interface Snapshot {
  readonly [SNAPSHOT_KEY]: 1;
  readonly files: readonly { readonly file: string; readonly documents: readonly unknown[] }[];
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
 * The manifests under `paths`, checked (an InputError as readManifests gives), as one compiled
 * snapshot (JSON text) that readManifests reads back identically; file names stay as given.
 */
export function compileManifests(
  paths: readonly string[],
  options: LoadOptions = {},
  /** The name a file gets in the snapshot (and so in error messages); default: its path. */
  nameOf: (path: string) => string = (path) => path,
): string {
  readManifests(paths, options);
  const files: { file: string; documents: unknown[] }[] = [];
  for (const name of paths) {
    const list = statSync(name).isDirectory()
      ? readdirSync(name)
          .filter((f) => /\.ya?ml$/.test(f))
          .sort()
          .map((f) => join(name, f))
      : [name];
    for (const path of list) {
      const docs = parseAllDocuments(readFileSync(path, "utf8"), { uniqueKeys: true });
      files.push({ file: nameOf(path), documents: (Array.isArray(docs) ? docs : [docs]).map((d) => d.toJS() ?? null) });
    }
  }
  return JSON.stringify({ [SNAPSHOT_KEY]: 1, files } satisfies Snapshot);
}


/**
 * The manifests a deployed function ships with: CNPG_ROTATOR_MANIFESTS (comma-separated
 * files or directories, default ./manifests) and CNPG_ROTATOR_NAMESPACE for documents
 * that name no namespace. Reads files only; needs no cluster.
 */
export function manifestsFromEnvironment(
  env: NodeJS.ProcessEnv = process.env,
  override: { paths?: readonly string[]; namespace?: string } = {},
): ManifestSet {
  const paths = override.paths ?? (env.CNPG_ROTATOR_MANIFESTS ?? "manifests").split(",").filter(Boolean);
  const namespace = override.namespace ?? env.CNPG_ROTATOR_NAMESPACE;
  return readManifests(paths, namespace ? { namespace } : {});
}
