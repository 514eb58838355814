// One consumer container of the fleet bench: a fresh process that loads the deployed rotate
// handler (the bundle, with the manifests compiled per target) and plays the
// event source mapping for itself — receive a batch, invoke, delete what did not fail — until
// the queue is idle. Prints one JSON line: per-message outcomes and durations, its peak RSS
// (of the whole process: the bundle, plus this loop's own SQS client).
import { SqsQueue, createSqsClient } from "../lib/queues/sqs.ts";
import type { consumeSqs } from "../triggers/fleet.ts";
import { sqsEvent } from "../test/infra/fleet-poller.ts";

// The deployed bundle (functions/aws/rotate.mjs of `serverless package`), else the source.
const { handler } = (await import(process.env.BENCH_HANDLER ?? "../functions/aws/rotate.ts")) as {
  handler: (event: unknown) => Promise<unknown>;
};
const queue = new SqsQueue(process.env.CNPG_ROTATOR_QUEUE_URL!, createSqsClient("us-east-1", { endpoint: process.env.BENCH_SQS_ENDPOINT! }));
const outcomes: Record<string, number> = {};
const durations: number[] = [];
const invocationRss: number[] = [];
const liveHeap: number[] = [];
let idle = 0;
let batches = 0;
while (idle < 2) {
  const messages = await queue.receive(10, 1);
  if (messages.length === 0) {
    idle++;
    continue;
  }
  idle = 0;
  batches++;
  const answer = (await handler(sqsEvent(messages))) as Awaited<ReturnType<typeof consumeSqs>>;
  for (const r of answer.results) {
    outcomes[r.outcome] = (outcomes[r.outcome] ?? 0) + 1;
    if (r.durationMs !== undefined) durations.push(r.durationMs);
  }
  invocationRss.push(process.memoryUsage.rss());
  // With --expose-gc: what stays alive after an invocation (a leak grows it; lazy collection does not).
  (globalThis as { gc?: () => void }).gc?.();
  liveHeap.push(process.memoryUsage().heapUsed);
  const failed = new Set(answer.batchItemFailures.map((f) => f.itemIdentifier));
  const done = messages.filter((m) => !failed.has(m.id)).map((m) => m.receipt);
  if (done.length > 0) await queue.delete(done);
}
process.stdout.write(`${JSON.stringify({ batches, outcomes, durations, peakRssBytes: process.resourceUsage().maxRSS * 1024, invocationRss, liveHeap })}\n`);
process.exit(0);
