// The Azure Functions entry points as the Functions host's Node worker runs them
// (test/infra/azure-worker.ts plays the worker's part), against the real kube-apiserver.
import { randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { resetEngine } from "../../triggers/invoke.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import { invoke, loadAzureApp, type RpcHttp, registered, unloadAzureApp } from "../infra/azure-worker.ts";
import { adminClient, createAppSecret, fileStoreYaml, pushSecretYaml, seedYaml, seenSecrets, tempDir, uniqueName } from "./support.ts";

const SECRET = "cluster-example-app";
const infra = inject("infra");
const kube = adminClient();

/** The timer payload the host sends (PascalCase JSON; the library camel-cases it). */
const timerInput = () => ({
  json: JSON.stringify({
    Schedule: { AdjustForDST: true },
    ScheduleStatus: { Last: new Date(Date.now() - 86_400_000).toISOString(), Next: new Date().toISOString(), LastUpdated: new Date().toISOString() },
    IsPastDue: false,
  }),
});

const httpInput = (method: string, body?: string) => ({
  http: {
    method,
    url: "https://cnpg-rotator.azurewebsites.net/api/rotateHttp",
    headers: { "content-type": "application/json" },
    ...(body === undefined ? {} : { body: { string: body } }),
    query: {},
    params: {},
  },
});

function httpAnswer(rpc: { returnValue?: { http?: RpcHttp } | null }) {
  const http = rpc.returnValue?.http;
  if (!http) throw new Error("no HTTP response");
  const text = http.body?.string ?? Buffer.from(http.body?.bytes ?? []).toString("utf8");
  return { status: Number(http.statusCode), headers: http.headers ?? {}, body: JSON.parse(text) as Record<string, unknown> };
}

// --- setup --------------------------------------------------------------------------

async function target() {
  const namespace = uniqueName("azf");
  await kube.ensureNamespace(namespace);
  const dir = tempDir();
  for (const f of ["password-generator.yaml", "external-secret.yaml"]) writeFileSync(join(dir, f), seedYaml(f));
  writeFileSync(join(dir, "store.yaml"), fileStoreYaml(join(tempDir(), "store.json")));
  writeFileSync(join(dir, "push.yaml"), pushSecretYaml("local", SECRET));
  const created = await createAppSecret(kube, namespace);
  seenSecrets.add(created.data.password!);
  vi.stubEnv("CNPG_ROTATOR_MANIFESTS", dir);
  vi.stubEnv("CNPG_ROTATOR_NAMESPACE", namespace);
  vi.stubEnv("CNPG_ROTATOR_KUBECONFIG", readFileSync(infra.kubeconfigPath, "utf8"));
  resetEngine();
  return { namespace };
}

async function secretState(namespace: string) {
  const s = (await kube.readSecret(namespace, SECRET))!;
  seenSecrets.add(s.data.password!);
  return s;
}

beforeAll(async () => {
  await loadAzureApp();
});

afterAll(() => {
  unloadAzureApp();
  vi.unstubAllEnvs();
  resetEngine();
});

describe("Azure Functions: registration", () => {
  it("registers the five functions with the bindings the host needs", () => {
    expect([...registered.keys()].sort()).toEqual(["pushTimer", "rotateHttp", "rotateOnNearExpiry", "rotateTimer", "statusHttp"]);
    const bindings = (name: string) => Object.values(registered.get(name)!.metadata.bindings);
    // CNPG_ROTATOR_SCHEDULE is not set here: the default schedule (NCRONTAB, six fields).
    expect(bindings("rotateTimer")).toContainEqual(expect.objectContaining({ type: "timerTrigger", direction: "in", schedule: "0 0 3 * * *" }));
    expect(bindings("pushTimer")).toContainEqual(expect.objectContaining({ type: "timerTrigger", schedule: "0 30 3 * * *" }));
    expect(registered.get("rotateTimer")!.metadata.retryOptions).toMatchObject({ retryStrategy: "exponentialBackoff", maxRetryCount: 3 });
    expect(bindings("rotateHttp")).toContainEqual(
      expect.objectContaining({ type: "httpTrigger", direction: "in", authLevel: "function", methods: ["POST"] }),
    );
    expect(bindings("rotateHttp")).toContainEqual(expect.objectContaining({ type: "http", direction: "out" }));
    expect(bindings("rotateOnNearExpiry")).toContainEqual(expect.objectContaining({ type: "eventGridTrigger", direction: "in" }));
  });
});

describe("Azure Functions: invocations", () => {
  it("the timer rotates every due target, then finds them not due; the response is the AWS handler's", async () => {
    const { namespace } = await target();
    const before = await secretState(namespace);

    const first = (await invoke("rotateTimer", timerInput())).result as Record<string, unknown>;
    expect(first).toMatchObject({ ok: true, trigger: "schedule", results: [{ target: `${namespace}/${SECRET}`, outcome: "rotated" }] });
    const after = await secretState(namespace);
    expect(after.data.password).not.toBe(before.data.password);
    expect(after.annotations[ANNOTATIONS.rotationId]).toBe((first.results as { rotationId: string }[])[0]!.rotationId);

    const second = (await invoke("rotateTimer", timerInput())).result;
    expect(second).toMatchObject({ ok: true, trigger: "schedule", results: [{ outcome: "not-due" }] });

    // The AWS handler given EventBridge's scheduled event answers in the same shape.
    const { handler } = await import("../../functions/aws/rotate.ts");
    const viaAws = await handler({ "detail-type": "Scheduled Event", source: "aws.events", detail: {} });
    expect(Object.keys(second as object).sort()).toEqual(Object.keys(viaAws).sort());
    expect(Object.keys((second as typeof viaAws).results[0]!).sort()).toEqual(Object.keys(viaAws.results[0]!).sort());
  });

  it("HTTP: POST rotates with the AWS handler's response; bad input is a 400, other methods a 405", async () => {
    const { namespace } = await target();
    const payload = JSON.stringify({ target: `${namespace}/${SECRET}`, force: true });

    const ok = httpAnswer((await invoke("rotateHttp", httpInput("POST", payload))).rpc);
    expect(ok.status).toBe(200);
    expect(ok.headers["content-type"]).toMatch(/^application\/json/);
    expect(ok.body).toMatchObject({ ok: true, trigger: "manual", results: [{ outcome: "rotated" }] });
    await secretState(namespace);

    const { handler } = await import("../../functions/aws/rotate.ts");
    const viaAws = await handler(JSON.parse(payload));
    await secretState(namespace);
    expect(viaAws).toMatchObject({ ok: true, results: [{ outcome: "rotated" }] });
    expect(Object.keys(ok.body).sort()).toEqual(Object.keys(viaAws).sort());
    expect(Object.keys((ok.body.results as object[])[0]!).sort()).toEqual(Object.keys(viaAws.results[0]!).sort());

    // statusHttp answers where the rotation stands: synced, fingerprints only.
    const status = httpAnswer((await invoke("statusHttp", httpInput("POST", JSON.stringify({ target: `${namespace}/${SECRET}` })))).rpc);
    expect(status.status).toBe(200);
    // The target Secret names both its ExternalSecret and the PushSecret selecting it.
    expect(status.body).toMatchObject({
      ok: true,
      results: [
        { kind: "ExternalSecret", reason: "SecretSynced", ready: true },
        { kind: "PushSecret", reason: "SecretSynced", ready: true },
      ],
    });

    const bad = httpAnswer((await invoke("rotateHttp", httpInput("POST", '{"target":"Not A Target"}'))).rpc);
    expect(bad).toMatchObject({ status: 400, body: { ok: false, error: { type: "InputError" } } });
    const notJson = httpAnswer((await invoke("rotateHttp", httpInput("POST", "{nope"))).rpc);
    expect(notJson.status).toBe(400);
    expect((notJson.body.error as { message: string }).message).toMatch(/^request body: expected a JSON object/);
    expect(httpAnswer((await invoke("rotateHttp", httpInput("GET"))).rpc)).toMatchObject({ status: 405, headers: { allow: "POST" } });
  });

  it("Event Grid: SecretNearExpiry of a secret no target writes, and other event types, are acknowledged without a run", async () => {
    const { namespace } = await target();
    const before = await secretState(namespace);
    const event = (eventType: string) => ({
      json: JSON.stringify({
        id: randomUUID(),
        topic: "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/pg-vault",
        subject: "someone-elses",
        eventType,
        eventTime: new Date().toISOString(),
        dataVersion: "1",
        metadataVersion: "1",
        data: { Id: "https://pg-vault.vault.azure.net/secrets/someone-elses/1", VaultName: "pg-vault", ObjectType: "Secret", ObjectName: "someone-elses" },
      }),
    });
    expect((await invoke("rotateOnNearExpiry", event("Microsoft.KeyVault.SecretNearExpiry"))).result).toMatchObject({
      ok: true,
      results: [],
      ignored: expect.stringMatching(/no ExternalSecret's PushSecret writes it through an azurekv SecretStore/),
    });
    expect((await invoke("rotateOnNearExpiry", event("Microsoft.KeyVault.SecretNewVersionCreated"))).result).toMatchObject({
      ignored: expect.stringMatching(/only Microsoft.KeyVault.SecretNearExpiry starts a rotation/),
    });
    expect((await secretState(namespace)).data.password).toBe(before.data.password);
  });
});
