// What the Lambda event source mapping does for the rotate function, played against a real
// queue (moto's SQS): receive up to a batch, invoke the handler with an SQS event, delete
// the messages it did not report as failed. A failed message stays, and comes back after its
// visibility timeout, until the queue's redrive policy moves it to the dead-letter queue.
import type { ReceivedMessage, WorkQueue } from "../../lib/queues/types.ts";
import type { SqsBatchResponse, SqsEvent } from "../../triggers/fleet.ts";

export function sqsEvent(messages: readonly ReceivedMessage[]): SqsEvent {
  return {
    Records: messages.map((m) => ({
      eventSource: "aws:sqs",
      messageId: m.id,
      receiptHandle: m.receipt,
      body: m.body,
      attributes: { ApproximateReceiveCount: String(m.receiveCount) },
    })),
  };
}

export interface Drained {
  /** Invocations of the handler. */
  readonly batches: number;
  readonly received: number;
  readonly failedDeliveries: number;
}

/**
 * Polls until the queue has given nothing for `idleRounds` receives in a row (each waiting up
 * to `waitSeconds`), or `deadline` passes. `invoke` is the handler (or a fresh process running it).
 */
export async function drain(
  queue: WorkQueue,
  invoke: (event: SqsEvent) => Promise<SqsBatchResponse>,
  options: { batchSize?: number; waitSeconds?: number; idleRounds?: number; deadlineMs?: number; parallel?: number } = {},
): Promise<Drained> {
  const deadline = Date.now() + (options.deadlineMs ?? 60_000);
  let batches = 0;
  let received = 0;
  let failedDeliveries = 0;
  const worker = async () => {
    let idle = 0;
    while (idle < (options.idleRounds ?? 2) && Date.now() < deadline) {
      const messages = await queue.receive(options.batchSize ?? 10, options.waitSeconds ?? 1);
      if (messages.length === 0) {
        idle++;
        continue;
      }
      idle = 0;
      batches++;
      received += messages.length;
      const answer = await invoke(sqsEvent(messages));
      const failed = new Set(answer.batchItemFailures.map((f) => f.itemIdentifier));
      failedDeliveries += failed.size;
      const done = messages.filter((m) => !failed.has(m.id)).map((m) => m.receipt);
      if (done.length > 0) await queue.delete(done);
    }
  };
  await Promise.all(Array.from({ length: options.parallel ?? 1 }, worker));
  return { batches, received, failedDeliveries };
}
