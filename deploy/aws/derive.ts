// What the AWS deployment derives from the manifests it ships (as deploy/gcp/commands.ts does
// for Google Cloud), all from one ManifestSet read by lib/manifests:
//   schedules      — one EventBridge schedule per ExternalSecret, from its refreshInterval,
//                    and one per PushSecret;
//   iamStatements  — Secrets Manager access for exactly the secrets the PushSecrets write
//                    through an `aws` SecretStore (none at all when no such store is used).
// serverless/derive.cjs hands these to osls. Pure: no I/O, tested in test/unit/deploy-aws.test.ts.

import { InputError } from "../../lib/errors.ts";
import type { ManifestSet } from "../../lib/manifests/index.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE } from "../../lib/stores/index.ts";

/** Per-ExternalSecret fixed schedule, e.g. "cron(0 3 * * ? *)"; wins over every other setting. */
export const SCHEDULE_ANNOTATION = "cnpg-rotator.io/schedule";

export interface DeriveOptions {
  /** Fixed schedule for every rotation and push (--param schedule / CNPG_ROTATOR_SCHEDULE); "" = none. */
  readonly schedule?: string;
}

/** One thing to run on a timer; `expression` is absent when it runs only when invoked. */
export interface Schedule {
  /** `<namespace>/<name>`: the Secret to rotate, or the PushSecret to push. */
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

/** The rotate function's schedules: one per ExternalSecret, or none for those rotated on demand. */
export function rotateSchedules(set: ManifestSet, options: DeriveOptions = {}): Schedule[] {
  return set.externalSecrets.map((es) => {
    const target = `${es.metadata.namespace}/${es.target.name}`;
    const where = `${es.metadata.source.file}: document ${es.metadata.source.document} (ExternalSecret/${es.metadata.name})`;
    const fixed = es.metadata.annotations[SCHEDULE_ANNOTATION];
    let expression: string | undefined;
    let why: string;
    if (es.refreshPolicy !== "Periodic" || es.refreshIntervalMs === 0) {
      // Generated once (or on spec change): rotate by `serverless invoke`, not on a timer.
      why = es.refreshPolicy !== "Periodic" ? `refreshPolicy ${es.refreshPolicy}` : "refreshInterval 0";
    } else if (fixed) {
      expression = checkExpression(fixed, `${where}: metadata.annotations["${SCHEDULE_ANNOTATION}"]`);
      why = `annotation ${SCHEDULE_ANNOTATION}`;
    } else if (options.schedule) {
      expression = checkExpression(options.schedule, OVERRIDE);
      why = "schedule override";
    } else {
      expression = rateFor(es.refreshIntervalMs);
      why = `refreshInterval ${es.refreshInterval}${es.refreshIntervalMs % MINUTE === 0 ? "" : ", rounded up to whole minutes"}`;
    }
    const externalSecret = `${es.metadata.namespace}/${es.metadata.name}`;
    return {
      target,
      ...(expression !== undefined ? { expression } : {}),
      why,
      description: `rotate ${target} (ExternalSecret ${externalSecret}, ${why})`,
    };
  });
}

/** The push function's schedules: one per PushSecret whose refreshInterval is not 0. */
export function pushSchedules(set: ManifestSet, options: DeriveOptions = {}): Schedule[] {
  return set.pushSecrets
    .filter((ps) => ps.refreshIntervalMs !== 0) // pushed once, by `serverless invoke -f push`
    .map((ps) => {
      const target = `${ps.metadata.namespace}/${ps.metadata.name}`;
      const why = `refreshInterval ${ps.refreshInterval}`;
      const expression = options.schedule ? checkExpression(options.schedule, OVERRIDE) : rateFor(ps.refreshIntervalMs);
      return { target, expression, why, description: `push PushSecret ${target} (${why})` };
    });
}

/** osls `schedule` events for a function, one per distinct (target, expression). */
export function scheduleEvents(schedules: readonly Schedule[]): object[] {
  const seen = new Set<string>();
  const events: object[] = [];
  for (const s of schedules) {
    if (!s.expression || seen.has(`${s.target} ${s.expression}`)) continue;
    seen.add(`${s.target} ${s.expression}`);
    events.push({
      schedule: {
        rate: [s.expression],
        description: `cnpg-rotator: ${s.description}`,
        // Rebuild the real "Scheduled Event" envelope around our detail, so the handler sees a
        // scheduled trigger: a failed run then throws and Lambda's async retries resume it.
        // (A plain `input: {target}` would arrive as a manual call, whose failures are answered, not retried.)
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
          inputTemplate: `{"version":<version>,"id":<id>,"detail-type":<detailType>,"source":<source>,"account":<account>,"time":<time>,"region":<region>,"resources":<resources>,"detail":${JSON.stringify({ target: s.target })}}`,
        },
      },
    });
  }
  return events;
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

/** Least-privilege Secrets Manager statements for the aws-store secrets; [] when there are none. */
export function iamStatements(set: ManifestSet): object[] {
  const secrets = awsSecrets(set);
  if (secrets.length === 0) return [];
  // AWS appends "-" and 6 random characters to a secret's ARN; CreateSecret is checked against that ARN too.
  const arns = secrets.map(({ region, name }) => ({
    "Fn::Sub": `arn:\${AWS::Partition}:secretsmanager:${region}:\${AWS::AccountId}:secret:${name}-??????`,
  }));
  return [
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
