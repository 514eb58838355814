import { type ParseArgsConfig, parseArgs } from "node:util";
import { InputError } from "../errors.ts";
import type { ManifestSet } from "../manifests/index.ts";
import { readManifests } from "../rotation/files.ts";

export type Options = NonNullable<ParseArgsConfig["options"]>;

/** node:util parseArgs, with its errors turned into InputError (exit 2). */
export function parse<T extends Options>(argv: string[], options: T) {
  const all = { help: { type: "boolean", short: "h" }, ...options } as const satisfies Options;
  try {
    return parseArgs({ args: attachValues(argv, all), options: all, strict: true, allowPositionals: false });
  } catch (e) {
    throw new InputError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ""));
  }
}

/** A command's flags; undefined when -h/--help asked for `help` instead, which is printed. */
export function flags<T extends Options>(argv: string[], options: T, help: string, out: (text: string) => void) {
  const { values } = parse(argv, options);
  if (!(values as { help?: boolean }).help) return values;
  out(help);
  return undefined;
}

/**
 * Joins each option that takes a value with the argument after it (`--flag VALUE` →
 * `--flag=VALUE`), so the value may start with "-" as in kubectl: parseArgs alone calls
 * `--symbol-characters '-_$@'` ambiguous. Unknown flags and a flag last on the line are
 * left for parseArgs to report.
 */
function attachValues(argv: readonly string[], options: Options): string[] {
  const byShort = new Map(Object.entries(options).flatMap(([name, o]) => (o.short ? [[o.short, name] as const] : [])));
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const name = /^--[^=]+$/.test(arg) ? arg.slice(2) : /^-[^-]$/.test(arg) ? byShort.get(arg[1]!) : undefined;
    if (name !== undefined && options[name]?.type === "string" && i + 1 < argv.length) {
      out.push(`--${name}=${argv[++i]}`);
    } else {
      out.push(arg);
    }
  }
  return out;
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
