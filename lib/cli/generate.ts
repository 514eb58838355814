import { InputError } from "../errors.ts";
import { generate, type ResolvedPasswordSpec, resolvePasswordSpec } from "../generator/index.ts";
import { flags, integer, manifestOptions, type Options, readManifestFlags } from "./args.ts";

export const generateHelp = `Usage: cnpg-rotator generate [flags]
       cnpg-rotator generate -f manifests.yaml --name NAME [--count N]

Prints passwords made the way an ESO Password generator makes them, one per
line on stdout (this is the only command that ever prints a password).
With several secretKeys, each line is KEY=PASSWORD.

Flags (named after the Password spec; omitted ones take ESO's defaults):
  --length N              length (default 24; <= 0 means 24)
  --digits N              digits (default length/4)
  --symbols N             symbols (default length/4)
  --symbol-characters S   symbol set (default ~!@#$%^&*()_+\`-={}|[]\\:"<>?,./);
                          a value may start with "-", e.g. '-_$@'
  --no-upper              no upper-case letters
  --allow-repeat          allow a character more than once
  --encoding E            raw | base64 | base64url | base32 | hex
  --secret-keys K1,K2     keys, one password each (default password)
  -f, --filename FILE     read a Password manifest instead of the flags
  --name NAME             which Password of the file (needed if it has several)
  -n, --namespace NS      namespace of manifests that name none (default "default")
  --count N               how many passwords (default 1)
`;

const generateOptions = {
  ...manifestOptions,
  name: { type: "string" },
  length: { type: "string" },
  digits: { type: "string" },
  symbols: { type: "string" },
  "symbol-characters": { type: "string" },
  "no-upper": { type: "boolean" },
  "allow-repeat": { type: "boolean" },
  encoding: { type: "string" },
  "secret-keys": { type: "string" },
  count: { type: "string" },
} as const satisfies Options;

export function generateCommand(argv: string[], out: (line: string) => void): number {
  const v = flags(argv, generateOptions, generateHelp, out);
  if (!v) return 0;
  let spec: ResolvedPasswordSpec;
  if (v.filename) {
    const specFlags = ["length", "digits", "symbols", "symbol-characters", "no-upper", "allow-repeat", "encoding", "secret-keys"];
    const clash = specFlags.filter((f) => v[f as keyof typeof v] !== undefined);
    if (clash.length > 0) throw new InputError(`--${clash[0]}: give either -f or the spec flags, not both`);
    const set = readManifestFlags(v.filename, v.namespace);
    const candidates = set.passwords.filter((p) => v.name === undefined || p.metadata.name === v.name);
    if (candidates.length === 0) {
      throw new InputError(
        v.name ? `--name ${v.name}: no Password of that name in the manifests` : "no Password generator in the manifests",
      );
    }
    if (candidates.length > 1) {
      throw new InputError(`several Passwords in the manifests (${candidates.map((p) => p.metadata.name).join(", ")}); choose one with --name`);
    }
    spec = candidates[0]!.spec;
  } else {
    if (v.name) throw new InputError("--name needs -f manifests.yaml");
    spec = resolvePasswordSpec({
      ...(v.length !== undefined ? { length: integer("length", v.length)! } : {}),
      ...(v.digits !== undefined ? { digits: integer("digits", v.digits)! } : {}),
      ...(v.symbols !== undefined ? { symbols: integer("symbols", v.symbols)! } : {}),
      ...(v["symbol-characters"] !== undefined ? { symbolCharacters: v["symbol-characters"] } : {}),
      ...(v["no-upper"] ? { noUpper: true } : {}),
      ...(v["allow-repeat"] ? { allowRepeat: true } : {}),
      ...(v.encoding !== undefined ? { encoding: v.encoding } : {}),
      ...(v["secret-keys"] !== undefined ? { secretKeys: v["secret-keys"].split(",") } : {}),
    });
  }
  const count = integer("count", v.count) ?? 1;
  if (count < 1) throw new InputError(`--count: expected at least 1, found ${count}`);
  const lines: string[] = [];
  for (let i = 0; i < count; i++) {
    const values = generate(spec);
    const keys = Object.keys(values);
    for (const key of keys) lines.push(keys.length === 1 ? values[key]! : `${key}=${values[key]}`);
  }
  out(lines.join("\n"));
  return 0;
}
