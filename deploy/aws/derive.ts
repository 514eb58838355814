// What the AWS deployment derives from the manifests it ships (as deploy/gcp/commands.ts does
// for Google Cloud), all from one ManifestSet read by lib/manifests:
//   schedules      — the planner's one EventBridge schedule and the push function's one,
//                    whatever the number of targets (README, "Fleets");
//   iamStatements  — Secrets Manager access for exactly the secrets the PushSecrets write
//                    through an `aws` SecretStore (none at all when no such store is used).
// serverless/derive.cjs hands these to osls. Pure: no I/O, tested in test/unit/deploy-aws.test.ts.

import { InputError } from "../../lib/errors.ts";
import type { ManifestSet } from "../../lib/manifests/index.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE } from "../../lib/stores/types.ts";

/** Was a per-ExternalSecret fixed schedule; refused since one planner schedule serves every target. */
export const SCHEDULE_ANNOTATION = "cnpg-rotator.io/schedule";

export interface DeriveOptions {
  /** Fixed schedule for every rotation and push (--param schedule / CNPG_ROTATOR_SCHEDULE); "" = none. */
  readonly schedule?: string;
}

/** One thing to run on a timer; `expression` is absent when it runs only when invoked. */
export interface Schedule {
  /** What it runs for: "*" (every target). */
  readonly target: string;
  readonly expression?: string;
  /** Where the schedule comes from, for the rule's description. */
  readonly why: string;
  readonly description: string;
}

// osls's own check of schedule expressions (EventBridge rules: UTC, at least 1 minute).
const RATE = /^rate\((?:1 (?:minute|hour|day)|(?:1\d+|[2-9]\d*) (?:minute|hour|day)s)\)$/;
const CRON = /^cron\(\S+ \S+ \S+ \S+ \S+ \S+\)$/;
const MINUTE = 60_000;

/** An EventBridge rate for a period, rounded up to whole minutes (EventBridge's minimum is 1 minute). */
export function rateFor(ms: number): string {
  const minutes = Math.max(1, Math.ceil(ms / MINUTE));
  const [n, unit] = minutes % 60 === 0 ? [minutes / 60, "hour"] : [minutes, "minute"];
  return `rate(${n} ${unit}${n === 1 ? "" : "s"})`;
}

function checkExpression(expression: string, where: string): string {
  if (!RATE.test(expression) && !CRON.test(expression)) {
    throw new InputError(
      `${where}: expected an EventBridge schedule such as "rate(24 hours)" or "cron(0 3 * * ? *)" (six fields, UTC), found "${expression}"`,
    );
  }
  return expression;
}

const OVERRIDE = "schedule override (--param schedule / CNPG_ROTATOR_SCHEDULE)";
const HOUR = 60 * MINUTE;

/**
 * The planner's one schedule, whatever the number of targets: a quarter of the shortest
 * periodic refreshInterval, between 1 minute and 1 hour (a target is rotated at most one
 * planner period plus the spread window late), or the override. A per-ExternalSecret
 * schedule no longer exists: its annotation is refused, so it cannot silently mean nothing.
 */
export function plannerSchedule(set: ManifestSet, options: DeriveOptions = {}): Schedule {
  for (const es of set.externalSecrets) {
    if (es.metadata.annotations[SCHEDULE_ANNOTATION] !== undefined) {
      throw new InputError(
        `${es.metadata.source.file}: document ${es.metadata.source.document} (ExternalSecret/${es.metadata.name}): metadata.annotations["${SCHEDULE_ANNOTATION}"]: ` +
          "per-ExternalSecret schedules were dropped (one planner schedule serves every target; README, \"Fleets\"): remove the annotation, or set the planner's with --param schedule",
      );
    }
  }
  if (options.schedule) {
    const expression = checkExpression(options.schedule, OVERRIDE);
    return { target: "*", expression, why: "schedule override", description: "plan every cluster's due rotations (schedule override)" };
  }
  const periodic = set.externalSecrets.filter((es) => es.refreshPolicy === "Periodic" && es.refreshIntervalMs > 0);
  const shortest = Math.min(...periodic.map((es) => es.refreshIntervalMs), 4 * HOUR);
  const expression = rateFor(Math.min(HOUR, Math.max(MINUTE, shortest / 4)));
  const why =
    periodic.length === 0 ? "no periodic refreshInterval: hourly, for targets never rotated yet" : "a quarter of the shortest refreshInterval, 1 minute to 1 hour";
  return { target: "*", expression, why, description: `plan every cluster's due rotations (${why})` };
}

/** Seconds the planner spreads its messages over: its period, at most SQS's 900 s delay. */
export function plannerSpreadSeconds(schedule: Schedule): number {
  const m = /^rate\((\d+) (minute|hour|day)s?\)$/.exec(schedule.expression ?? "");
  if (!m) return 900;
  const seconds = Number(m[1]) * { minute: 60, hour: 3600, day: 86_400 }[m[2] as "minute" | "hour" | "day"];
  return Math.min(900, seconds);
}

/** The push function's one schedule: the shortest PushSecret refreshInterval (or the override); none when no PushSecret has one. */
export function pushSchedule(set: ManifestSet, options: DeriveOptions = {}): Schedule | undefined {
  const periodic = set.pushSecrets.filter((ps) => ps.refreshIntervalMs !== 0);
  if (periodic.length === 0) return undefined;
  if (options.schedule) {
    return { target: "*", expression: checkExpression(options.schedule, OVERRIDE), why: "schedule override", description: "push every PushSecret (schedule override)" };
  }
  const expression = rateFor(Math.min(...periodic.map((ps) => ps.refreshIntervalMs)));
  return { target: "*", expression, why: "the shortest PushSecret refreshInterval", description: "push every PushSecret (the shortest refreshInterval)" };
}

/** The osls `schedule` event of one schedule (none: []), delivering a real "Scheduled Event" with an empty detail. */
export function scheduleEvents(schedule: Schedule | undefined): object[] {
  if (!schedule?.expression) return [];
  return [
    {
      schedule: {
        rate: [schedule.expression],
        description: `cnpg-rotator: ${schedule.description}`,
        // The real envelope, so the handler sees a scheduled trigger (a failed push run then
        // throws and Lambda's async retries run it again); {} = every target.
        inputTransformer: {
          inputPathsMap: {
            version: "$.version",
            id: "$.id",
            detailType: "$.detail-type",
            source: "$.source",
            account: "$.account",
            time: "$.time",
            region: "$.region",
            resources: "$.resources",
          },
          inputTemplate:
            '{"version":<version>,"id":<id>,"detail-type":<detailType>,"source":<source>,"account":<account>,"time":<time>,"region":<region>,"resources":<resources>,"detail":{}}',
        },
      },
    },
  ];
}

/** The Secrets Manager secrets the PushSecrets write through aws stores (prefix + remoteKey), sorted. */
export function awsSecrets(set: ManifestSet): { region: string; name: string }[] {
  const found = new Map<string, { region: string; name: string }>();
  for (const ps of set.pushSecrets) {
    for (const store of ps.stores) {
      if (store.provider.name !== "aws") continue;
      const { region, prefix = "" } = store.provider.config;
      for (const item of ps.data) found.set(`${region}\u0000${prefix}${item.remoteKey}`, { region, name: prefix + item.remoteKey });
    }
  }
  return [...found.values()].sort((a, b) => `${a.region}/${a.name}`.localeCompare(`${b.region}/${b.name}`));
}

/** Past this many secrets, the IAM statements name store prefixes instead (see iamStatements). */
export const MAX_SECRET_ARNS = 20;

/** The (region, prefix) of every aws SecretStore a PushSecret writes through, sorted. */
function awsPrefixes(set: ManifestSet): { region: string; prefix: string }[] {
  const found = new Map<string, { region: string; prefix: string }>();
  for (const ps of set.pushSecrets) {
    for (const store of ps.stores) {
      if (store.provider.name !== "aws") continue;
      const { region, prefix = "" } = store.provider.config;
      found.set(`${region}\u0000${prefix}`, { region, prefix });
    }
  }
  return [...found.values()].sort((a, b) => `${a.region}/${a.prefix}`.localeCompare(`${b.region}/${b.prefix}`));
}

/** The Secrets Manager secrets the KubernetesClusters' kubeconfigFrom name (`aws:<name or ARN>`), sorted. */
export function clusterSecrets(set: ManifestSet): string[] {
  const refs = set.clusters.flatMap((c) => (c.spec.kubeconfigFrom?.startsWith("aws:") ? [c.spec.kubeconfigFrom.slice(4)] : []));
  return [...new Set(refs)].sort();
}

/** Least-privilege Secrets Manager statements for the aws-store secrets and the clusters' stored kubeconfigs; [] when there are none. */
export function iamStatements(set: ManifestSet): object[] {
  const kubeconfigs = clusterSecrets(set).map((ref) =>
    ref.startsWith("arn:") ? ref : { "Fn::Sub": `arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${ref}-??????` },
  );
  const readKubeconfigs =
    kubeconfigs.length === 0
      ? []
      : [{ Sid: "CnpgRotatorReadClusterConnections", Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: kubeconfigs }];
  const secrets = awsSecrets(set);
  if (secrets.length === 0) return readKubeconfigs;
  // AWS appends "-" and 6 random characters to a secret's ARN; CreateSecret is checked against that ARN too.
  // One ARN per secret while that stays small; past MAX_SECRET_ARNS (a fleet), one per store
  // prefix (`<prefix>*`), so the role stays the same size whatever the number of targets (IAM
  // allows 10 KB of inline policy): give the fleet's SecretStores a prefix to keep that narrow.
  // Writes stay limited to secrets carrying our tag either way.
  const arns =
    secrets.length <= MAX_SECRET_ARNS
      ? secrets.map(({ region, name }) => ({
          "Fn::Sub": `arn:\${AWS::Partition}:secretsmanager:${region}:\${AWS::AccountId}:secret:${name}-??????`,
        }))
      : awsPrefixes(set).map(({ region, prefix }) => ({
          "Fn::Sub": `arn:\${AWS::Partition}:secretsmanager:${region}:\${AWS::AccountId}:secret:${prefix}*`,
        }));
  return [
    ...readKubeconfigs,
    {
      // Reads also cover secrets we do not own: the store must see them to refuse them by name.
      Sid: "CnpgRotatorReadSecrets",
      Effect: "Allow",
      Action: ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
      Resource: arns,
    },
    {
      // Create only with our ownership tag and no other (CreateSecret with Tags also needs TagResource).
      Sid: "CnpgRotatorCreateOwnedSecrets",
      Effect: "Allow",
      Action: ["secretsmanager:CreateSecret", "secretsmanager:TagResource"],
      Resource: arns,
      Condition: {
        StringEquals: { [`aws:RequestTag/${MANAGED_BY_KEY}`]: MANAGED_BY_VALUE },
        "ForAllValues:StringEquals": { "aws:TagKeys": [MANAGED_BY_KEY] },
      },
    },
    {
      // Change only secrets carrying our tag: IAM enforces the store's own ownership check.
      // DeleteSecret: PushSecret deletionPolicy Delete, and rolling back a never-promoted first version;
      // RestoreSecret: writing again to a secret deleted with a recovery window.
      Sid: "CnpgRotatorWriteOwnedSecrets",
      Effect: "Allow",
      Action: [
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:DeleteSecret",
        "secretsmanager:RestoreSecret",
      ],
      Resource: arns,
      Condition: { StringEquals: { [`secretsmanager:ResourceTag/${MANAGED_BY_KEY}`]: MANAGED_BY_VALUE } },
    },
  ];
}

/** The queue's statement (resource RotateQueue in serverless.yml): the planner sends; the event source mapping receives and deletes for the rotate function. */
export function queueStatement(): object {
  return {
    Sid: "CnpgRotatorQueue",
    Effect: "Allow",
    Action: ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"],
    Resource: { "Fn::GetAtt": ["RotateQueue", "Arn"] },
  };
}
