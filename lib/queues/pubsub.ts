// Google Cloud Pub/Sub as a fleet's WorkQueue, over its REST API (v1): the planner publishes
// to a topic; on GCP a push subscription delivers each message to the rotate function
// (triggers/fleet.ts answers the push), so receive/delete — a pull subscription's `:pull`
// and `:acknowledge` — are for the local poller and tests. REST with google-auth-library
// (already in the GCP bundle for GKE) instead of @google-cloud/pubsub: a few small requests
// do not need a gRPC stack in the function. Pub/Sub cannot delay a message, so
// maxDelaySeconds is 0 and the planner sends every due target at once.
import { InputError } from "../errors.ts";
import { isNetworkError, isTransientStatus, withRetry } from "../retry.ts";
import { type OutgoingMessage, QueueError, type ReceivedMessage, type WorkQueue } from "./types.ts";

/** The topic the planner publishes to: `projects/<project>/topics/<topic>`. */
export const TOPIC_ENV = "CNPG_ROTATOR_TOPIC";
/** Set to the emulator's host:port, as Google's own clients read it: plain HTTP, no credentials. */
export const EMULATOR_ENV = "PUBSUB_EMULATOR_HOST";
const SCOPE = "https://www.googleapis.com/auth/pubsub";
/** Messages per publish request (Pub/Sub allows 1,000 and 10 MB; ours are ~120 bytes). */
const BATCH = 500;
const PARALLEL = 4;
const REQUEST_TIMEOUT_MS = 10_000;

const TOPIC = /^projects\/[a-z][-a-z0-9.:]{4,61}[a-z0-9]\/topics\/[A-Za-z][-A-Za-z0-9._~%+]{2,254}$/;
const SUBSCRIPTION = /^projects\/[a-z][-a-z0-9.:]{4,61}[a-z0-9]\/subscriptions\/[A-Za-z][-A-Za-z0-9._~%+]{2,254}$/;

export interface PubSubQueueOptions {
  /** `projects/<project>/topics/<topic>`. */
  readonly topic: string;
  /** `projects/<project>/subscriptions/<name>`: a pull subscription, for receive and delete. */
  readonly subscription?: string;
  /** Default https://pubsub.googleapis.com. */
  readonly endpoint?: string;
  /** An OAuth access token for each request; none against the emulator. */
  readonly token?: () => Promise<string | undefined>;
}

class HttpStatusError extends QueueError {
  readonly status: number;
  constructor(message: string, status: number) {
    super(message);
    this.status = status;
  }
}

const transient = (e: unknown) => isNetworkError(e) || (e instanceof HttpStatusError && isTransientStatus(e.status));

/** The planner's queue from the environment: CNPG_ROTATOR_TOPIC, and PUBSUB_EMULATOR_HOST when testing. */
export function pubSubQueueFromEnvironment(env: NodeJS.ProcessEnv = process.env): PubSubQueue {
  const topic = env[TOPIC_ENV]?.trim();
  if (!topic) throw new InputError(`${TOPIC_ENV} is not set: the planner needs the Pub/Sub topic it publishes to (projects/<project>/topics/<topic>)`);
  const emulator = env[EMULATOR_ENV]?.trim();
  if (emulator) return new PubSubQueue({ topic, endpoint: `http://${emulator}` });
  let auth: Promise<{ getAccessToken(): Promise<{ token?: string | null }> }> | undefined;
  return new PubSubQueue({
    topic,
    token: async () => {
      auth ??= import("google-auth-library").then(({ GoogleAuth }) => new GoogleAuth({ scopes: [SCOPE] }).getClient());
      return (await (await auth).getAccessToken()).token ?? undefined;
    },
  });
}

export class PubSubQueue implements WorkQueue {
  readonly maxDelaySeconds = 0;
  readonly topic: string;
  readonly subscription: string | undefined;
  readonly #endpoint: string;
  readonly #token: (() => Promise<string | undefined>) | undefined;
  /** Requests sent (for tests). */
  requests = 0;

  constructor(options: PubSubQueueOptions) {
    if (!TOPIC.test(options.topic)) throw new InputError(`Pub/Sub topic: expected projects/<project>/topics/<topic>, found "${options.topic}"`);
    if (options.subscription !== undefined && !SUBSCRIPTION.test(options.subscription)) {
      throw new InputError(`Pub/Sub subscription: expected projects/<project>/subscriptions/<name>, found "${options.subscription}"`);
    }
    this.topic = options.topic;
    this.subscription = options.subscription;
    this.#endpoint = (options.endpoint ?? "https://pubsub.googleapis.com").replace(/\/+$/, "");
    this.#token = options.token;
  }

  async send(messages: readonly OutgoingMessage[]): Promise<void> {
    for (const m of messages) {
      if (m.delaySeconds !== 0) {
        throw new InputError(`queue message: Pub/Sub cannot delay a message, found delaySeconds ${m.delaySeconds} (the planner spreads over maxDelaySeconds 0)`);
      }
    }
    const batches: OutgoingMessage[][] = [];
    for (let i = 0; i < messages.length; i += BATCH) batches.push(messages.slice(i, i + BATCH));
    let next = 0;
    const worker = async () => {
      while (next < batches.length) {
        const batch = batches[next++]!;
        const out = (await this.#call(`${this.topic}:publish`, {
          messages: batch.map((m) => ({ data: Buffer.from(m.body).toString("base64") })),
        })) as { messageIds?: string[] };
        if (out.messageIds?.length !== batch.length) {
          throw new QueueError(`publish to ${this.topic}: ${out.messageIds?.length ?? 0} of ${batch.length} messages accepted`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, batches.length) }, worker));
  }

  /** From the pull subscription; `waitSeconds` is not Pub/Sub's (a pull returns what is there, or waits briefly itself). */
  async receive(max: number, _waitSeconds: number): Promise<ReceivedMessage[]> {
    const out = (await this.#call(`${this.#subscription()}:pull`, { maxMessages: max })) as {
      receivedMessages?: { ackId: string; deliveryAttempt?: number; message: { messageId: string; data?: string } }[];
    };
    return (out.receivedMessages ?? []).map((r) => ({
      id: r.message.messageId,
      body: Buffer.from(r.message.data ?? "", "base64").toString("utf8"),
      receipt: r.ackId,
      // Set only on a subscription with a dead-letter policy.
      receiveCount: r.deliveryAttempt ?? 1,
    }));
  }

  async delete(receipts: readonly string[]): Promise<void> {
    for (let i = 0; i < receipts.length; i += BATCH) {
      await this.#call(`${this.#subscription()}:acknowledge`, { ackIds: receipts.slice(i, i + BATCH) });
    }
  }

  #subscription(): string {
    if (!this.subscription) throw new InputError(`Pub/Sub queue of ${this.topic}: receive and delete need a pull subscription`);
    return this.subscription;
  }

  async #call(resource: string, body: unknown): Promise<unknown> {
    const url = `${this.#endpoint}/v1/${resource}`;
    const what = resource.slice(resource.lastIndexOf(":") + 1);
    return withRetry(
      async () => {
        this.requests++;
        const token = await this.#token?.();
        const res = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        const text = await res.text();
        if (!res.ok) {
          // Google's error body names the problem ({"error":{"message"}}); it never holds a message's data.
          let reason = text.slice(0, 300);
          try {
            reason = (JSON.parse(text) as { error?: { message?: string } }).error?.message ?? reason;
          } catch {}
          throw new HttpStatusError(`Pub/Sub ${what} on ${resource.slice(0, resource.lastIndexOf(":"))}: HTTP ${res.status}: ${reason}`, res.status);
        }
        return text ? JSON.parse(text) : {};
      },
      { what: `Pub/Sub ${what}`, isTransient: transient },
    );
  }
}
