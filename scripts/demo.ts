// npm run demo [-- --show]: the seed's first example, end to end, on this machine.
// Starts a local kube-apiserver, creates cluster-example-app as CNPG would, runs the
// shipped manifests (manifests/) through the AWS Lambda handler with the file store,
// and shows the Secret before and after the way the seed's kubectl check does.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildAppSecretData } from "../lib/cnpg/index.ts";
import { connectCluster } from "../lib/kubernetes/index.ts";
import { fingerprint } from "../lib/rotation/render.ts";
import { ensureBinaries, startEtcd, startKubeApiserver, writeKubeconfig } from "../test/infra/servers.ts";

const ROOT = join(import.meta.dirname, "..");
const show = process.argv.includes("--show");
const SECRET = "cluster-example-app";
const say = (line = "") => process.stdout.write(`${line}\n`);
const mask = (p: string) => (show ? p : "*".repeat(p.length));

async function main(): Promise<void> {
  say("cnpg-rotator demo: the CNPG docs' External Secrets example, run by a serverless function\n");
  say("[1/4] local Kubernetes API (kube-apiserver + etcd, built once from the Go module proxy)");
  await ensureBinaries();
  const dir = mkdtempSync(join(tmpdir(), "cnpg-rotator-demo-"));
  const etcd = await startEtcd(dir);
  const api = await startKubeApiserver(dir, etcd.endpoint);
  try {
    const kubeconfig = await writeKubeconfig(
      { server: api.server, caPem: api.caPem, tmpDir: dir },
      { user: "admin", token: api.tokens.admin },
    );
    say(`      ${api.server} (TLS verified against its CA, RBAC on)`);
    const kubectl = (...args: string[]) => execFileSync("kubectl", ["--kubeconfig", kubeconfig, ...args], { encoding: "utf8" });
    const kube = connectCluster({ kubeconfigPath: kubeconfig });

    say(`\n[2/4] Secret default/${SECRET} as CNPG creates it`);
    await kube.createSecret("default", SECRET, {
      type: "kubernetes.io/basic-auth",
      data: buildAppSecretData({
        clusterName: "cluster-example",
        namespace: "default",
        username: "app",
        dbname: "app",
        password: execFileSync("openssl", ["rand", "-hex", "32"], { encoding: "utf8" }).trim(),
      }),
      labels: { "cnpg.io/cluster": "cluster-example", "cnpg.io/userType": "app" },
    });
    const before = (await kube.readSecret("default", SECRET))!;
    say(`      ${Object.keys(before.data).length} keys: ${Object.keys(before.data).sort().join(", ")}`);

    // The shipped manifests, with the file store moved into this run's temp dir.
    const manifests = join(dir, "manifests");
    execFileSync("mkdir", ["-p", manifests]);
    const storePath = join(dir, "store.json");
    for (const f of readdirSync(join(ROOT, "manifests")).filter((n) => n.endsWith(".yaml"))) {
      const text = readFileSync(join(ROOT, "manifests", f), "utf8").replace(/path: \/tmp\/cnpg-rotator\/store\.json/, `path: ${storePath}`);
      writeFileSync(join(manifests, f), text);
    }
    Object.assign(process.env, {
      CNPG_ROTATOR_MANIFESTS: manifests,
      CNPG_ROTATOR_KUBECONFIG: readFileSync(kubeconfig, "utf8"),
      CNPG_ROTATOR_LOG_LEVEL: process.env.CNPG_ROTATOR_LOG_LEVEL ?? "warn",
    });

    say("\n[3/4] invoke the rotate function (functions/aws/rotate.ts) with a scheduled event");
    say("      manifests/: Password + ExternalSecret from the CNPG docs, SecretStore (file), PushSecret");
    const { handler } = await import("../functions/aws/rotate.ts");
    const event = JSON.parse(readFileSync(join(ROOT, "events/scheduled.json"), "utf8"));
    const first = await handler({ ...event, time: new Date().toISOString() });
    say(`      -> ${JSON.stringify(first.results.map(({ outcome, rotationId, fingerprint }) => ({ outcome, rotationId, fingerprint })))}`);
    if (!first.ok) throw new Error(`rotation failed: ${JSON.stringify(first)}`);

    say("\n[4/4] the docs' own check, before and after" + (show ? "" : " (masked; --show to print)"));
    const after = (await kube.readSecret("default", SECRET))!;
    const viaKubectl = Buffer.from(kubectl("get", "secret", SECRET, "-o", "jsonpath={.data.password}"), "base64").toString("utf8");
    say(`      $ kubectl get secret ${SECRET} -o jsonpath="{.data.password}" | base64 -d`);
    say(`      before: ${mask(before.data.password!)}  ${fingerprint(before.data.password!)}`);
    say(`      after:  ${mask(viaKubectl)}  ${fingerprint(viaKubectl)}`);
    say(`      label cnpg.io/reload: ${before.labels["cnpg.io/reload"] ?? "(absent)"} -> ${kubectl("get", "secret", SECRET, "-o", "jsonpath={.metadata.labels.cnpg\\.io/reload}")}`);
    const changed = Object.keys(after.data).filter((k) => after.data[k] !== before.data[k]);
    const same = Object.keys(after.data).filter((k) => after.data[k] === before.data[k]);
    say(`      changed keys:   ${changed.join(", ")}`);
    say(`      unchanged keys: ${same.join(", ")} (and the type, ${after.type})`);
    const uri = new URL(after.data.uri!);
    say(`      uri reads back as user ${decodeURIComponent(uri.username)}, password ${decodeURIComponent(uri.password) === viaKubectl ? "= the new one" : "DIFFERENT"}`);
    const store = JSON.parse(readFileSync(storePath, "utf8")) as { secrets: Record<string, { current: { value: string } }> };
    const current = JSON.parse(store.secrets[SECRET]!.current.value) as Record<string, string>;
    say(`      store file-backend: current password ${current.password === viaKubectl ? "= the Secret's" : "DIFFERS"} (${Object.keys(current).length} keys, as one JSON object)`);

    const second = await handler({ ...event, time: new Date().toISOString() });
    say(`\n      the same schedule firing again: ${second.results.map((r) => `${r.outcome} (${r.reason}, next ${r.nextDue})`).join(", ")}`);
  } finally {
    await api.stop();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
