// The alternating strategy's annotations on an ExternalSecret: read, or refused naming what is wrong.
import { describe, expect, it } from "vitest";
import { InputError } from "../../lib/errors.ts";
import type { ExternalSecret } from "../../lib/manifests/index.ts";
import { strategyOf } from "../../lib/rotation/strategy.ts";

const es = (annotations: Record<string, string>, target = "app-consumer") =>
  ({ kind: "ExternalSecret", metadata: { name: "es", namespace: "ns", annotations, labels: {} }, target: { name: target, creationPolicy: "Merge" } }) as unknown as ExternalSecret;
const ALT = { "cnpg-rotator.io/strategy": "alternating", "cnpg-rotator.io/cluster": "c" };

describe("strategyOf", () => {
  it("is single-user without annotations, as ESO", () => {
    expect(strategyOf(es({}))).toEqual({ kind: "single-user" });
    expect(strategyOf(es({ "cnpg-rotator.io/cluster": "c" }))).toEqual({ kind: "single-user", cluster: "c" });
  });
  it("reads two roles and their passwordSecrets", () => {
    expect(strategyOf(es({ ...ALT, "cnpg-rotator.io/roles": "app_blue=c-blue, app_green=c-green" }))).toEqual({
      kind: "alternating",
      cluster: "c",
      roles: [
        { role: "app_blue", secretName: "c-blue" },
        { role: "app_green", secretName: "c-green" },
      ],
    });
  });
  const bad: [string, Record<string, string>, RegExp, string?][] = [
    ["both roles naming the same Secret", { ...ALT, "cnpg-rotator.io/roles": "app_blue=c-x, app_green=c-x" }, /both roles name Secret "c-x"/],
    ["the same role twice", { ...ALT, "cnpg-rotator.io/roles": "app_blue=c-1, app_blue=c-2" }, /both entries name role "app_blue"/],
    ["one role", { ...ALT, "cnpg-rotator.io/roles": "app_blue=c-blue" }, /exactly two roles/],
    ["a role Secret that is the consumer", { ...ALT, "cnpg-rotator.io/roles": "app_blue=app-consumer, app_green=c-green" }, /is the target Secret app-consumer/],
    ["no cluster", { "cnpg-rotator.io/strategy": "alternating", "cnpg-rotator.io/roles": "a=b, c=d" }, /needs the CNPG Cluster/],
    ["no roles", ALT, /needs two managed roles/],
    ["a malformed pair", { ...ALT, "cnpg-rotator.io/roles": "app_blue:c-blue, app_green=c-green" }, /expected "role=passwordSecret"/],
    ["an unknown strategy", { "cnpg-rotator.io/strategy": "round-robin" }, /expected "single-user" or "alternating"/],
    ["roles without the strategy", { "cnpg-rotator.io/roles": "a=b, c=d" }, /only used with/],
  ];
  for (const [what, annotations, message] of bad) {
    it(`refuses ${what}`, () => {
      expect(() => strategyOf(es(annotations))).toThrow(InputError);
      expect(() => strategyOf(es(annotations))).toThrow(message);
    });
  }
});
