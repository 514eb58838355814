// The fleet bench's planner as its own process (a fresh container): reads every target's
// compiled manifests, lists each cluster's namespaces, sends one message per due target to
// the queue. Prints one JSON line: the plan's figures, its seconds and its peak RSS (the
// bench's parent holds the test's clients and the Secrets it created, so it cannot say).
import { fleetFromEnvironment } from "../lib/fleet/fleet.ts";
import { planFleet } from "../lib/fleet/plan.ts";
import { silentLogger } from "../lib/log.ts";
import { createSqsClient, SqsQueue } from "../lib/queues/sqs.ts";

const start = performance.now();
const fleet = fleetFromEnvironment({ env: process.env, log: silentLogger });
// No spread here (the bench would wait 15 minutes).
const plan = await planFleet(fleet, { spreadSeconds: 0 });
const planned = performance.now();
const sqs = createSqsClient("us-east-1", { endpoint: process.env.BENCH_SQS_ENDPOINT! });
await new SqsQueue(process.env.CNPG_ROTATOR_QUEUE_URL!, sqs).send(plan.messages);
await fleet.close();
sqs.destroy();
const end = performance.now();
process.stdout.write(
  `${JSON.stringify({
    seconds: (end - start) / 1000,
    sendSeconds: (end - planned) / 1000,
    messages: plan.messages.length,
    requests: Object.fromEntries(plan.clusters.map((c) => [c.cluster, c.requests])),
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  })}\n`,
);
process.exit(0);
