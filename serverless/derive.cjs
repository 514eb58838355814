// Derives deployment settings from the manifests the function ships with:
//   rotateEvents  — one EventBridge schedule per ExternalSecret, from its refreshInterval;
//   iamStatements — Secrets Manager access for exactly the secrets the PushSecrets write
//                   through an `aws` SecretStore (none at all when no such store is used).
// serverless.yml references them as ${file(./serverless/derive.cjs):rotateEvents} etc.
//
// It reads only the few fields it needs (kind, metadata, refreshInterval, refreshPolicy,
// target.name, store/PushSecret refs). The function validates everything else itself at run
// time; run `cnpg-rotator validate -f manifests` before packaging to catch that early.
// CommonJS on purpose: osls loads variables files with require().
//
// Preview without the framework:  npx node serverless/derive.cjs [manifests-dir]
"use strict";

const { readdirSync, readFileSync, statSync } = require("node:fs");
const { join, resolve } = require("node:path");
const { parseAllDocuments } = require("yaml");

/** Per-ExternalSecret fixed schedule, e.g. "cron(0 3 * * ? *)"; wins over every other setting. */
const SCHEDULE_ANNOTATION = "cnpg-rotator.io/schedule";
/** The ownership tag the aws store puts on every secret it creates (lib/stores/types.ts). */
const MANAGED_BY_KEY = "managed-by";
const MANAGED_BY_VALUE = "cnpg-rotator";

// osls's own check of schedule expressions (EventBridge rules: UTC, at least 1 minute).
const RATE = /^rate\((?:1 (?:minute|hour|day)|(?:1\d+|[2-9]\d*) (?:minute|hour|day)s)\)$/;
const CRON = /^cron\(\S+ \S+ \S+ \S+ \S+ \S+\)$/;

const UNIT_MS = { ns: 1e-6, us: 1e-3, "µs": 1e-3, "μs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds in a Go duration ("24h", "1h30m", "90s", "0"); undefined if it is not one or negative. */
function parseGoDuration(text) {
  let s = String(text).trim();
  if (s.startsWith("+")) s = s.slice(1);
  if (s === "0" || s === "-0") return 0;
  if (s === "" || s.startsWith("-")) return undefined;
  let total = 0;
  const part = /^(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;
  while (s.length > 0) {
    const m = part.exec(s);
    if (!m) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]];
    s = s.slice(m[0].length);
  }
  // Whole milliseconds (1.1h must not become 66.00000000000001 minutes); "500ns" is still not "0".
  return total > 0 ? Math.max(1, Math.round(total)) : 0;
}

/** An EventBridge rate for a period, rounded up to whole minutes (EventBridge's minimum is 1 minute). */
function rateFor(ms) {
  const minutes = Math.max(1, Math.ceil(ms / 60_000));
  const [n, unit] = minutes % 60 === 0 ? [minutes / 60, "hour"] : [minutes, "minute"];
  return `rate(${n} ${unit}${n === 1 ? "" : "s"})`;
}

function checkExpression(expression, where) {
  if (!RATE.test(expression) && !CRON.test(expression)) {
    throw new Error(
      `${where}: expected an EventBridge schedule such as "rate(24 hours)" or "cron(0 3 * * ? *)" (six fields, UTC), found "${expression}"`,
    );
  }
  return expression;
}

/** Every document of every *.yaml / *.yml under `paths` (files or directories), with where it came from. */
function readDocuments(paths) {
  const docs = [];
  for (const path of paths) {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      throw new Error(`manifests: ${path}: no such file or directory`);
    }
    const files = stat.isDirectory()
      ? readdirSync(path)
          .filter((f) => /\.ya?ml$/.test(f))
          .sort()
          .map((f) => join(path, f))
      : [path];
    for (const file of files) {
      parseAllDocuments(readFileSync(file, "utf8")).forEach((doc, i) => {
        const where = `${file}: document ${i + 1}`;
        if (doc.errors.length > 0) throw new Error(`${where}: invalid YAML: ${doc.errors[0].message.split("\n")[0]}`);
        const value = doc.toJS();
        if (value && typeof value === "object" && !Array.isArray(value)) docs.push({ where, value });
      });
    }
  }
  return docs;
}

/** What the deployment needs to know about the manifests: rotation targets and aws-store secret names. */
function summarize(paths, options = {}) {
  const defaultNamespace = options.namespace || "default";
  const docs = readDocuments(paths).map(({ where, value }) => {
    const metadata = value.metadata && typeof value.metadata === "object" ? value.metadata : {};
    return {
      where: `${where} (${value.kind}/${metadata.name})`,
      kind: value.kind,
      name: metadata.name,
      namespace: metadata.namespace || defaultNamespace,
      annotations: metadata.annotations || {},
      spec: value.spec && typeof value.spec === "object" ? value.spec : {},
    };
  });

  const targets = [];
  for (const d of docs.filter((x) => x.kind === "ExternalSecret")) {
    const secretName = d.spec.target?.name;
    if (typeof secretName !== "string" || secretName === "") throw new Error(`${d.where}: spec.target.name: missing`);
    const interval = d.spec.refreshInterval === undefined ? "1h" : String(d.spec.refreshInterval); // ESO's default
    const ms = parseGoDuration(interval);
    if (ms === undefined) {
      throw new Error(`${d.where}: spec.refreshInterval: expected a Go duration such as "24h" or "0", found "${interval}"`);
    }
    const policy = d.spec.refreshPolicy || "Periodic";
    const fixed = d.annotations[SCHEDULE_ANNOTATION];
    let expression;
    let why;
    if (policy !== "Periodic" || ms === 0) {
      // Generated once (or on spec change): rotate by `serverless invoke`, not on a timer.
      why = policy !== "Periodic" ? `refreshPolicy ${policy}` : "refreshInterval 0";
    } else if (fixed) {
      expression = checkExpression(fixed, `${d.where}: metadata.annotations["${SCHEDULE_ANNOTATION}"]`);
      why = `annotation ${SCHEDULE_ANNOTATION}`;
    } else if (options.schedule) {
      expression = checkExpression(options.schedule, "schedule override (--param schedule / CNPG_ROTATOR_SCHEDULE)");
      why = "schedule override";
    } else {
      expression = rateFor(ms);
      why = `refreshInterval ${interval}${ms % 60_000 === 0 ? "" : ", rounded up to whole minutes"}`;
    }
    targets.push({
      target: `${d.namespace}/${secretName}`,
      externalSecret: `${d.namespace}/${d.name}`,
      refreshInterval: interval,
      expression,
      why,
    });
  }

  // One push schedule per PushSecret, from its own refreshInterval.
  const pushes = [];
  for (const d of docs.filter((x) => x.kind === "PushSecret")) {
    const interval = d.spec.refreshInterval === undefined ? "1h" : String(d.spec.refreshInterval);
    const ms = parseGoDuration(interval);
    if (ms === undefined) {
      throw new Error(`${d.where}: spec.refreshInterval: expected a Go duration such as "24h" or "0", found "${interval}"`);
    }
    if (ms === 0) continue; // pushed once, by `serverless invoke -f push`
    pushes.push({ target: `${d.namespace}/${d.name}`, expression: options.schedule ? checkExpression(options.schedule, "schedule override") : rateFor(ms), why: `refreshInterval ${interval}` });
  }

  // Secrets Manager names the PushSecrets write through aws stores: prefix + remoteKey.
  const stores = docs.filter((x) => x.kind === "SecretStore" || x.kind === "ClusterSecretStore");
  const awsSecrets = new Map();
  for (const p of docs.filter((x) => x.kind === "PushSecret")) {
    for (const ref of p.spec.secretStoreRefs || []) {
      const kind = ref.kind || "SecretStore";
      const store = stores.find(
        (s) => s.kind === kind && s.name === ref.name && (kind === "ClusterSecretStore" || s.namespace === p.namespace),
      );
      const aws = store?.spec.provider?.aws;
      if (!aws) continue; // another provider, or a reference the function itself will reject
      if (typeof aws.region !== "string" || aws.region === "") throw new Error(`${store.where}: spec.provider.aws.region: missing`);
      for (const item of p.spec.data || []) {
        const remoteKey = item?.match?.remoteRef?.remoteKey;
        if (typeof remoteKey !== "string" || remoteKey === "") continue;
        const name = (aws.prefix || "") + remoteKey;
        awsSecrets.set(`${aws.region}\u0000${name}`, { region: aws.region, name });
      }
    }
  }
  const secrets = [...awsSecrets.values()].sort((a, b) => `${a.region}/${a.name}`.localeCompare(`${b.region}/${b.name}`));
  return { targets, pushes, awsSecrets: secrets };
}

/** The `schedule` events of the rotate function (or, with kind "push", of the push function). */
function scheduleEvents(summary, kind = "rotate") {
  const seen = new Set();
  const events = [];
  const list =
    kind === "push"
      ? summary.pushes.map((p) => ({ ...p, describe: `push PushSecret ${p.target} (${p.why})` }))
      : summary.targets.map((t) => ({ ...t, describe: `rotate ${t.target} (ExternalSecret ${t.externalSecret}, ${t.why})` }));
  for (const t of list) {
    if (!t.expression || seen.has(`${t.target} ${t.expression}`)) continue;
    seen.add(`${t.target} ${t.expression}`);
    events.push({
      schedule: {
        rate: [t.expression],
        description: `cnpg-rotator: ${t.describe}`,
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
          inputTemplate: `{"version":<version>,"id":<id>,"detail-type":<detailType>,"source":<source>,"account":<account>,"time":<time>,"region":<region>,"resources":<resources>,"detail":${JSON.stringify({ target: t.target })}}`,
        },
      },
    });
  }
  return events;
}

/** Least-privilege Secrets Manager statements for the aws-store secrets; [] when there are none. */
function secretsManagerStatements(summary) {
  if (summary.awsSecrets.length === 0) return [];
  // AWS appends "-" and 6 random characters to a secret's ARN; CreateSecret is checked against that ARN too.
  const arns = summary.awsSecrets.map(({ region, name }) => ({
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

/** Settings from serverless.yml's custom.rotator (manifests dir, default namespace, schedule override). */
async function settings({ resolveConfigurationProperty }) {
  const rotator = (await resolveConfigurationProperty(["custom", "rotator"])) || {};
  return {
    paths: String(rotator.manifests || "manifests")
      .split(",")
      .filter(Boolean)
      .map((p) => resolve(__dirname, "..", p)), // relative to serverless.yml
    namespace: rotator.namespace || "default",
    schedule: rotator.schedule || "",
  };
}

module.exports = {
  rotateEvents: async (framework) => {
    const s = await settings(framework);
    return scheduleEvents(summarize(s.paths, s));
  },
  pushEvents: async (framework) => {
    const s = await settings(framework);
    return scheduleEvents(summarize(s.paths, s), "push");
  },
  iamStatements: async (framework) => {
    const s = await settings(framework);
    return secretsManagerStatements(summarize(s.paths, s));
  },
  // For tests and the preview below.
  parseGoDuration,
  rateFor,
  summarize,
  scheduleEvents,
  secretsManagerStatements,
};

if (require.main === module) {
  const paths = process.argv.slice(2);
  const summary = summarize(paths.length > 0 ? paths : ["manifests"], {
    namespace: process.env.CNPG_ROTATOR_NAMESPACE,
    schedule: process.env.CNPG_ROTATOR_SCHEDULE,
  });
  const out = {
    targets: summary.targets,
    awsSecrets: summary.awsSecrets,
    rotateEvents: scheduleEvents(summary),
    pushEvents: scheduleEvents(summary, "push"),
    iamStatements: secretsManagerStatements(summary),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}
