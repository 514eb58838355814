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

