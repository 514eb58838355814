import { planRotations } from "../rotation/plan.ts";
import { flags, manifestOptions, readManifestFlags } from "./args.ts";

export const validateHelp = `Usage: cnpg-rotator validate -f manifests.yaml [-n NS] [--skip-clusters]

Loads and checks the manifests (YAML, kinds and fields, references between
them, generator limits, templates and their functions), then runs the checks
a rotation runs before it writes: each ExternalSecret's template rendered with
a generated sample password and every connection string read back, a store
to stage in, and a pushed key a rotation can resume from. Each KubernetesCluster
is then connected to as the fleet connects (its kubeconfigFrom, kubeconfigEnv or
server and identity), and asked whether that identity may list Secrets in each
of its namespaces with targets, as the planner does. Writes nothing.

  --skip-clusters   check the manifests only, connect to no cluster

Exit code 0 when rotate would accept the manifests, 2 with the problem when not,
1 when a cluster cannot be reached or its identity may not list the Secrets.
`;

export async function validateCommand(argv: string[], out: (line: string) => void): Promise<number> {
  const v = flags(argv, { ...manifestOptions, "skip-clusters": { type: "boolean" } }, validateHelp, out);
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
      ...(set.clusters.length > 0 ? [count(set.clusters.length, "KubernetesCluster")] : []),
    ].join(", ")}`,
  );
  if (set.clusters.length === 0 || v["skip-clusters"]) return 0;
  // Loaded on use: the cluster clients are not needed to check manifests alone.
  const [{ fleetFromEnvironment }, { probeClusters }, { silentLogger }] = await Promise.all([
    import("../fleet/fleet.ts"),
    import("../fleet/check.ts"),
    import("../log.ts"),
  ]);
  const fleet = fleetFromEnvironment({ manifestSet: set, log: silentLogger });
  let failed = false;
  try {
    for (const c of await probeClusters(fleet)) {
      if (c.error) out(`cluster ${c.cluster}: unreachable: ${c.error.type}: ${c.error.message}`);
      else if (c.missing.length > 0) out(`cluster ${c.cluster}: connected; may not: ${c.missing.join("; ")}`);
      else out(`cluster ${c.cluster}: connected; may list Secrets in its ${count(c.namespaces, "namespace")}`);
      if (c.error || c.missing.length > 0) failed = true;
    }
  } finally {
    await fleet.close();
  }
  return failed ? 1 : 0;
}
