import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
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
    for (const path of list) files.push({ file: path, text: readFileSync(path, "utf8") });
  }
  return loadManifests(files, options);
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
