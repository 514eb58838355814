// The Google Cloud Functions entry points as they run: the real Functions
// Framework serving functions/gcp/index.ts (Node 24 loads the .ts as is), fed by
// the gcloud Pub/Sub emulator through push subscriptions, rotating in the real
// kube-apiserver.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PubSub } from "@google-cloud/pubsub";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { encodeMessage } from "../../lib/fleet/messages.ts";
import { PubSubQueue } from "../../lib/queues/pubsub.ts";
import { resetEngine } from "../../triggers/invoke.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import { type FleetTarget, writeFleet } from "../infra/fleet-manifests.ts";
import { freePort } from "../infra/servers.ts";
import {
  adminClient,
  createAppSecret,
  fileStoreYaml,
  logLines,
  pushSecretYaml,
  seedYaml,
  seenSecrets,
  tempDir,
  uniqueName,
} from "./support.ts";

const ROOT = join(import.meta.dirname, "../..");
const NODE = join(ROOT, "node_modules/.bin/node"); // the project's Node 24: strips types from .ts
const FRAMEWORK = join(ROOT, "node_modules/.bin/functions-framework");
const SOURCE = join(ROOT, "functions/gcp/index.ts");
const PROJECT = "cnpg-rotator-test";
const SECRET = "cluster-example-app";

/** The emulator from Debian package google-cloud-cli-pubsub-emulator (or CNPG_ROTATOR_PUBSUB_EMULATOR_JAR). */
function emulatorJar(): string | undefined {
  if (process.env.CNPG_ROTATOR_PUBSUB_EMULATOR_JAR) return process.env.CNPG_ROTATOR_PUBSUB_EMULATOR_JAR;
  const dir = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/lib";
  const jar = existsSync(dir) ? readdirSync(dir).find((f) => /^cloud-pubsub-emulator-[\d.]+-all\.jar$/.test(f)) : undefined;
  return jar ? join(dir, jar) : undefined;
}
const JAR = emulatorJar();
// The Pub/Sub client would otherwise look for a GCE metadata server first.
process.env.METADATA_SERVER_DETECTION = "none";
const JAVA = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, "bin/java") : "java";
// A missing emulator fails the run (in beforeAll, saying what to install): never skipped.

// --- child processes -------------------------------------------------------------

interface Child {
  readonly name: string;
  /** Every line it printed, also handed to log-guard.ts through logLines. */
  readonly lines: string[];
  readonly exited: Promise<void>;
  running(): boolean;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

function start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Child {
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const lines: string[] = [];
  let alive = true;
  for (const stream of [child.stdout, child.stderr]) {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop()!;
      lines.push(...parts);
      logLines.push(...parts);
    });
    stream.on("end", () => {
      if (!partial) return;
      lines.push(partial);
      logLines.push(partial);
    });
  }
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", (e) => {
      lines.push(`failed to start ${command}: ${e.message}`);
      resolve();
    });
  }).then(() => {
    alive = false;
    children.delete(child);
  });
  return {
    name,
    lines,
    exited,
    running: () => alive,
    async stop() {
      if (!alive) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const tail = (c: Child) => c.lines.slice(-30).join("\n");

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, child?: Child): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await Promise.resolve(check()).catch(() => false)) return;
    if (child && !child.running()) throw new Error(`${child.name} exited before ${what}:\n${tail(child)}`);
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs / 1000}s${child ? `; ${child.name} printed:\n${tail(child)}` : ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// --- the emulator, the functions, the cluster --------------------------------------

let emulator: Child;
let emulatorHost: string;
let pubsub: PubSub;
const functionsStarted: Child[] = [];
const infra = inject("infra");
const kube = adminClient();

beforeAll(async () => {
  if (!JAR) {
    throw new Error(
      "Pub/Sub emulator not found: install Debian package google-cloud-cli-pubsub-emulator (and openjdk-17-jre-headless), " +
        "or set CNPG_ROTATOR_PUBSUB_EMULATOR_JAR",
    );
  }
  const port = await freePort();
  emulatorHost = `127.0.0.1:${port}`;
  emulator = start("pubsub-emulator", JAVA, ["-jar", JAR, "--host=127.0.0.1", `--port=${port}`]);
  await until("Pub/Sub emulator listening", () => emulator.lines.some((l) => l.includes(`listening on ${port}`)), 60_000, emulator);
  pubsub = new PubSub({ projectId: PROJECT, apiEndpoint: `127.0.0.1:${port}`, emulatorMode: true });
});

afterAll(async () => {
  await pubsub?.close();
  await Promise.all(functionsStarted.map((f) => f.stop()));
  await emulator?.stop();
});

/** A namespace with the seed's manifests, the file store and (unless told not to) CNPG's app Secret. */
async function target(options: { createSecret?: boolean } = {}) {
  const namespace = uniqueName("gcf");
  await kube.ensureNamespace(namespace);
  const dir = tempDir();
  for (const f of ["password-generator.yaml", "external-secret.yaml"]) writeFileSync(join(dir, f), seedYaml(f));
  writeFileSync(join(dir, "store.yaml"), fileStoreYaml(join(tempDir(), "store.json")));
  writeFileSync(join(dir, "push.yaml"), pushSecretYaml("local", SECRET));
  if (options.createSecret !== false) await createSecret(namespace);
  const env = {
    CNPG_ROTATOR_MANIFESTS: dir,
    CNPG_ROTATOR_NAMESPACE: namespace,
    CNPG_ROTATOR_KUBECONFIG: readFileSync(infra.kubeconfigPath, "utf8"),
  };
  return { namespace, env };
}

async function createSecret(namespace: string) {
  const created = await createAppSecret(kube, namespace);
  seenSecrets.add(created.data.password!);
}

async function secretState(namespace: string) {
  const s = await kube.readSecret(namespace, SECRET);
  if (s?.data.password) seenSecrets.add(s.data.password);
  return s;
}

/** `functions-framework --target NAME --source functions/gcp/index.ts`, as Cloud Functions starts it. */
async function serve(functionName: string, env: Record<string, string>): Promise<{ url: string; child: Child }> {
  const port = await freePort();
  const child = start(`functions-framework ${functionName}`, NODE, [FRAMEWORK, `--target=${functionName}`, `--source=${SOURCE}`, `--port=${port}`], {
    ...process.env,
    ...env,
  });
  functionsStarted.push(child);
  const url = `http://127.0.0.1:${port}`;
  await until(`${functionName} serving`, async () => (await fetch(url, { method: "HEAD" })).status > 0, 30_000, child);
  return { url, child };
}

/** A topic whose push subscription delivers to `url`, as Eventarc does for a 2nd gen function. */
async function pushTopic(url: string) {
  const [topic] = await pubsub.createTopic(uniqueName("cnpg-rotator"));
  // The framework reads the topic from the path of a raw push (and warns without it).
  const pushEndpoint = `${url}/projects/${PROJECT}/topics/${topic.name.split("/").pop()}`;
  await topic.createSubscription(uniqueName("push"), { pushConfig: { pushEndpoint }, ackDeadlineSeconds: 60 });
  return topic;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const acknowledged = (c: Child) => c.lines.filter((l) => l.includes('"msg":"event acknowledged without a run"'));

describe("GCP rotate: Cloud Scheduler → Pub/Sub → push → Functions Framework", () => {
  it("rotates the target a scheduled message names", async () => {
    const { namespace, env } = await target();
    const before = (await secretState(namespace))!;
    const { url, child } = await serve("rotate", env);
    const topic = await pushTopic(url);

    await topic.publishMessage({ data: json({ target: `${namespace}/${SECRET}` }) });
    await until("the rotation", async () => (await secretState(namespace))?.annotations[ANNOTATIONS.rotationId] !== undefined, 60_000, child);

    const after = (await secretState(namespace))!;
    expect(after.data.password).not.toBe(before.data.password);
    expect(after.data.password).toHaveLength(42);
    expect(after.labels["cnpg.io/reload"]).toBe("true");
    // The function's own log says so, naming the rotation it wrote on the Secret (the line comes
    // after the promote, which follows the merge the wait above saw).
    const finishedLine = () => child.lines.find((l) => l.includes('"msg":"rotation finished"') && l.includes('"outcome":"rotated"'));
    await until("the rotation's log line", async () => finishedLine() !== undefined, 30_000, child);
    expect(finishedLine()).toContain(after.annotations[ANNOTATIONS.rotationId]);
  });

  it("a failed scheduled run answers 500, Pub/Sub redelivers, and the redelivery rotates", async () => {
    const { namespace, env } = await target({ createSecret: false });
    const { url, child } = await serve("rotate", env);
    const topic = await pushTopic(url);

    await topic.publishMessage({ data: json({ target: `${namespace}/${SECRET}` }) });
    // The Secret does not exist yet: the run fails (SecretMissingError), so the function throws.
    await until("a failed delivery", () => child.lines.some((l) => l.includes("ScheduledRunFailed")), 60_000, child);
    expect(await secretState(namespace)).toBeUndefined();

    await createSecret(namespace);
    await until("the redelivery's rotation", async () => (await secretState(namespace))?.annotations[ANNOTATIONS.rotationId] !== undefined, 90_000, child);
    expect(child.lines.filter((l) => l.includes("ScheduledRunFailed")).length).toBeGreaterThanOrEqual(1);
  });

  it("acknowledges TOPIC_CONFIGURED and a SECRET_ROTATE of a secret no target writes, without a run", async () => {
    const { namespace, env } = await target();
    const before = (await secretState(namespace))!;
    const { url, child } = await serve("rotate", env);
    const topic = await pushTopic(url);

    // As Secret Manager sends them: TOPIC_CONFIGURED has no data, only its eventType.
    await topic.publishMessage({ attributes: { eventType: "TOPIC_CONFIGURED" } });
    await topic.publishMessage({
      data: json({ name: "projects/123456789/secrets/someone-elses" }),
      attributes: { eventType: "SECRET_ROTATE", dataFormat: "JSON_API_V1", secretId: "projects/123456789/secrets/someone-elses" },
    });
    await until("both acknowledged", () => acknowledged(child).length >= 2, 30_000, child);
    await new Promise((r) => setTimeout(r, 3000)); // a 2xx is an ack: no redelivery follows

    expect(acknowledged(child)).toHaveLength(2);
    const why = acknowledged(child).join("\n");
    expect(why).toMatch(/TOPIC_CONFIGURED: the test message sent when a topic is attached to a secret/);
    expect(why).toMatch(/SECRET_ROTATE for projects\/123456789\/secrets\/someone-elses: no ExternalSecret's PushSecret writes it/);
    const after = (await secretState(namespace))!;
    expect(after.data.password).toBe(before.data.password);
    expect(after.annotations[ANNOTATIONS.rotationId]).toBeUndefined();
  });
});

describe("GCP rotateHttp: manual runs and Cloud Scheduler → HTTP", () => {
  it("answers like the AWS handler: 200 with the same response shape, 400 for bad input, 405 for GET, 500 for a failed scheduled run", async () => {
    const { namespace, env } = await target();
    const { url } = await serve("rotateHttp", env);
    const post = (body: string, headers: Record<string, string> = { "content-type": "application/json" }) =>
      fetch(url, { method: "POST", headers, body });

    const res = await post(JSON.stringify({ target: `${namespace}/${SECRET}`, force: true }));
    expect(res.status).toBe(200);
    const viaHttp = (await res.json()) as { ok: boolean; trigger: string; results: Record<string, unknown>[] };
    expect(viaHttp).toMatchObject({ ok: true, trigger: "manual", results: [{ outcome: "rotated" }] });

    // The same request through the AWS Lambda handler, in this process, on the same manifests and cluster.
    for (const [k, v] of Object.entries(env)) vi.stubEnv(k, v);
    resetEngine();
    const { handler } = await import("../../functions/aws/rotate.ts");
    const viaAws = await handler({ target: `${namespace}/${SECRET}`, force: true });
    vi.unstubAllEnvs();
    resetEngine();
    expect(viaAws).toMatchObject({ ok: true, results: [{ outcome: "rotated" }] });
    expect(Object.keys(viaHttp).sort()).toEqual(Object.keys(viaAws).sort());
    expect(Object.keys(viaHttp.results[0]!).sort()).toEqual(Object.keys(viaAws.results[0]!).sort());
    await secretState(namespace);

    const bad = await post(JSON.stringify({ target: "Not A Target" }));
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ ok: false, error: { type: "InputError" } });
    const notJson = await post("{nope", { "content-type": "text/plain" });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as { error: { message: string } }).error.message).toMatch(/^request body: expected a JSON object/);

    const get = await fetch(url);
    expect(get.status).toBe(405);
    expect(get.headers.get("allow")).toBe("POST");

    // Cloud Scheduler's request (its headers, its default content type) for a Secret that is gone: retried on 500.
    await kube.deleteSecret(namespace, SECRET);
    const scheduled = await post(JSON.stringify({ target: `${namespace}/${SECRET}` }), {
      "content-type": "application/octet-stream",
      "x-cloudscheduler": "true",
      "x-cloudscheduler-jobname": "projects/p/locations/l/jobs/cnpg-rotator",
    });
    expect(scheduled.status).toBe(500);
    expect(await scheduled.json()).toMatchObject({ ok: false, trigger: "schedule", error: { type: "ScheduledRunFailed" } });
  });
});

describe("GCP fleet: Cloud Scheduler → plan → Pub/Sub → push → rotateQueue", () => {
  /** `n` targets over 2 namespaces of the default cluster, every CNPG Secret created but `missing`'s. */
  async function fleetTargets(n: number, missing: number[] = []) {
    const dir = tempDir();
    const targets = writeFleet({ dir, targets: n, namespaces: 2, storePath: join(tempDir(), "store.json"), namespacePrefix: uniqueName("gfl") });
    for (const [i, t] of targets.entries()) {
      await kube.ensureNamespace(t.namespace);
      if (!missing.includes(i)) seenSecrets.add((await createAppSecret(kube, t.namespace, { name: t.secret })).data.password!);
    }
    const env = { CNPG_ROTATOR_MANIFESTS: dir, CNPG_ROTATOR_KUBECONFIG: readFileSync(infra.kubeconfigPath, "utf8") };
    return { targets, env };
  }

  async function state(t: FleetTarget) {
    const s = await kube.readSecret(t.namespace, t.secret);
    if (s?.data.password) seenSecrets.add(s.data.password);
    return s;
  }

  /** The fleet's queue: a topic, a dead-letter topic with a pull subscription, and a push subscription to `url` that dead-letters after 5 deliveries. */
  async function fleetQueue(url: string) {
    const [topic] = await pubsub.createTopic(uniqueName("cnpg-rotator-queue"));
    const [dead] = await pubsub.createTopic(uniqueName("cnpg-rotator-dead"));
    const deadSub = uniqueName("dead-pull");
    await dead.createSubscription(deadSub);
    await topic.createSubscription(uniqueName("push"), {
      pushConfig: { pushEndpoint: url },
      ackDeadlineSeconds: 30,
      deadLetterPolicy: { deadLetterTopic: dead.name, maxDeliveryAttempts: 5 },
      retryPolicy: { minimumBackoff: { seconds: 1 }, maximumBackoff: { seconds: 2 } },
    });
    const endpoint = `http://${emulatorHost}`;
    return {
      topic,
      dead: new PubSubQueue({ topic: dead.name, subscription: `projects/${PROJECT}/subscriptions/${deadSub}`, endpoint }),
    };
  }

  const handled = (c: Child, id: string) => c.lines.filter((l) => l.includes(`"messageId":"${id}"`));

  it("plans once per namespace, rotates every target once; a duplicate gives no second password; a poisoned target dead-letters alone", async () => {
    const { targets, env } = await fleetTargets(6, [4]);
    const poisoned = targets[4]!;
    const consumer = await serve("rotateQueue", env);
    const { topic, dead } = await fleetQueue(consumer.url);
    const planner = await serve("plan", { ...env, CNPG_ROTATOR_TOPIC: topic.name, PUBSUB_EMULATOR_HOST: emulatorHost });
    const tick = await pushTopic(planner.url);

    await tick.publishMessage({ data: json({}) });
    const healthy = targets.filter((t) => t !== poisoned);
    await until(
      "every healthy target rotated",
      async () => (await Promise.all(healthy.map(state))).every((s) => s?.annotations[ANNOTATIONS.rotationId] !== undefined),
      90_000,
      consumer.child,
    );
    const planned = planner.child.lines.find((l) => l.includes('"msg":"plan published"'));
    expect(planned).toBeDefined();
    const plan = JSON.parse(planned!) as { enqueued: number; clusters: { cluster: string; requests: number; namespaces: number }[] };
    expect(plan.enqueued).toBe(6);
    // One metadata-only list per namespace, not one request per target.
    expect(plan.clusters).toMatchObject([{ cluster: "default", namespaces: 2, requests: 2 }]);

    // The poisoned target's message: 500 on each of its 5 deliveries, then the dead-letter topic.
    let deadLettered: Awaited<ReturnType<PubSubQueue["receive"]>> = [];
    await until(
      "the poisoned message on the dead-letter topic",
      async () => {
        deadLettered = await dead.receive(10, 0);
        return deadLettered.length > 0;
      },
      90_000,
      consumer.child,
    );
    expect(deadLettered.map((m) => JSON.parse(m.body).target)).toEqual([`${poisoned.namespace}/${poisoned.secret}`]);
    await dead.delete(deadLettered.map((m) => m.receipt));
    const poisonedTries = consumer.child.lines.filter(
      (l) => l.includes(poisoned.secret) && (l.includes('"msg":"queue message failed"') || (l.includes('"msg":"queue message handled"') && l.includes('"outcome":"failed"'))),
    );
    expect(poisonedTries).toHaveLength(5);
    expect(await state(poisoned)).toBeUndefined();

    // At least once: the same target's message again, twice — acknowledged as not due (or locked), the password kept.
    const before = await Promise.all(healthy.map(state));
    const again = encodeMessage({ cluster: "default", target: `${healthy[0]!.namespace}/${healthy[0]!.secret}`, due: new Date().toISOString() });
    const ids = [await topic.publishMessage({ data: Buffer.from(again) }), await topic.publishMessage({ data: Buffer.from(again) })];
    // Delivered at once, one may find the other's Lease held: `locked`, acknowledged too.
    const answered = (id: string) => handled(consumer.child, id).some((l) => /"outcome":"(not-due|locked)","msg":"queue message handled"/.test(l));
    await until("both duplicates handled", () => ids.every(answered), 30_000, consumer.child);
    expect(ids.flatMap((id) => handled(consumer.child, id)).filter((l) => l.includes('"msg":"queue message handled"'))).toHaveLength(2);
    const after = await Promise.all(healthy.map(state));
    expect(after.map((s) => s!.data.password)).toEqual(before.map((s) => s!.data.password));
    expect(after.map((s) => s!.annotations[ANNOTATIONS.rotationId])).toEqual(before.map((s) => s!.annotations[ANNOTATIONS.rotationId]));
    expect(new Set(after.map((s) => s!.data.password)).size).toBe(healthy.length);
    // Each healthy target was handled (rotated) exactly once by the plan's messages.
    const rotatedLines = consumer.child.lines.filter((l) => l.includes('"msg":"queue message handled"') && l.includes('"outcome":"rotated"'));
    expect(rotatedLines).toHaveLength(healthy.length);
  });

  it("acknowledges a malformed message once (logged, not retried, nothing written) and answers a request that is not a push with 400", async () => {
    const { targets, env } = await fleetTargets(2);
    const consumer = await serve("rotateQueue", env);
    const { topic } = await fleetQueue(consumer.url);
    const before = await Promise.all(targets.map(state));

    const ids = [
      await topic.publishMessage({ data: Buffer.from("{not json") }),
      await topic.publishMessage({ data: json({ v: 1, cluster: "nowhere", target: `${targets[0]!.namespace}/${targets[0]!.secret}`, due: new Date().toISOString() }) }),
      await topic.publishMessage({ data: json({ v: 2, cluster: "default", target: `${targets[1]!.namespace}/${targets[1]!.secret}`, due: new Date().toISOString() }) }),
    ];
    await until("all three refused", () => ids.every((id) => handled(consumer.child, id).length > 0), 30_000, consumer.child);
    await new Promise((r) => setTimeout(r, 4000)); // past the retry policy's backoff: an answered message is not delivered again
    for (const id of ids) {
      const lines = handled(consumer.child, id);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('"msg":"queue message refused"');
    }
    const why = ids.map((id) => handled(consumer.child, id)[0]).join("\n");
    expect(why).toMatch(/expected a JSON object/);
    expect(why).toMatch(/nowhere/);
    expect(why).toMatch(/v: expected 1/i);

    const notPush = await fetch(consumer.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ target: "a/b" }) });
    expect(notPush.status).toBe(400);
    expect(await notPush.json()).toMatchObject({ outcome: "refused", error: { type: "InputError", message: expect.stringMatching(/^Pub\/Sub push: expected/) } });
    const malformed = await fetch(consumer.url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ message: { messageId: "m-1", data: Buffer.from("[]").toString("base64") }, subscription: "projects/p/subscriptions/s" }),
    });
    expect(malformed.status).toBe(200);
    expect(await malformed.json()).toMatchObject({ id: "m-1", outcome: "malformed", error: { type: "InputError" } });

    const after = await Promise.all(targets.map(state));
    expect(after.map((s) => s!.data.password)).toEqual(before.map((s) => s!.data.password));
    expect(after.every((s) => s!.annotations[ANNOTATIONS.rotationId] === undefined)).toBe(true);
  });
});
