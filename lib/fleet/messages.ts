// The message the planner sends per due target, and its strict reading by the consumer: a
// message we did not write (or a truncated one) is that message's failure, named by its id,
// and nothing is written for it. Small on purpose: what to rotate is in the manifests the
// consumer ships with; the message only says which target, where, and for which period.
import * as z from "zod";
import { InputError } from "../errors.ts";

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const dnsName = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

const schema = z.strictObject({
  /** The format's version; another one is refused rather than guessed at. */
  v: z.literal(1),
  cluster: z.string().regex(dnsName, "expected a KubernetesCluster name").max(253),
  target: z
    .string()
    .max(317)
    .refine((t) => {
      const [ns, name, extra] = t.split("/");
      return extra === undefined && dnsLabel.test(ns ?? "") && name !== undefined && dnsName.test(name);
    }, 'expected "namespace/name" of a target Secret'),
  /** When the target fell due (ISO 8601): the period this message is for. */
  due: z.iso.datetime({ offset: true }),
});

export type FleetMessage = z.infer<typeof schema>;

export function encodeMessage(m: Omit<FleetMessage, "v">): string {
  return JSON.stringify({ v: 1, cluster: m.cluster, target: m.target, due: m.due });
}

/** Reads one message body; InputError (never quoting the body) when it is not one of ours. */
export function parseMessage(body: string, id: string): FleetMessage {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    throw new InputError(`queue message ${id}: expected a JSON object {"v":1,"cluster","target","due"}, found ${body.length} characters that are not JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.map(String).join(".") || "(message)";
    const message =
      issue.code === "unrecognized_keys"
        ? `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`
        : issue.message.replace(/^Invalid input: /, "");
    throw new InputError(`queue message ${id}: ${field}: ${message}`);
  }
  return parsed.data;
}
