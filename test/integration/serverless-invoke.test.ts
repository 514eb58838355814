// `npx serverless invoke local -f rotate --path <event>`: the bundled Lambda handler, as
// osls + serverless-esbuild build it, rotating against the local kube-apiserver.
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, inject, it } from "vitest";
import { adminClient, createAppSecret, seenSecrets, tempDir, uniqueName } from "./support.ts";

const ROOT = join(import.meta.dirname, "../..");
const kube = adminClient();

describe("serverless invoke local", () => {
  it("rotates with the bundled handler and the shipped manifests", { timeout: 240_000 }, async () => {
    const namespace = uniqueName("sls");
    await kube.ensureNamespace(namespace);
    const original = (await createAppSecret(kube, namespace)).data.password!;
    seenSecrets.add(original);
    // events/manual.json's shape, aimed at this test's namespace.
    const event = { ...JSON.parse(readFileSync(join(ROOT, "events/manual.json"), "utf8")), target: `${namespace}/cluster-example-app` };
    const eventPath = join(tempDir(), "manual.json");
    writeFileSync(eventPath, JSON.stringify(event));
    const { stdout } = await promisify(execFile)(
      join(ROOT, "node_modules/.bin/serverless"),
      ["invoke", "local", "-f", "rotate", "--path", eventPath],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}`,
          CNPG_ROTATOR_NAMESPACE: namespace,
          CNPG_ROTATOR_KUBECONFIG: readFileSync(inject("infra").kubeconfigPath, "utf8"),
          CNPG_ROTATOR_LOG_LEVEL: "warn",
        },
        maxBuffer: 16 * 1024 * 1024,
      },
    );
    const response = JSON.parse(stdout.slice(stdout.indexOf("{"), stdout.lastIndexOf("}") + 1));
    expect(response).toMatchObject({
      ok: true,
      trigger: "manual",
      results: [{ target: `${namespace}/cluster-example-app`, outcome: "rotated" }],
    });
    const password = (await kube.readSecret(namespace, "cluster-example-app"))!.data.password!;
    seenSecrets.add(password);
    expect(password).not.toBe(original);
    expect(stdout).not.toContain(password);
  });
});
