// Amazon SQS as a fleet's WorkQueue. The client is trimmed as the Secrets Manager one is
// (lib/stores/aws-client.ts): middleware resolved once per command, the container's one
// credential chain, no SDK retries (lib/retry.ts is the one policy, around each call).
import {
  DeleteMessageBatchCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SQSClient,
  type SQSClientConfig,
} from "@aws-sdk/client-sqs";
import { defaultProvider } from "@aws-sdk/credential-provider-node";
import { InputError } from "../errors.ts";
import { isNetworkError, isTransientStatus, withRetry } from "../retry.ts";
import { MAX_DELAY_SECONDS, type OutgoingMessage, QueueError, type ReceivedMessage, type WorkQueue } from "./types.ts";

/** The queue the planner sends to: its URL (`https://sqs.<region>.amazonaws.com/<account>/<name>`). */
export const QUEUE_URL_ENV = "CNPG_ROTATOR_QUEUE_URL";
/** SendMessageBatch / DeleteMessageBatch take at most 10 entries. */
const BATCH = 10;
/** Batches in flight at once. */
const PARALLEL = 8;

let credentials: ReturnType<typeof defaultProvider> | undefined;

export function createSqsClient(region: string, options: SQSClientConfig = {}): SQSClient {
  credentials ??= defaultProvider();
  const client = new SQSClient({ region, cacheMiddleware: true, credentials, ...options });
  client.middlewareStack.add((next) => next, { step: "finalizeRequest", name: "retryMiddleware", priority: "high", override: true });
  return client;
}

/** The region of an SQS queue URL (`sqs.<region>.amazonaws.com`), else `fallback`. */
function regionOf(url: string, fallback: string | undefined): string {
  const m = /^https:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?\//.exec(url);
  const region = m?.[1] ?? fallback;
  if (!region) throw new InputError(`${QUEUE_URL_ENV}: cannot tell the region of "${url}"; set AWS_REGION`);
  return region;
}

export function sqsQueueFromEnvironment(env: NodeJS.ProcessEnv = process.env): SqsQueue {
  const url = env[QUEUE_URL_ENV]?.trim();
  if (!url) throw new InputError(`${QUEUE_URL_ENV} is not set: the planner needs the URL of the queue it sends to`);
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {}
  if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.pathname.split("/").filter(Boolean).length === 0) {
    throw new InputError(`${QUEUE_URL_ENV}: expected an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>), found "${url}"`);
  }
  return new SqsQueue(url, createSqsClient(regionOf(url, env.AWS_REGION || env.AWS_DEFAULT_REGION)));
}

const transient = (e: unknown) =>
  isNetworkError(e) || isTransientStatus((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode);

export class SqsQueue implements WorkQueue {
  readonly maxDelaySeconds = MAX_DELAY_SECONDS;
  readonly url: string;
  readonly #client: SQSClient;
  /** Requests sent (for the bench and its tests). */
  requests = 0;

  constructor(url: string, client: SQSClient) {
    this.url = url;
    this.#client = client;
  }

  async send(messages: readonly OutgoingMessage[]): Promise<void> {
    for (const m of messages) {
      if (!Number.isInteger(m.delaySeconds) || m.delaySeconds < 0 || m.delaySeconds > MAX_DELAY_SECONDS) {
        throw new InputError(`queue message: delaySeconds must be a whole number from 0 to ${MAX_DELAY_SECONDS}, found ${m.delaySeconds}`);
      }
    }
    const batches: OutgoingMessage[][] = [];
    for (let i = 0; i < messages.length; i += BATCH) batches.push(messages.slice(i, i + BATCH));
    let next = 0;
    const worker = async () => {
      while (next < batches.length) await this.#sendBatch(batches[next++]!);
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, batches.length) }, worker));
  }

  // An entry SQS refuses as the sender's fault is not retried; the others (throttling) are, alone.
  async #sendBatch(batch: readonly OutgoingMessage[]): Promise<void> {
    let pending = batch.map((m, i) => ({ Id: String(i), MessageBody: m.body, DelaySeconds: m.delaySeconds }));
    await withRetry(
      async () => {
        this.requests++;
        const out = await this.#client.send(new SendMessageBatchCommand({ QueueUrl: this.url, Entries: pending }));
        const failed = out.Failed ?? [];
        const fatal = failed.find((f) => f.SenderFault);
        if (fatal) throw new QueueError(`SendMessageBatch to ${this.url}: entry refused: ${fatal.Code ?? "?"}: ${fatal.Message ?? ""}`);
        if (failed.length > 0) {
          const ids = new Set(failed.map((f) => f.Id));
          pending = pending.filter((e) => ids.has(e.Id));
          throw Object.assign(new QueueError(`SendMessageBatch to ${this.url}: ${failed.length} entries not sent (${failed[0]!.Code})`), {
            $metadata: { httpStatusCode: 503 },
          });
        }
      },
      { what: "SendMessageBatch", isTransient: transient },
    );
  }

  async receive(max: number, waitSeconds: number): Promise<ReceivedMessage[]> {
    this.requests++;
    const out = await withRetry(
      () =>
        this.#client.send(
          new ReceiveMessageCommand({
            QueueUrl: this.url,
            MaxNumberOfMessages: Math.min(10, max),
            WaitTimeSeconds: waitSeconds,
            MessageSystemAttributeNames: ["ApproximateReceiveCount"],
          }),
        ),
      { what: "ReceiveMessage", isTransient: transient },
    );
    return (out.Messages ?? []).map((m) => ({
      id: m.MessageId ?? "",
      body: m.Body ?? "",
      receipt: m.ReceiptHandle ?? "",
      receiveCount: Number(m.Attributes?.ApproximateReceiveCount ?? "1"),
    }));
  }

  async delete(receipts: readonly string[]): Promise<void> {
    for (let i = 0; i < receipts.length; i += BATCH) {
      const entries = receipts.slice(i, i + BATCH).map((r, j) => ({ Id: String(j), ReceiptHandle: r }));
      this.requests++;
      const out = await withRetry(() => this.#client.send(new DeleteMessageBatchCommand({ QueueUrl: this.url, Entries: entries })), {
        what: "DeleteMessageBatch",
        isTransient: transient,
      });
      if (out.Failed?.length) throw new QueueError(`DeleteMessageBatch on ${this.url}: ${out.Failed.length} not deleted (${out.Failed[0]!.Code})`);
    }
  }

  close(): void {
    this.#client.destroy();
  }
}
