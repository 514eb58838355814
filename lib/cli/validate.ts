import { planRotations } from "../rotation/plan.ts";
import { flags, manifestOptions, readManifestFlags } from "./args.ts";

export const validateHelp = `Usage: cnpg-rotator validate -f manifests.yaml [-n NS]

Loads and checks the manifests (YAML, kinds and fields, references between
them, generator limits, templates and their functions), then runs the checks
a rotation runs before it writes: each ExternalSecret's template rendered with
a generated sample password and every connection string read back, a store
to stage in, and a pushed key a rotation can resume from. Writes nothing.
Exit code 0 when rotate would accept the manifests, 2 with the problem when not.
`;

export function validateCommand(argv: string[], out: (line: string) => void): number {
  const v = flags(argv, manifestOptions, validateHelp, out);
  if (!v) return 0;
  const set = readManifestFlags(v.filename, v.namespace);
  planRotations(set);
  const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  for (const w of set.warnings) out(`warning: ${w}`);
  out(
    `valid: ${[
      count(set.passwords.length, "Password"),
      count(set.externalSecrets.length, "ExternalSecret"),
      count(set.pushSecrets.length, "PushSecret"),
      count(set.secretStores.length, "SecretStore"),
      count(set.secrets.length, "Secret"),
    ].join(", ")}`,
  );
  return 0;
}
