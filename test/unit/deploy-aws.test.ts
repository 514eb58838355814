// What the AWS deployment derives from the manifests (deploy/aws/derive.ts): EventBridge
// schedules and least-privilege IAM; and serverless/derive.cjs, the shim osls require()s.

import { mkdtempSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  awsSecrets,
  iamStatements,
  pushSchedules,
  rateFor,
  rotateSchedules,
  SCHEDULE_ANNOTATION,
  scheduleEvents,
} from "../../deploy/aws/derive.ts";
import { InputError } from "../../lib/errors.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { readManifests } from "../../lib/rotation/files.ts";

const ROOT = join(import.meta.dirname, "../..");
const GEN = "{apiVersion: generators.external-secrets.io/v1alpha1, kind: Password, name: gen}";

const password = (namespace = "default") =>
  `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata: {name: gen, namespace: ${namespace}}
spec: {length: 20}
`;

/** An ExternalSecret `name` for Secret `secret`, with extra spec and metadata lines. */
const externalSecret = (name: string, secret: string, spec = "", metadata = "") => `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: ${name}
${metadata}spec:
${spec}  target: {name: ${secret}, creationPolicy: Merge}
  dataFrom: [{sourceRef: {generatorRef: ${GEN}}}]
`;

const load = (...docs: string[]) => loadManifests([{ file: "m.yaml", text: [password(), ...docs].join("---\n") }]);

describe("rotateSchedules: one EventBridge schedule per ExternalSecret", () => {
  const cases: [label: string, spec: string, expression: string | undefined, why: string][] = [
    ["ESO's default of 1h", "", "rate(1 hour)", "refreshInterval 1h"],
    ["24h", "  refreshInterval: 24h\n", "rate(24 hours)", "refreshInterval 24h"],
    ["1.1h is exactly 66 minutes", "  refreshInterval: 1.1h\n", "rate(66 minutes)", "refreshInterval 1.1h"],
    ["1h30m", "  refreshInterval: 1h30m\n", "rate(90 minutes)", "refreshInterval 1h30m"],
    ["1m", "  refreshInterval: 1m\n", "rate(1 minute)", "refreshInterval 1m"],
    ["90s, rounded up", "  refreshInterval: 90s\n", "rate(2 minutes)", "refreshInterval 90s, rounded up to whole minutes"],
    ["30s, EventBridge's minimum", "  refreshInterval: 30s\n", "rate(1 minute)", "refreshInterval 30s, rounded up to whole minutes"],
    ["refreshInterval 0: on demand", '  refreshInterval: "0"\n', undefined, "refreshInterval 0"],
    ["CreatedOnce: on demand", "  refreshPolicy: CreatedOnce\n", undefined, "refreshPolicy CreatedOnce"],
    ["OnChange: on demand", "  refreshPolicy: OnChange\n  refreshInterval: 1h\n", undefined, "refreshPolicy OnChange"],
  ];
  it.each(cases)("%s", (_label, spec, expression, why) => {
    const [s] = rotateSchedules(load(externalSecret("es", "db", spec)));
    expect(s).toEqual({
      target: "default/db",
      ...(expression ? { expression } : {}),
      why,
      description: `rotate default/db (ExternalSecret default/es, ${why})`,
    });
  });

  it("an annotation wins over the override, the override over refreshInterval", () => {
    const set = load(
      externalSecret("a", "db-a", "  refreshInterval: 2h\n", `  annotations: {${SCHEDULE_ANNOTATION}: "cron(0 3 * * ? *)"}\n`),
      externalSecret("b", "db-b", "  refreshInterval: 2h\n"),
      externalSecret("c", "db-c", '  refreshInterval: "0"\n'),
    );
    expect(rotateSchedules(set).map((s) => s.expression)).toEqual(["cron(0 3 * * ? *)", "rate(2 hours)", undefined]);
    const overridden = rotateSchedules(set, { schedule: "rate(7 days)" });
    expect(overridden.map((s) => [s.expression, s.why])).toEqual([
      ["cron(0 3 * * ? *)", `annotation ${SCHEDULE_ANNOTATION}`],
      ["rate(7 days)", "schedule override"],
      [undefined, "refreshInterval 0"],
    ]);
  });

  it("refuses an expression EventBridge would refuse, saying where it came from", () => {
    const annotated = load(externalSecret("a", "db", "", `  annotations: {${SCHEDULE_ANNOTATION}: "0 3 * * *"}\n`));
    expect(() => rotateSchedules(annotated)).toThrow(InputError);
    expect(() => rotateSchedules(annotated)).toThrow(
      `m.yaml: document 2 (ExternalSecret/a): metadata.annotations["${SCHEDULE_ANNOTATION}"]: expected an EventBridge schedule`,
    );
    const plain = load(externalSecret("a", "db"));
    for (const bad of ["rate(0 minutes)", "rate(1 hours)", "rate(2 hour)", "cron(0 3 * * *)", "daily"]) {
      expect(() => rotateSchedules(plain, { schedule: bad })).toThrow(/^schedule override .*: expected an EventBridge schedule/);
    }
    for (const good of ["rate(1 minute)", "rate(10 minutes)", "rate(1 day)", "rate(12 hours)", "cron(0/5 * * * ? *)"]) {
      expect(rotateSchedules(plain, { schedule: good })[0]!.expression).toBe(good);
    }
  });
});

describe("rateFor", () => {
  it.each([
    [1, "rate(1 minute)"],
    [60_000, "rate(1 minute)"],
    [60_001, "rate(2 minutes)"],
    [59 * 60_000, "rate(59 minutes)"],
    [3_600_000, "rate(1 hour)"],
    [61 * 60_000, "rate(61 minutes)"],
    [7 * 86_400_000, "rate(168 hours)"],
  ])("%d ms → %s", (ms, rate) => expect(rateFor(ms)).toBe(rate));
});

describe("scheduleEvents", () => {
  it("delivers a real Scheduled Event whose detail names the target, once per target and expression", () => {
    const set = load(
      externalSecret("a", "db", "  refreshInterval: 2h\n"),
      externalSecret("b", "db", "  refreshInterval: 2h\n"),
      externalSecret("c", "db", "  refreshInterval: 3h\n"),
      externalSecret("d", "other", '  refreshInterval: "0"\n'),
    );
    const events = scheduleEvents(rotateSchedules(set)) as { schedule: Record<string, unknown> }[];
    expect(events.map((e) => e.schedule.rate)).toEqual([["rate(2 hours)"], ["rate(3 hours)"]]);
    const { description, inputTransformer } = events[0]!.schedule as {
      description: string;
      inputTransformer: { inputPathsMap: Record<string, string>; inputTemplate: string };
    };
    expect(description).toBe("cnpg-rotator: rotate default/db (ExternalSecret default/a, refreshInterval 2h)");
    // EventBridge substitutes each <name> with the JSON value at its path; the result is the event the handler gets.
    const scheduled: Record<string, unknown> = {
      version: "0",
      id: "abc",
      "detail-type": "Scheduled Event",
      source: "aws.events",
      account: "123456789012",
      time: "2026-01-01T00:00:00Z",
      region: "eu-west-1",
      resources: ["arn:aws:events:eu-west-1:123456789012:rule/x"],
    };
    const delivered = inputTransformer.inputTemplate.replace(/<(\w+)>/g, (_, name: string) => {
      const path = inputTransformer.inputPathsMap[name]!;
      return JSON.stringify(scheduled[path.slice(2)]);
    });
    expect(JSON.parse(delivered)).toEqual({ ...scheduled, detail: { target: "default/db" } });
  });
});

const STORES = `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: aws-eu}
spec:
  provider:
    aws: {service: SecretsManager, region: eu-west-1, prefix: "cnpg/"}
---
apiVersion: external-secrets.io/v1
kind: ClusterSecretStore
metadata: {name: aws-us}
spec:
  provider:
    aws: {service: SecretsManager, region: us-east-1}
---
apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: files}
spec:
  provider:
    file: {path: /tmp/store.json}
`;

const pushSecret = (name: string, refreshInterval: string, stores: string, keys: string[]) => `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: ${name}}
spec:
  refreshInterval: "${refreshInterval}"
  secretStoreRefs: [${stores}]
  selector: {secret: {name: db}}
  data:
${keys.map((k) => `    - match: {remoteRef: {remoteKey: ${k}}}\n`).join("")}`;

describe("pushSchedules", () => {
  it("one per PushSecret with a refreshInterval, the override applying to all", () => {
    const set = load(STORES, pushSecret("p", "30m", "{name: files}", ["a"]), pushSecret("q", "0", "{name: files}", ["b"]));
    expect(pushSchedules(set)).toEqual([
      { target: "default/p", expression: "rate(30 minutes)", why: "refreshInterval 30m", description: "push PushSecret default/p (refreshInterval 30m)" },
    ]);
    expect(pushSchedules(set, { schedule: "cron(0 4 * * ? *)" }).map((s) => s.expression)).toEqual(["cron(0 4 * * ? *)"]);
  });
});

describe("awsSecrets and iamStatements", () => {
  it("no aws store, no Secrets Manager access at all", () => {
    const set = load(STORES, pushSecret("p", "1h", "{name: files}", ["a"]));
    expect(awsSecrets(set)).toEqual([]);
    expect(iamStatements(set)).toEqual([]);
  });

  it("exactly the secrets the PushSecrets write through aws stores: prefix + remoteKey, per region, once each", () => {
    const set = load(
      STORES,
      pushSecret("p", "1h", "{name: aws-eu}, {name: aws-us, kind: ClusterSecretStore}, {name: files}", ["db", "db-password"]),
      pushSecret("q", "0", "{name: aws-eu}", ["db", "z"]),
    );
    expect(awsSecrets(set)).toEqual([
      { region: "eu-west-1", name: "cnpg/db" },
      { region: "eu-west-1", name: "cnpg/db-password" },
      { region: "eu-west-1", name: "cnpg/z" },
      { region: "us-east-1", name: "db" },
      { region: "us-east-1", name: "db-password" },
    ]);
    const statements = iamStatements(set) as { Sid: string; Action: string[]; Resource: unknown[]; Condition?: unknown }[];
    expect(statements.map((s) => s.Sid)).toEqual(["CnpgRotatorReadSecrets", "CnpgRotatorCreateOwnedSecrets", "CnpgRotatorWriteOwnedSecrets"]);
    for (const s of statements) {
      expect(s.Resource).toHaveLength(5);
      expect(s.Resource[0]).toEqual({ "Fn::Sub": `arn:\${AWS::Partition}:secretsmanager:eu-west-1:\${AWS::AccountId}:secret:cnpg/db-??????` });
    }
    expect(statements[0]!.Condition).toBeUndefined();
    expect(statements[1]!.Condition).toEqual({
      StringEquals: { "aws:RequestTag/managed-by": "cnpg-rotator" },
      "ForAllValues:StringEquals": { "aws:TagKeys": ["managed-by"] },
    });
    expect(statements[2]!.Action).toContain("secretsmanager:PutSecretValue");
    expect(statements[2]!.Condition).toEqual({ StringEquals: { "secretsmanager:ResourceTag/managed-by": "cnpg-rotator" } });
  });
});

describe("serverless/derive.cjs, as osls loads it", () => {
  // osls require()s the file and calls each export with its resolver; Node 24 loads the TypeScript behind it.
  const shim = createRequire(import.meta.url)("../../serverless/derive.cjs") as Record<
    string,
    (framework: { resolveConfigurationProperty: (path: string[]) => Promise<unknown> }) => Promise<unknown>
  >;
  const framework = (rotator: Record<string, string>) => ({
    resolveConfigurationProperty: async (path: string[]) => {
      expect(path).toEqual(["custom", "rotator"]);
      return rotator;
    },
  });

  it("derives from the manifests serverless.yml names, relative to it, with its namespace and schedule", async () => {
    const set = readManifests([join(ROOT, "manifests")], { namespace: "team" });
    const settings = framework({ manifests: "manifests", namespace: "team", schedule: "" });
    expect(await shim.rotateEvents!(settings)).toEqual(scheduleEvents(rotateSchedules(set)));
    expect(await shim.pushEvents!(settings)).toEqual(scheduleEvents(pushSchedules(set)));
    expect(await shim.iamStatements!(settings)).toEqual([]);
    expect(JSON.stringify(await shim.rotateEvents!(settings))).toContain('\\"target\\":\\"team/cluster-example-app\\"');
    const overridden = await shim.rotateEvents!(framework({ manifests: "manifests", namespace: "", schedule: "rate(2 days)" }));
    expect((overridden as { schedule: { rate: string[] } }[])[0]!.schedule.rate).toEqual(["rate(2 days)"]);
  });

  it("fails the package on a manifest the function would refuse", async () => {
    const dir = mkdtempSync(join(tmpdir(), "derive-"));
    const bad = externalSecret("es", "db", '  refreshInterval: "daily"\n');
    writeFileSync(join(dir, "m.yaml"), [password(), bad].join("---\n"));
    await expect(shim.rotateEvents!(framework({ manifests: dir }))).rejects.toThrow(
      /m\.yaml: document 2 \(ExternalSecret\/es\): spec\.refreshInterval: expected a Go duration/,
    );
    await expect(shim.rotateEvents!(framework({ manifests: "test/unit/go-reference" }))).rejects.toThrow(/no \*\.yaml files/);
    await expect(shim.rotateEvents!(framework({ manifests: "nowhere" }))).rejects.toThrow(/nowhere: no such file or directory/);
  });
});
