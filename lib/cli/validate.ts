import { manifestOptions, parse, readManifestFlags } from "./args.ts";

export const validateHelp = `Usage: cnpg-rotator validate -f manifests.yaml [-n NS]

Loads and checks the manifests (YAML, kinds and fields, references between
them, generator limits, templates and their functions) without writing
anything. Exit code 0 when valid, 2 with every problem listed when not.
`;

export function validateCommand(argv: string[], out: (line: string) => void): number {
  const { values: v } = parse(argv, manifestOptions);
  if (v.help) {
    out(validateHelp);
    return 0;
  }
  const set = readManifestFlags(v.filename, v.namespace);
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
