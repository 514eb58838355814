// The CLI's cluster commands (rotate, push, status) and the status function,
// against the real kube-apiserver with the file store.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, inject, it, vi } from "vitest";
import { main } from "../../lib/cli/main.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import { status } from "../../lib/rotation/status.ts";
import {
  adminClient,
  createAppSecret,
  engineFor,
  fileStoreYaml,
  logLines,
  pushSecretYaml,
  seedManifests,
  seenSecrets,
  seedYaml,
  tempDir,
  uniqueName,
} from "./support.ts";

const infra = inject("infra");
const kube = adminClient();

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, (t) => out.push(t), (t) => err.push(t));
  return { code, stdout: out.join("\n"), stderr: err.join("\n") };
}

async function setup() {
  const namespace = uniqueName("cli");
  await kube.ensureNamespace(namespace);
  const dir = tempDir();
  const storePath = join(dir, "store.json");
  for (const f of ["password-generator.yaml", "external-secret.yaml"]) writeFileSync(join(dir, f), seedYaml(f));
  writeFileSync(join(dir, "store.yaml"), fileStoreYaml(storePath));
  writeFileSync(join(dir, "push.yaml"), pushSecretYaml("local", "cluster-example-app"));
  const secret = await createAppSecret(kube, namespace);
  seenSecrets.add(secret.data.password!);
  const flags = ["-f", dir, "-n", namespace, "--kubeconfig", infra.kubeconfigPath];
  return { namespace, dir, storePath, flags };
}

describe("cnpg-rotator rotate / push / status", () => {
  it("status before (store empty: Drift), rotate, status after (SecretSynced), fingerprints only", async () => {
    const { namespace, flags } = await setup();
    const before = await cli("status", ...flags);
    expect(before.code).toBe(1);
    expect(before.stdout).toMatch(/ExternalSecret\s+\S+cluster-example-app-secret\s+\S+\s+SecretStore\/local\s+24h\s+Drift\s+False/);

    const dry = await cli("rotate", ...flags, "--dry-run", "-o", "json");
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)[0]).toMatchObject({ outcome: "dry-run", reason: "would rotate (never rotated)" });

    const rotated = await cli("rotate", ...flags);
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(new RegExp(`${namespace}/cluster-example-app\\s+rotated\\s+[0-9a-f]{8}\\s+sha256:[0-9a-f]{16}`));
    const password = (await kube.readSecret(namespace, "cluster-example-app"))!.data.password!;
    seenSecrets.add(password);
    expect(rotated.stdout).not.toContain(password);

    const after = await cli("status", ...flags, "-o", "json");
    expect(after.code).toBe(0);
    const [es, ps] = JSON.parse(after.stdout);
    expect(es).toMatchObject({
      kind: "ExternalSecret",
      reason: "SecretSynced",
      ready: true,
      refreshInterval: "24h",
      stores: [{ store: "SecretStore/local", provider: "file", inSync: true }],
    });
    expect(es.lastRotation).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(ps).toMatchObject({ kind: "PushSecret", reason: "SecretSynced", ready: true });
    expect(after.stdout).not.toContain(password);

    const again = await cli("rotate", ...flags, "-o", "json");
    expect(JSON.parse(again.stdout)[0].outcome).toBe("not-due");
  });

  it("status shows drift when the Secret changes behind the store, and push repairs it", async () => {
    const { namespace, flags } = await setup();
    expect((await cli("rotate", ...flags)).code).toBe(0);
    await kube.updateSecret(namespace, "cluster-example-app", () => ({ data: { dbname: "renamed" } }));
    const drifted = await cli("status", ...flags, "-o", "json");
    expect(drifted.code).toBe(1);
    expect(JSON.parse(drifted.stdout)[0]).toMatchObject({ reason: "Drift", ready: false, stores: [{ inSync: false, driftedKeys: ["dbname"] }] });
    const pushed = await cli("push", ...flags);
    expect(pushed.code).toBe(0);
    expect(pushed.stdout).toMatch(/pushed/);
    expect((await cli("status", ...flags)).code).toBe(0);
  });

  it("status reports a rotation in flight", async () => {
    const { namespace, storePath } = await setup();
    const manifests = seedManifests(namespace, fileStoreYaml(storePath), pushSecretYaml("local", "cluster-example-app"));
    await rotate(engineFor(manifests, kube, { afterStep: (s) => { if (s === "merge") throw new Error("crash"); } }));
    const [es] = await status(engineFor(manifests, kube));
    expect(es).toMatchObject({ reason: "RotationInFlight", ready: false });
    expect(es!.message).toMatch(/staged in SecretStore\/local and not promoted/);
    seenSecrets.add((await kube.readSecret(namespace, "cluster-example-app"))!.data.password!);
  });

  it("-v logs at CNPG_ROTATOR_LOG_LEVEL, as a deployed function does", async () => {
    const { flags } = await setup();
    const levelsOf = async (...argv: string[]) => {
      const from = logLines.length;
      expect((await cli(...argv)).code).toBe(0);
      return new Set(
        logLines.slice(from).flatMap((line) => (/^\{.*"service":"cnpg-rotator"/.test(line) ? [JSON.parse(line).level] : [])),
      );
    };
    try {
      vi.stubEnv("CNPG_ROTATOR_LOG_LEVEL", "info");
      expect(await levelsOf("rotate", ...flags, "-v")).toContain("info");
      vi.stubEnv("CNPG_ROTATOR_LOG_LEVEL", "warn");
      expect(await levelsOf("rotate", ...flags, "-v", "--force")).not.toContain("info");
      expect(await levelsOf("status", ...flags, "-v")).not.toContain("info");
      vi.stubEnv("CNPG_ROTATOR_LOG_LEVEL", "debug");
      expect(await levelsOf("rotate", ...flags, "-v", "--force")).toContain("info");
      vi.stubEnv("CNPG_ROTATOR_LOG_LEVEL", "loud");
      expect(await cli("rotate", ...flags, "-v")).toMatchObject({ code: 2, stderr: expect.stringMatching(/CNPG_ROTATOR_LOG_LEVEL: expected one of .*debug.*found "loud"/) });
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it("bad input exits 2 before anything is written", async () => {
    const { flags } = await setup();
    expect((await cli("rotate", ...flags, "-o", "yaml")).code).toBe(2);
    expect((await cli("rotate", ...flags, "--target", "default/nope")).stderr).toMatch(/no ExternalSecret targets Secret default\/nope/);
    expect((await cli("status", "--kubeconfig", infra.kubeconfigPath)).stderr).toMatch(/missing -f/);
    expect((await cli("rotate", "--help")).stdout).toMatch(/^Usage: cnpg-rotator rotate/);
  });
});
