// The AWS emulator the suite runs (moto, started through test/infra/moto/server.py) behaves as
// Secrets Manager does where stock moto 5.2.5 does not: each patched behaviour, through the SDK.
import { randomUUID } from "node:crypto";
import {
  CreateSecretCommand,
  GetSecretValueCommand,
  ListSecretVersionIdsCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from "@aws-sdk/client-secrets-manager";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { afterAll, describe, expect, it } from "vitest";

// The endpoint and dummy credentials come from test/infra/global-setup.ts.
const aws = new SecretsManagerClient({ region: "us-east-1" });
afterAll(() => aws.destroy());

const token = () => randomUUID();

async function newSecret(value: string): Promise<{ name: string; first: string }> {
  const name = `moto-as-aws/${randomUUID()}`;
  const first = token();
  await aws.send(new CreateSecretCommand({ Name: name, SecretString: value, ClientRequestToken: first }));
  return { name, first };
}

/** Version id → its labels, deprecated versions included. */
async function labels(name: string): Promise<Record<string, string[]>> {
  const out = await aws.send(new ListSecretVersionIdsCommand({ SecretId: name, IncludeDeprecated: true }));
  return Object.fromEntries((out.Versions ?? []).map((v) => [v.VersionId!, [...(v.VersionStages ?? [])].sort()]));
}

const holders = (all: Record<string, string[]>, label: string) => Object.keys(all).filter((id) => all[id]!.includes(label));

const put = (name: string, clientRequestToken: string, value: string, stages?: string[]) =>
  aws.send(
    new PutSecretValueCommand({
      SecretId: name,
      ClientRequestToken: clientRequestToken,
      SecretString: value,
      ...(stages ? { VersionStages: stages } : {}),
    }),
  );

const promote = (name: string, to: string, from: string) =>
  aws.send(
    new UpdateSecretVersionStageCommand({
      SecretId: name,
      VersionStage: "AWSCURRENT",
      MoveToVersionId: to,
      RemoveFromVersionId: from,
    }),
  );

const secretValue = async (name: string, options: { VersionId?: string; VersionStage?: string } = {}) =>
  (await aws.send(new GetSecretValueCommand({ SecretId: name, ...options }))).SecretString;

describe("moto as AWS Secrets Manager (test/infra/moto/server.py)", () => {
  it("refuses a ClientRequestToken used before with a different value, AWSPENDING version or not; the same value is a no-op", async () => {
    const { name, first } = await newSecret("v0");
    const pending = token();
    await put(name, pending, "staged", ["AWSPENDING"]);
    // Stock moto overwrites an AWSPENDING version's value here.
    await expect(put(name, pending, "another", ["AWSPENDING"])).rejects.toMatchObject({ name: "ResourceExistsException" });
    expect(await secretValue(name, { VersionId: pending })).toBe("staged");
    await expect(put(name, first, "another")).rejects.toMatchObject({ name: "ResourceExistsException" });

    const before = await labels(name);
    const again = await put(name, pending, "staged", ["AWSPENDING"]);
    expect(again.VersionId).toBe(pending);
    expect(await labels(name)).toEqual(before);
  });

  it("moving AWSCURRENT leaves it on exactly one version, AWSPREVIOUS on the one it left, and that is what a plain read returns", async () => {
    const { name, first } = await newSecret("v0");
    const staged = token();
    await put(name, staged, "v1", ["AWSPENDING"]);
    await promote(name, staged, first);
    const after = await labels(name);
    expect(holders(after, "AWSCURRENT")).toEqual([staged]);
    expect(holders(after, "AWSPREVIOUS")).toEqual([first]);
    // Stock moto still answers v0: its default version is not moved.
    expect(await secretValue(name)).toBe("v1");
  });

  it("a push after a promote moves AWSCURRENT from the promoted version: one AWSCURRENT, one AWSPREVIOUS", async () => {
    const { name, first } = await newSecret("v0");
    const staged = token();
    await put(name, staged, "v1", ["AWSPENDING"]);
    await promote(name, staged, first);
    const pushed = token();
    await put(name, pushed, "v2");
    const all = await labels(name);
    // Stock moto: AWSCURRENT on both the promoted and the pushed version, AWSPREVIOUS on the first.
    expect(holders(all, "AWSCURRENT")).toEqual([pushed]);
    expect(holders(all, "AWSPREVIOUS")).toEqual([staged]);
    expect(all[first]).toEqual([]);
    expect(await secretValue(name)).toBe("v2");
    expect(await secretValue(name, { VersionStage: "AWSPREVIOUS" })).toBe("v1");

    // And the next rotation over that state.
    const next = token();
    await put(name, next, "v3", ["AWSPENDING"]);
    await promote(name, next, pushed);
    const later = await labels(name);
    expect(holders(later, "AWSCURRENT")).toEqual([next]);
    expect(holders(later, "AWSPREVIOUS")).toEqual([pushed]);
  });

  it("a new AWSCURRENT version leaves the old one its other labels, and takes the labels it is given from their holders", async () => {
    const { name, first } = await newSecret("v0");
    // The current version also pending (as a first rotation stages it), then a push.
    await aws.send(
      new UpdateSecretVersionStageCommand({ SecretId: name, VersionStage: "AWSPENDING", MoveToVersionId: first }),
    );
    const pushed = token();
    await put(name, pushed, "v1");
    expect(await labels(name)).toEqual({ [first]: ["AWSPENDING", "AWSPREVIOUS"], [pushed]: ["AWSCURRENT"] });
    const both = token();
    await put(name, both, "v2", ["AWSCURRENT", "AWSPENDING"]);
    expect(await labels(name)).toEqual({ [first]: [], [pushed]: ["AWSPREVIOUS"], [both]: ["AWSCURRENT", "AWSPENDING"] });
  });

  it("refuses to attach a label another version holds unless RemoveFromVersionId names that version", async () => {
    const { name, first } = await newSecret("v0");
    const a = token();
    const b = token();
    await put(name, a, "a", ["AWSPENDING"]);
    await put(name, b, "b", ["custom"]);
    // Stock moto puts AWSPENDING on b as well.
    await expect(
      aws.send(new UpdateSecretVersionStageCommand({ SecretId: name, VersionStage: "AWSPENDING", MoveToVersionId: b })),
    ).rejects.toMatchObject({ name: "InvalidParameterException" });
    await expect(
      aws.send(
        new UpdateSecretVersionStageCommand({ SecretId: name, VersionStage: "AWSPENDING", MoveToVersionId: b, RemoveFromVersionId: first }),
      ),
    ).rejects.toMatchObject({ name: "InvalidParameterException" });
    expect(holders(await labels(name), "AWSPENDING")).toEqual([a]);
    await aws.send(
      new UpdateSecretVersionStageCommand({ SecretId: name, VersionStage: "AWSPENDING", MoveToVersionId: b, RemoveFromVersionId: a }),
    );
    expect(holders(await labels(name), "AWSPENDING")).toEqual([b]);
  });
});

// Patches 5 and 6 make moto's SQS fast at depth (the fleet bench's 10,000 messages); what it answers must not change.
describe("moto's SQS, patched for speed only (test/infra/moto/server.py, 5 and 6)", () => {
  const sqs = new SQSClient({ region: "us-east-1", endpoint: process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER! });
  afterAll(() => sqs.destroy());
  const counts = async (url: string) => {
    const a = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["All"] }))).Attributes!;
    return [a.ApproximateNumberOfMessages, a.ApproximateNumberOfMessagesNotVisible, a.ApproximateNumberOfMessagesDelayed].map(Number);
  };

  it("the approximate counts stay exact after sends and receives, and FIFO content deduplication still applies", async () => {
    const url = (await sqs.send(new CreateQueueCommand({ QueueName: `moto-speed-${randomUUID()}` }))).QueueUrl!;
    for (let b = 0; b < 3; b++) {
      const entries = Array.from({ length: 10 }, (_, i) => ({ Id: String(i), MessageBody: `m${b}-${i}`, DelaySeconds: i < 4 ? 60 : 0 }));
      await sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: entries }));
    }
    expect(await counts(url)).toEqual([18, 0, 12]);
    const got = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, VisibilityTimeout: 60 }));
    expect(got.Messages).toHaveLength(10);
    expect(await counts(url)).toEqual([8, 10, 12]);

    const fifo = (
      await sqs.send(new CreateQueueCommand({ QueueName: `moto-speed-${randomUUID()}.fifo`, Attributes: { FifoQueue: "true", ContentBasedDeduplication: "true" } }))
    ).QueueUrl!;
    for (let i = 0; i < 3; i++) await sqs.send(new SendMessageCommand({ QueueUrl: fifo, MessageBody: "same", MessageGroupId: "g" }));
    expect((await counts(fifo))[0]).toBe(1);
  });
});
