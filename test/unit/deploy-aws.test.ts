// What the AWS deployment derives from the manifests (deploy/aws/derive.ts): the planner's and
// push's one schedule each, and least-privilege IAM; and serverless/derive.cjs, the shim osls require()s.

import { mkdtempSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  awsSecrets,
  clusterSecrets,
  iamStatements,
  plannerSchedule,
  plannerSpreadSeconds,
  pushSchedule,
  queueStatement,
  rateFor,
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

describe("plannerSchedule: one schedule whatever the number of ExternalSecrets", () => {
  const cases: [label: string, specs: string[], expression: string][] = [
    ["24h: hourly", ["  refreshInterval: 24h\n"], "rate(1 hour)"],
    ["ESO's default of 1h: every 15 minutes", [""], "rate(15 minutes)"],
    ["the shortest decides", ["  refreshInterval: 24h\n", "  refreshInterval: 2h\n"], "rate(30 minutes)"],
    ["1m: every minute, EventBridge's shortest", ["  refreshInterval: 1m\n"], "rate(1 minute)"],
    ["only on demand: hourly, for targets never rotated", ['  refreshInterval: "0"\n', "  refreshPolicy: CreatedOnce\n"], "rate(1 hour)"],
  ];
  it.each(cases)("%s", (_label, specs, expression) => {
    const set = load(...specs.map((spec, i) => externalSecret(`es${i}`, `db${i}`, spec)));
    expect(plannerSchedule(set).expression).toBe(expression);
  });

  it("the override wins; a spread window follows the period, at most SQS's 900 s", () => {
    const set = load(externalSecret("a", "db-a", "  refreshInterval: 2h\n"));
    expect(plannerSchedule(set, { schedule: "rate(7 days)" }).expression).toBe("rate(7 days)");
    expect(plannerSpreadSeconds(plannerSchedule(set))).toBe(900);
    expect(plannerSpreadSeconds(plannerSchedule(load(externalSecret("a", "db", "  refreshInterval: 20m\n"))))).toBe(300);
    expect(plannerSpreadSeconds(plannerSchedule(set, { schedule: "cron(0 3 * * ? *)" }))).toBe(900);
  });

  it("refuses the dropped per-ExternalSecret schedule annotation, and an expression EventBridge would refuse", () => {
    const annotated = load(externalSecret("a", "db", "", `  annotations: {${SCHEDULE_ANNOTATION}: "cron(0 3 * * ? *)"}\n`));
    expect(() => plannerSchedule(annotated)).toThrow(InputError);
    expect(() => plannerSchedule(annotated)).toThrow(
      `m.yaml: document 2 (ExternalSecret/a): metadata.annotations["${SCHEDULE_ANNOTATION}"]: per-ExternalSecret schedules were dropped`,
    );
    const plain = load(externalSecret("a", "db"));
    for (const bad of ["rate(0 minutes)", "rate(1 hours)", "rate(2 hour)", "cron(0 3 * * *)", "daily"]) {
      expect(() => plannerSchedule(plain, { schedule: bad })).toThrow(/^schedule override .*: expected an EventBridge schedule/);
    }
    for (const good of ["rate(1 minute)", "rate(10 minutes)", "rate(1 day)", "rate(12 hours)", "cron(0/5 * * * ? *)"]) {
      expect(plannerSchedule(plain, { schedule: good }).expression).toBe(good);
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
  it("delivers a real Scheduled Event with an empty detail (every target); none without a schedule", () => {
    const set = load(externalSecret("a", "db", "  refreshInterval: 2h\n"));
    const events = scheduleEvents(plannerSchedule(set)) as { schedule: Record<string, unknown> }[];
    expect(events.map((e) => e.schedule.rate)).toEqual([["rate(30 minutes)"]]);
    expect(scheduleEvents(undefined)).toEqual([]);
    const { inputTransformer } = events[0]!.schedule as { inputTransformer: { inputPathsMap: Record<string, string>; inputTemplate: string } };
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
    expect(JSON.parse(delivered)).toEqual({ ...scheduled, detail: {} });
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

describe("pushSchedule", () => {
  it("one for every PushSecret, at the shortest refreshInterval; none when all push once", () => {
    const set = load(STORES, pushSecret("p", "30m", "{name: files}", ["a"]), pushSecret("q", "0", "{name: files}", ["b"]), pushSecret("r", "2h", "{name: files}", ["c"]));
    expect(pushSchedule(set)?.expression).toBe("rate(30 minutes)");
    expect(pushSchedule(set, { schedule: "cron(0 4 * * ? *)" })?.expression).toBe("cron(0 4 * * ? *)");
    expect(pushSchedule(load(STORES, pushSecret("q", "0", "{name: files}", ["b"])))).toBeUndefined();
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

describe("the clusters' stored kubeconfigs", () => {
  it("GetSecretValue on each kubeconfigFrom aws: secret, by name or ARN, and nothing for other stores", () => {
    const cluster = (name: string, from: string) =>
      `apiVersion: cnpg-rotator.io/v1alpha1\nkind: KubernetesCluster\nmetadata: {name: ${name}}\nspec: {kubeconfigFrom: "${from}"}\n`;
    const set = load(
      cluster("a", "aws:kc/a"),
      cluster("b", "aws:arn:aws:secretsmanager:eu-west-1:123456789012:secret:kc/b-AbCdEf"),
      cluster("c", "gcpsm:projects/p/secrets/kc"),
    );
    expect(clusterSecrets(set)).toEqual(["arn:aws:secretsmanager:eu-west-1:123456789012:secret:kc/b-AbCdEf", "kc/a"]);
    expect(iamStatements(set)).toEqual([
      {
        Sid: "CnpgRotatorReadClusterConnections",
        Effect: "Allow",
        Action: ["secretsmanager:GetSecretValue"],
        Resource: [
          "arn:aws:secretsmanager:eu-west-1:123456789012:secret:kc/b-AbCdEf",
          { "Fn::Sub": `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:kc/a-??????` },
        ],
      },
    ]);
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
    expect(await shim.planEvents!(settings)).toEqual(scheduleEvents(plannerSchedule(set)));
    expect(await shim.pushEvents!(settings)).toEqual(scheduleEvents(pushSchedule(set)));
    expect(await shim.iamStatements!(settings)).toEqual([queueStatement()]);
    expect(await shim.planSpreadSeconds!(settings)).toBe("900");
    // The functions read the manifests compiled at package time: the same set, file names relative to the service.
    const compiled = await shim.compiledManifests!(settings);
    expect(compiled).toBe("dist/aws/manifests");
    const shipped = readManifests([join(ROOT, compiled as string)], { namespace: "team" });
    expect(shipped.externalSecrets.map((es) => [es.metadata.namespace, es.target.name, es.metadata.source.file])).toEqual([
      ["team", "cluster-example-app", "manifests/external-secret.yaml"],
    ]);
    const overridden = await shim.planEvents!(framework({ manifests: "manifests", namespace: "", schedule: "rate(2 days)" }));
    expect((overridden as { schedule: { rate: string[] } }[])[0]!.schedule.rate).toEqual(["rate(2 days)"]);
  });

  it("fails the package on a manifest the function would refuse", async () => {
    const dir = mkdtempSync(join(tmpdir(), "derive-"));
    const bad = externalSecret("es", "db", '  refreshInterval: "daily"\n');
    writeFileSync(join(dir, "m.yaml"), [password(), bad].join("---\n"));
    await expect(shim.planEvents!(framework({ manifests: dir }))).rejects.toThrow(
      /m\.yaml: document 2 \(ExternalSecret\/es\): spec\.refreshInterval: expected a Go duration/,
    );
    await expect(shim.planEvents!(framework({ manifests: "test/unit/go-reference" }))).rejects.toThrow(/no \*\.yaml files/);
    await expect(shim.planEvents!(framework({ manifests: "nowhere" }))).rejects.toThrow(/nowhere: no such file or directory/);
  });
});
