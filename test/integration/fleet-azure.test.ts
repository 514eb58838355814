// The fleet on Azure: the planner's enqueue into Azurite's Queue Storage, and the storageQueue
// trigger's handler fed with the real messages taken from Azurite, against the real
// kube-apiserver. The trigger binding itself runs in the Azure Functions host, which is not
// here: test/infra/azure-worker.ts plays the Node worker (registration, RPC input through
// @azure/functions' own invocation model), and `host()` below plays the host's queue
// listener as documented — receive, invoke, delete on success; on failure make the message
// visible again, and after host.json's maxDequeueCount move it to `<queue>-poison`.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { QueueServiceClient } from "@azure/storage-queue";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { encodeMessage } from "../../lib/fleet/messages.ts";
import { AzureStorageQueue, azureQueueFromEnvironment } from "../../lib/queues/azure-queue.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import { resetFleet } from "../../triggers/fleet.ts";
import { invoke, loadAzureApp, registered, unloadAzureApp } from "../infra/azure-worker.ts";
import { type FleetTarget, writeFleet } from "../infra/fleet-manifests.ts";
import { type AzuriteQueue, startAzuriteQueue } from "../infra/servers.ts";
import { adminClient, createAppSecret, seenSecrets, tempDir, uniqueName } from "./support.ts";

const infra = inject("infra");
const kube = adminClient();
const HOST = JSON.parse(readFileSync(join(import.meta.dirname, "../../deploy/azure/host.json"), "utf8")) as {
  extensions: { queues: { maxDequeueCount: number; messageEncoding: string } };
};
const MAX_DEQUEUE = HOST.extensions.queues.maxDequeueCount;
let azurite: AzuriteQueue;
let service: QueueServiceClient;

beforeAll(async () => {
  azurite = await startAzuriteQueue(tempDir());
  service = QueueServiceClient.fromConnectionString(azurite.connectionString);
  // The app registers its fleet functions when the app setting says so, at load.
  vi.stubEnv("CNPG_ROTATOR_FLEET", "1");
  await loadAzureApp();
}, 120_000);

afterAll(async () => {
  unloadAzureApp();
  vi.unstubAllEnvs();
  await resetFleet();
  await azurite?.stop();
});

/** `n` targets over 2 namespaces of the default cluster, every CNPG Secret created but those at `missing`; the app's settings. */
async function fleetTargets(n: number, missing: number[] = []) {
  const dir = tempDir();
  const targets = writeFleet({ dir, targets: n, namespaces: 2, storePath: join(tempDir(), "store.json"), namespacePrefix: uniqueName("afl") });
  for (const [i, t] of targets.entries()) {
    await kube.ensureNamespace(t.namespace);
    if (!missing.includes(i)) seenSecrets.add((await createAppSecret(kube, t.namespace, { name: t.secret })).data.password!);
  }
  const name = uniqueName("fleet");
  await service.getQueueClient(name).create();
  await service.getQueueClient(`${name}-poison`).create();
  vi.stubEnv("CNPG_ROTATOR_MANIFESTS", dir);
  vi.stubEnv("CNPG_ROTATOR_KUBECONFIG", readFileSync(infra.kubeconfigPath, "utf8"));
  vi.stubEnv("CNPG_ROTATOR_QUEUE_NAME", name);
  vi.stubEnv("AzureWebJobsStorage", azurite.connectionString);
  await resetFleet();
  return { targets, name, queue: service.getQueueClient(name), poison: service.getQueueClient(`${name}-poison`) };
}

async function state(t: FleetTarget) {
  const s = await kube.readSecret(t.namespace, t.secret);
  if (s?.data.password) seenSecrets.add(s.data.password);
  return s;
}

/** The timer payload the host sends. */
const tick = () => ({ json: JSON.stringify({ Schedule: { AdjustForDST: true }, IsPastDue: false }) });

interface Handled {
  readonly id: string;
  readonly dequeueCount: number;
  readonly ok: boolean;
  readonly outcome?: string;
  readonly error?: string;
}

/**
 * The host's queue listener for `name`, until the queue is empty: each message (base64 decoded, JSON handed as JSON, as
 * messageEncoding base64 does) to the registered rotateQueue function; deleted when it returns; when it throws, visible
 * again at once, or moved to `<name>-poison` once dequeued maxDequeueCount times.
 */
async function host(name: string): Promise<Handled[]> {
  const queue = service.getQueueClient(name);
  const handled: Handled[] = [];
  for (let idle = 0; idle < 3; ) {
    const { receivedMessageItems: items } = await queue.receiveMessages({ numberOfMessages: 16, visibilityTimeout: 30 });
    if (items.length === 0) {
      idle++;
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    idle = 0;
    await Promise.all(
      items.map(async (m) => {
        const text = Buffer.from(m.messageText, HOST.extensions.queues.messageEncoding as BufferEncoding).toString("utf8");
        let json = true;
        try {
          JSON.parse(text);
        } catch {
          json = false;
        }
        const meta = { Id: { string: m.messageId }, DequeueCount: { json: String(m.dequeueCount) } };
        try {
          const { result } = await invoke("rotateQueue", json ? { json: text } : { string: text }, meta);
          handled.push({ id: m.messageId, dequeueCount: m.dequeueCount, ok: true, outcome: (result as { outcome: string }).outcome });
          await queue.deleteMessage(m.messageId, m.popReceipt);
        } catch (e) {
          handled.push({ id: m.messageId, dequeueCount: m.dequeueCount, ok: false, error: (e as Error).message });
          if (m.dequeueCount >= MAX_DEQUEUE) {
            await service.getQueueClient(`${name}-poison`).sendMessage(m.messageText);
            await queue.deleteMessage(m.messageId, m.popReceipt);
          } else {
            await queue.updateMessage(m.messageId, m.popReceipt, undefined, 0);
          }
        }
      }),
    );
  }
  return handled;
}

describe("Azure fleet: planTimer → Queue Storage (Azurite) → rotateQueue", () => {
  it("registers planTimer and the storageQueue trigger instead of rotateTimer; host.json sets the poison threshold", () => {
    expect([...registered.keys()].sort()).toEqual(["planTimer", "pushTimer", "rotateHttp", "rotateOnNearExpiry", "rotateQueue", "statusHttp"]);
    const bindings = Object.values(registered.get("rotateQueue")!.metadata.bindings);
    expect(bindings).toContainEqual(expect.objectContaining({ type: "queueTrigger", direction: "in", queueName: "cnpg-rotator-queue", connection: "AzureWebJobsStorage" }));
    expect(Object.values(registered.get("planTimer")!.metadata.bindings)).toContainEqual(expect.objectContaining({ type: "timerTrigger", schedule: "0 */15 * * * *" }));
    expect(HOST.extensions.queues).toMatchObject({ maxDequeueCount: 5, messageEncoding: "base64" });
  });

  it("plans into the queue (spread by visibility delays), rotates each target once; a duplicate gives no second password; a poisoned target ends in -poison alone", async () => {
    const { targets, name, queue, poison } = await fleetTargets(6, [3]);
    const poisoned = targets[3]!;
    const healthy = targets.filter((t) => t !== poisoned);
    vi.stubEnv("CNPG_ROTATOR_SPREAD_SECONDS", "2");
    await invoke("planTimer", tick());
    // Spread over 2 s (delays 0, 0, 0, 1, 1, 1): half are still invisible right after the plan.
    expect((await queue.getProperties()).approximateMessagesCount).toBe(6);
    expect((await queue.peekMessages({ numberOfMessages: 32 })).peekedMessageItems.length).toBeLessThan(6);
    await new Promise((r) => setTimeout(r, 2500));

    const handled = await host(name);
    for (const t of healthy) expect((await state(t))!.annotations[ANNOTATIONS.rotationId]).toBeDefined();
    expect(handled.filter((h) => h.outcome === "rotated")).toHaveLength(healthy.length);
    // The poisoned target's message: thrown maxDequeueCount times, then in the poison queue; nothing written for it.
    const failures = handled.filter((h) => !h.ok);
    expect(failures.map((f) => f.dequeueCount)).toEqual([1, 2, 3, 4, 5]);
    expect(failures[0]!.error).toMatch(new RegExp(`QueueMessageFailed|${poisoned.secret}.*SecretMissingError`));
    expect(await state(poisoned)).toBeUndefined();
    const dead = (await poison.receiveMessages({ numberOfMessages: 32 })).receivedMessageItems;
    expect(dead.map((m) => JSON.parse(Buffer.from(m.messageText, "base64").toString()).target)).toEqual([`${poisoned.namespace}/${poisoned.secret}`]);

    // At least once: the same target twice more, straight into the queue as the planner puts it.
    const before = await Promise.all(healthy.map(state));
    const planner = await azureQueueFromEnvironment();
    const again = encodeMessage({ cluster: "default", target: `${healthy[0]!.namespace}/${healthy[0]!.secret}`, due: new Date().toISOString() });
    await planner.send([
      { body: again, delaySeconds: 0 },
      { body: again, delaySeconds: 0 },
    ]);
    const duplicates = await host(name);
    expect(duplicates).toHaveLength(2);
    for (const d of duplicates) expect(["not-due", "locked"]).toContain(d.outcome);
    const after = await Promise.all(healthy.map(state));
    expect(after.map((s) => s!.data.password)).toEqual(before.map((s) => s!.data.password));
    expect(new Set(after.map((s) => s!.data.password)).size).toBe(healthy.length);
  });

  it("a malformed message is handled once (logged, deleted, never retried) and nothing is written; bad settings are refused before anything is sent", async () => {
    const { targets, name, queue, poison } = await fleetTargets(2);
    const before = await Promise.all(targets.map(state));
    for (const body of ["{not json", JSON.stringify({ v: 1, cluster: "nowhere", target: `${targets[0]!.namespace}/${targets[0]!.secret}`, due: new Date().toISOString() })]) {
      await queue.sendMessage(Buffer.from(body).toString("base64"));
    }
    const handled = await host(name);
    expect(handled).toHaveLength(2);
    expect(handled.every((h) => h.ok && h.outcome === "malformed" && h.dequeueCount === 1)).toBe(true);
    expect((await poison.peekMessages({ numberOfMessages: 32 })).peekedMessageItems).toHaveLength(0);
    const after = await Promise.all(targets.map(state));
    expect(after.map((s) => s!.data.password)).toEqual(before.map((s) => s!.data.password));
    expect(after.every((s) => s!.annotations[ANNOTATIONS.rotationId] === undefined)).toBe(true);

    expect(() => new AzureStorageQueue(service.getQueueClient("Bad_Name"))).toThrow(/Azure queue name: expected 3-63 lowercase/);
    vi.stubEnv("AzureWebJobsStorage", "");
    await expect(azureQueueFromEnvironment()).rejects.toThrow(/AzureWebJobsStorage is not set/);
    await expect(new AzureStorageQueue(queue).send([{ body: "{}", delaySeconds: 901 }])).rejects.toThrow(/delaySeconds must be a whole number from 0 to 900/);
    expect((await queue.peekMessages({ numberOfMessages: 32 })).peekedMessageItems).toHaveLength(0);
  });
});
