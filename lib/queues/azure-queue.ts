// Azure Queue Storage as a fleet's WorkQueue (@azure/storage-queue): the planner puts one
// message per due target, held invisible for its delay; on Azure the function's
// storageQueue trigger receives and deletes (one message per invocation; after the host's
// maxDequeueCount a failing one moves to `<queue>-poison`), so receive/delete are for the
// local poller and tests. Bodies are base64, the Functions host's default messageEncoding.
// Queue Storage has no batch put: one request per message, PARALLEL at once.
import { type QueueClient, QueueServiceClient } from "@azure/storage-queue";
import { InputError } from "../errors.ts";
import { isNetworkError, isTransientStatus, withRetry } from "../retry.ts";
import { MAX_DELAY_SECONDS, type OutgoingMessage, QueueError, type ReceivedMessage, type WorkQueue } from "./types.ts";

/** The queue's name (default cnpg-rotator-queue), as the trigger's queueName reads it. */
export const QUEUE_NAME_ENV = "CNPG_ROTATOR_QUEUE_NAME";
export const DEFAULT_QUEUE_NAME = "cnpg-rotator-queue";
/** The Functions host's storage setting: a connection string, or (identity-based) `AzureWebJobsStorage__accountName`. */
export const STORAGE_ENV = "AzureWebJobsStorage";
const PARALLEL = 16;
const REQUEST_TIMEOUT_MS = 10_000;
/** How long a received message stays invisible to other receivers (the local poller's; the host sets its own). */
const VISIBILITY_SECONDS = 30;

const transient = (e: unknown) => isNetworkError(e) || isTransientStatus((e as { statusCode?: number }).statusCode);

/** Queue names: 3–63 lowercase letters, digits and single hyphens. */
const QUEUE_NAME = /^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$/;

/** The planner's queue from the function app's settings. */
export async function azureQueueFromEnvironment(env: NodeJS.ProcessEnv = process.env): Promise<AzureStorageQueue> {
  const name = env[QUEUE_NAME_ENV]?.trim() || DEFAULT_QUEUE_NAME;
  const connection = env[STORAGE_ENV]?.trim();
  if (connection) return new AzureStorageQueue(QueueServiceClient.fromConnectionString(connection).getQueueClient(name));
  const account = env[`${STORAGE_ENV}__accountName`]?.trim();
  const serviceUri = env[`${STORAGE_ENV}__queueServiceUri`]?.trim() || (account ? `https://${account}.queue.core.windows.net` : undefined);
  if (!serviceUri) {
    throw new InputError(
      `${STORAGE_ENV} is not set (nor ${STORAGE_ENV}__accountName / __queueServiceUri): the planner needs the storage account of queue "${name}"`,
    );
  }
  const { DefaultAzureCredential } = await import("@azure/identity");
  return new AzureStorageQueue(new QueueServiceClient(serviceUri, new DefaultAzureCredential()).getQueueClient(name));
}

export class AzureStorageQueue implements WorkQueue {
  /** Queue Storage allows 7 days; the planner never spreads past SQS's 15 minutes. */
  readonly maxDelaySeconds = MAX_DELAY_SECONDS;
  readonly name: string;
  readonly #client: QueueClient;
  /** Requests sent (for tests). */
  requests = 0;

  constructor(client: QueueClient) {
    if (!QUEUE_NAME.test(client.name)) throw new InputError(`Azure queue name: expected 3-63 lowercase letters, digits and hyphens, found "${client.name}"`);
    this.name = client.name;
    this.#client = client;
  }

  async send(messages: readonly OutgoingMessage[]): Promise<void> {
    for (const m of messages) {
      if (!Number.isInteger(m.delaySeconds) || m.delaySeconds < 0 || m.delaySeconds > this.maxDelaySeconds) {
        throw new InputError(`queue message: delaySeconds must be a whole number from 0 to ${this.maxDelaySeconds}, found ${m.delaySeconds}`);
      }
    }
    let next = 0;
    const worker = async () => {
      while (next < messages.length) {
        const m = messages[next++]!;
        await this.#call("put message", () =>
          this.#client.sendMessage(Buffer.from(m.body).toString("base64"), {
            ...(m.delaySeconds > 0 ? { visibilityTimeout: m.delaySeconds } : {}),
            abortSignal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
          }),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, messages.length) }, worker));
  }

  /** Queue Storage does not long-poll: `waitSeconds` is not used. */
  async receive(max: number, _waitSeconds: number): Promise<ReceivedMessage[]> {
    const out = await this.#call("get messages", () =>
      this.#client.receiveMessages({
        numberOfMessages: Math.min(32, max),
        visibilityTimeout: VISIBILITY_SECONDS,
        abortSignal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      }),
    );
    return out.receivedMessageItems.map((m) => ({
      id: m.messageId,
      body: Buffer.from(m.messageText, "base64").toString("utf8"),
      receipt: JSON.stringify([m.messageId, m.popReceipt]),
      receiveCount: m.dequeueCount,
    }));
  }

  async delete(receipts: readonly string[]): Promise<void> {
    for (const receipt of receipts) {
      const [id, pop] = JSON.parse(receipt) as [string, string];
      await this.#call("delete message", () => this.#client.deleteMessage(id, pop, { abortSignal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) }));
    }
  }

  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(
        () => {
          this.requests++;
          return fn();
        },
        { what: `Azure queue ${what}`, isTransient: transient },
      );
    } catch (e) {
      if (e instanceof InputError) throw e;
      const status = (e as { statusCode?: number }).statusCode;
      const code = (e as { code?: string }).code;
      throw new QueueError(`Azure queue ${this.name}: ${what}: ${status ? `HTTP ${status} ` : ""}${code ?? (e as Error).message}`, { cause: e });
    }
  }
}
