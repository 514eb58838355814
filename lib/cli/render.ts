import { maskSecret } from "../cnpg/index.ts";
import { formatDuration } from "../manifests/index.ts";
import { generateValues, renderTarget } from "../rotation/render.ts";
import { flags, manifestOptions, readManifestFlags } from "./args.ts";

export const renderHelp = `Usage: cnpg-rotator render -f manifests.yaml [-n NS]

Shows, for each ExternalSecret, the keys a rotation would write into its
target Secret, with a freshly generated password masked: every place the
password lands (also percent- or backslash-encoded inside connection strings)
reads ********. Nothing is written anywhere.
`;

const MASK = "********";

export function renderCommand(argv: string[], out: (line: string) => void): number {
  const v = flags(argv, manifestOptions, renderHelp, out);
  if (!v) return 0;
  const set = readManifestFlags(v.filename, v.namespace);
  const lines: string[] = [];
  for (const es of set.externalSecrets) {
    const values = generateValues(es);
    const rendered = renderTarget(es, values);
    const secrets = Object.values(values);
    const mask = (s: string) => secrets.reduce((acc, p) => maskSecret(acc, p), s);
    const every = es.refreshIntervalMs === 0 ? "once" : `every ${formatDuration(es.refreshIntervalMs)}`;
    lines.push(
      `ExternalSecret ${es.metadata.namespace}/${es.metadata.name} -> Secret ${es.target.name} (${es.target.creationPolicy}, ${every}, ${es.refreshPolicy})`,
    );
    for (const [k, val] of Object.entries(rendered.labels)) lines.push(`  label ${k}: ${val}`);
    for (const [k, val] of Object.entries(rendered.annotations)) lines.push(`  annotation ${k}: ${val}`);
    for (const [key, value] of Object.entries(rendered.data)) {
      const shown = mask(value);
      lines.push(`  ${key}: ${shown === value && secrets.includes(value) ? MASK : shown}`);
    }
    lines.push("  (uri, jdbc-uri, fqdn-uri, fqdn-jdbc-uri and pgpass are also rewritten when the Secret has them)");
  }
  if (set.externalSecrets.length === 0) lines.push("no ExternalSecret in the manifests");
  for (const w of set.warnings) lines.push(`warning: ${w}`);
  out(lines.join("\n"));
  return 0;
}
