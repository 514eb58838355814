// Runs a bundled handler in a fresh process, as Lambda does: imports the bundle, hands it
// each event in turn and prints one JSON line: the responses, and the HTTP requests each
// invocation sent (by host and, for AWS, operation). The bundle sends every request over
// node:http(s), so `http.client.request.start` sees them all.
//
//   node test/infra/run-bundle.ts <bundle.mjs> '<event JSON>' ['<event JSON>' ...]
import dc from "node:diagnostics_channel";
import { pathToFileURL } from "node:url";

const [bundle, ...events] = process.argv.slice(2);
if (!bundle || events.length === 0) {
  console.error("usage: run-bundle.ts <bundle.mjs> <event JSON>...");
  process.exit(2);
}

let current: string[] = [];
dc.subscribe("http.client.request.start", (message) => {
  const request = (message as { request: { host: string; method: string; path: string; getHeader(n: string): unknown } }).request;
  const target = request.getHeader("x-amz-target");
  current.push(typeof target === "string" ? `aws ${target.replace(/^secretsmanager\./, "")}` : `${request.method} ${request.path.split("?")[0]}`);
});

const mod = (await import(pathToFileURL(bundle).href)) as { handler: (event: unknown) => Promise<unknown> };
const invocations: { response: unknown; requests: string[] }[] = [];
for (const event of events) {
  current = [];
  const response = await mod.handler(JSON.parse(event));
  invocations.push({ response, requests: current });
}
process.stdout.write(`${JSON.stringify(invocations)}\n`);
// The handler keeps its warm engine for the next event, as on Lambda: do not wait for it.
process.exit(0);
