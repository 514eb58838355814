import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../lib/errors.ts";
import { PLAN, readPlannedTargets } from "../../lib/fleet/compiled.ts";
import { dueCheck, dueRule, dueUnder } from "../../lib/rotation/names.ts";
import { encodeMessage, parseMessage } from "../../lib/fleet/messages.ts";
import { isSqsEvent, sqsRecords } from "../../triggers/fleet.ts";
import { parseRotateRequest } from "../../triggers/request.ts";

const good = { cluster: "east", target: "app/cluster-example-app", due: "2026-12-02T03:00:00.000Z" };

describe("queue messages", () => {
  it("round-trip", () => {
    expect(parseMessage(encodeMessage(good), "m1")).toEqual({ v: 1, ...good });
  });

  it.each([
    ["not JSON", "{", /queue message m1: expected a JSON object .* found 1 characters that are not JSON/],
    ["another version", JSON.stringify({ ...good, v: 2 }), /queue message m1: v: expected 1/],
    ["no cluster", JSON.stringify({ v: 1, target: good.target, due: good.due }), /queue message m1: cluster:/],
    ["a bad target", JSON.stringify({ v: 1, ...good, target: "a/b/c" }), /queue message m1: target: expected "namespace\/name"/],
    ["a target without namespace", JSON.stringify({ v: 1, ...good, target: "name" }), /target: expected "namespace\/name"/],
    ["a bad due time", JSON.stringify({ v: 1, ...good, due: "tomorrow" }), /queue message m1: due:/],
    ["an extra field", JSON.stringify({ v: 1, ...good, force: true }), /queue message m1: \(message\): unknown field "force"/],
    ["an array", "[]", /queue message m1: \(message\):/],
  ])("refuses %s, naming the message and never quoting it", (_what, body, message) => {
    expect(() => parseMessage(body, "m1")).toThrow(InputError);
    expect(() => parseMessage(body, "m1")).toThrow(message);
  });

  it("never echoes a body, which may be anything", () => {
    const body = JSON.stringify({ v: 1, ...good, cluster: "SeCrEt-VaLuE" });
    expect(() => parseMessage(body, "m1")).toThrow(/cluster: expected a KubernetesCluster name$/);
  });
});

describe("SQS events", () => {
  const record = (id: string, body: string) => ({ messageId: id, body, eventSource: "aws:sqs", attributes: { ApproximateReceiveCount: "1" } });

  it("are told from manual payloads and scheduled events", () => {
    expect(isSqsEvent({ Records: [record("1", "{}")] })).toBe(true);
    expect(isSqsEvent({ target: "a/b" })).toBe(false);
    expect(isSqsEvent({ Records: [] })).toBe(false);
    expect(isSqsEvent({ Records: [{ ...record("1", "{}"), eventSource: "aws:s3" }] })).toBe(false);
    expect(sqsRecords({ Records: [record("1", "x"), record("2", "y")] })).toEqual([{ id: "1", body: "x" }, { id: "2", body: "y" }]);
    expect(() => sqsRecords({ Records: [{ ...record("1", "x"), messageId: 3 }] })).toThrow(/Records\[0\]\.messageId/);
  });

  it("a manual payload may name a cluster", () => {
    expect(parseRotateRequest({ target: "a/b", cluster: "east" })).toEqual({ trigger: "manual", cluster: "east", targets: ["a/b"] });
    expect(() => parseRotateRequest({ target: "a/b", cluster: "East!" })).toThrow(/event\.cluster: expected a KubernetesCluster name/);
  });
});

describe("the planner's compiled part (plan.json)", () => {
  it("is read back as written; anything else is refused naming the file", () => {
    const dir = mkdtempSync(join(tmpdir(), "cnpg-rotator-plan-"));
    try {
      const targets = [{ cluster: "east", target: "team/db-app", rule: { refreshPolicy: "Periodic", refreshIntervalMs: 3_600_000, specHash: "h", alternating: false } }];
      writeFileSync(join(dir, PLAN), JSON.stringify({ targets }));
      expect(readPlannedTargets(dir)).toEqual(targets);
      writeFileSync(join(dir, PLAN), JSON.stringify([targets]));
      expect(() => readPlannedTargets(dir)).toThrow(InputError);
      expect(() => readPlannedTargets(dir)).toThrow(`${join(dir, PLAN)}: expected the compiled { targets: [...] }`);
      writeFileSync(join(dir, PLAN), '{"targets": [{"cluster": "ea');
      expect(() => readPlannedTargets(dir)).toThrow(InputError);
      expect(() => readPlannedTargets(dir)).toThrow(`${join(dir, PLAN)} is not JSON`);
      writeFileSync(join(dir, PLAN), "null");
      expect(() => readPlannedTargets(dir)).toThrow(InputError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps of a target what the due check reads, and decides as the whole ExternalSecret does", () => {
    const es = { refreshPolicy: "Periodic", refreshIntervalMs: 86_400_000, specHash: "abc", metadata: { annotations: { "cnpg-rotator.io/strategy": "alternating" } } };
    const rule = dueRule(es as unknown as Parameters<typeof dueRule>[0]);
    expect(rule).toEqual({ refreshPolicy: "Periodic", refreshIntervalMs: 86_400_000, specHash: "abc", alternating: true });
    const now = new Date("2026-01-02T00:00:00Z");
    for (const rotatedAt of ["2026-01-01T00:00:00Z", "2026-01-01T00:01:00Z", "2025-12-01T00:00:00Z"]) {
      const secret = { annotations: { "cnpg-rotator.io/rotated-at": rotatedAt } };
      expect(dueUnder(rule, secret, now)).toEqual(dueCheck(es as unknown as Parameters<typeof dueCheck>[0], secret, now));
    }
  });
});
