import { type ParseArgsConfig, parseArgs } from "node:util";
import { InputError } from "../errors.ts";
import type { ManifestSet } from "../manifests/index.ts";
import { readManifests } from "../rotation/files.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** node:util parseArgs, with its errors turned into InputError (exit 2). */
export function parse<T extends Options>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { help: { type: "boolean", short: "h" }, ...options }, strict: true, allowPositionals: false });
  } catch (e) {
    throw new InputError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ""));
  }
}

export const manifestOptions = {
  filename: { type: "string", short: "f", multiple: true },
  namespace: { type: "string", short: "n" },
} as const satisfies Options;

/** Reads every -f (a file, a directory of *.yaml / *.yml, or - for stdin) and loads the manifests. */
export function readManifestFlags(filenames: readonly string[] | undefined, namespace?: string): ManifestSet {
  if (!filenames || filenames.length === 0) throw new InputError("missing -f: give the manifests file (-f manifests.yaml)");
  return readManifests(filenames, namespace ? { namespace } : {});
}

export function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw new InputError(`--${flag}: expected an integer, found "${value}"`);
  return Number(value);
}
