// Prints the gcloud commands that deploy cnpg-rotator to Google Cloud, derived from
// the manifests the functions ship with (as deploy/aws/derive.ts does for AWS):
// one Cloud Scheduler job per ExternalSecret, from its refreshInterval, and one per
// PushSecret; Secret Manager notifications for the secrets gcpsm stores write.
//
//   npx node deploy/gcp/commands.ts [manifests-dir] > deploy-gcp.sh
//   PROJECT=my-project REGION=europe-west1 bash deploy-gcp.sh
//
// The output is a script you read first: re-running it updates what exists.
//
// A fleet (manifests with KubernetesClusters, or CNPG_ROTATOR_GCP_FLEET=1) gets, instead of one
// job per ExternalSecret, the planner on one job and its queue: a topic, a push subscription to
// the rotateQueue function with a dead-letter topic after 5 deliveries (README, "Fleets").
import { InputError } from "../../lib/errors.ts";
import type { ManifestSet } from "../../lib/manifests/index.ts";
import { readManifests } from "../../lib/rotation/files.ts";

const MINUTE = 60_000;

/**
 * A unix-cron schedule (Cloud Scheduler, UTC) that fires at least once per
 * interval and whose period divides it, so the engine's due check rotates on
 * time: the largest of every N minutes (N | 60), every N hours (N | 24) or daily
 * that divides the interval. Runs in between find nothing due and write nothing.
 * `minute` shifts hourly and daily ticks (pushes run half an hour after rotations).
 */
export function cronFor(intervalMs: number, minute = 0): string {
  const minutes = Math.max(1, Math.ceil(intervalMs / MINUTE)); // Cloud Scheduler's unit, as EventBridge's
  if (minutes % 1440 === 0) return `${minute} 3 * * *`;
  for (const h of [12, 8, 6, 4, 3, 2, 1]) if (minutes % (h * 60) === 0) return h === 1 ? `${minute} * * * *` : `${minute} */${h} * * *`;
  for (const n of [30, 20, 15, 12, 10, 6, 5, 4, 3, 2]) if (minutes % n === 0) return `*/${n} * * * *`;
  return "* * * * *";
}

/** Cloud Scheduler job IDs: letters, digits, hyphens and underscores. */
const jobId = (kind: string, ref: string) => `cnpg-rotator-${kind}-${ref.replace(/[^A-Za-z0-9_-]/g, "-")}`.slice(0, 500);

interface Job {
  readonly id: string;
  readonly schedule: string;
  readonly topic: string;
  readonly body: string;
  readonly description: string;
}

/** Pub/Sub delivers a failing message this many times before the dead-letter topic (5 to 100; SQS's maxReceiveCount on AWS). */
export const MAX_DELIVERY_ATTEMPTS = 5;

/** The planner's cron: a quarter of the shortest periodic refreshInterval, 1 minute to 1 hour (as on AWS). */
export function plannerCron(set: ManifestSet, override?: string): string {
  if (override) return override;
  const periodic = set.externalSecrets.filter((es) => es.refreshPolicy === "Periodic" && es.refreshIntervalMs > 0);
  const shortest = Math.min(...periodic.map((es) => es.refreshIntervalMs), 4 * 60 * MINUTE);
  return cronFor(Math.min(60 * MINUTE, Math.max(MINUTE, shortest / 4)));
}

export function schedulerJobs(set: ManifestSet, override?: string, fleet = false): { jobs: Job[]; unscheduled: string[] } {
  const jobs: Job[] = [];
  const unscheduled: string[] = [];
  if (fleet) {
    jobs.push({
      id: "cnpg-rotator-plan",
      schedule: plannerCron(set, override),
      topic: "cnpg-rotator-plan",
      body: "{}",
      description: "cnpg-rotator: plan every cluster's due rotations",
    });
    // One push job too (as on AWS), at the shortest PushSecret refreshInterval: an empty message pushes every due one.
    const periodic = set.pushSecrets.filter((ps) => ps.refreshIntervalMs > 0);
    if (periodic.length > 0) {
      jobs.push({
        id: "cnpg-rotator-push",
        schedule: override ?? cronFor(Math.min(...periodic.map((ps) => ps.refreshIntervalMs)), 30),
        topic: "cnpg-rotator-push",
        body: "{}",
        description: "cnpg-rotator: push every due PushSecret",
      });
    }
  }
  for (const es of fleet ? [] : set.externalSecrets) {
    const target = `${es.metadata.namespace}/${es.target.name}`;
    const name = `ExternalSecret ${es.metadata.namespace}/${es.metadata.name}`;
    if (es.refreshPolicy !== "Periodic" || es.refreshIntervalMs === 0) {
      const why = es.refreshPolicy !== "Periodic" ? `refreshPolicy ${es.refreshPolicy}` : "refreshInterval 0";
      unscheduled.push(`${name} (${why}): rotate it once with the HTTP function, body {"target":"${target}"}`);
      continue;
    }
    jobs.push({
      id: jobId("rotate", target),
      schedule: override ?? cronFor(es.refreshIntervalMs),
      topic: "cnpg-rotator-rotate",
      body: JSON.stringify({ target }),
      description: `cnpg-rotator: rotate ${target} (${name}, refreshInterval ${es.refreshInterval})`,
    });
  }
  for (const ps of fleet ? [] : set.pushSecrets) {
    const target = `${ps.metadata.namespace}/${ps.metadata.name}`;
    if (ps.refreshIntervalMs === 0) {
      unscheduled.push(`PushSecret ${target} (refreshInterval 0): pushed by the rotations that write it`);
      continue;
    }
    jobs.push({
      id: jobId("push", target),
      schedule: override ?? cronFor(ps.refreshIntervalMs, 30),
      topic: "cnpg-rotator-push",
      body: JSON.stringify({ target }),
      description: `cnpg-rotator: push PushSecret ${target} (refreshInterval ${ps.refreshInterval})`,
    });
  }
  return { jobs, unscheduled };
}

/** The Secret Manager secrets the rotations write through gcpsm stores, as project/name. */
export function gcpSecrets(set: ManifestSet): { project: string; name: string }[] {
  const found = new Map<string, { project: string; name: string }>();
  for (const ps of set.pushSecrets) {
    for (const store of ps.stores) {
      if (store.provider.name !== "gcpsm") continue;
      for (const entry of ps.data) {
        const project = store.provider.config.projectID;
        found.set(`${project}/${entry.remoteKey}`, { project, name: entry.remoteKey });
      }
    }
  }
  return [...found.values()];
}

/** Step 4b, a fleet: the planner, its queue with a dead-letter topic, and the function the queue pushes to. */
function fleetSection(): string {
  return `
# 4b. The fleet: the planner publishes one message per due target to cnpg-rotator-queue; a push subscription hands each
#     to cnpg-rotator-queue (HTTP, authenticated with $SA's OIDC token). 2xx acknowledges; a failed rotation answers 500
#     and Pub/Sub redelivers with backoff, then after ${MAX_DELIVERY_ATTEMPTS} deliveries forwards it to cnpg-rotator-queue-dead
#     (read it there: gcloud pubsub subscriptions pull cnpg-rotator-queue-dead-pull --auto-ack). A malformed message is
#     acknowledged with an error in the log (it would never become valid). Pub/Sub cannot delay a message, so the
#     planner sends all at once: --max-instances and each cluster's maxConcurrentRotations pace the API servers.
for t in cnpg-rotator-plan cnpg-rotator-queue cnpg-rotator-queue-dead; do
  gcloud pubsub topics describe "$t" >/dev/null 2>&1 || gcloud pubsub topics create "$t"
done
gcloud pubsub subscriptions describe cnpg-rotator-queue-dead-pull >/dev/null 2>&1 ||
  gcloud pubsub subscriptions create cnpg-rotator-queue-dead-pull --topic cnpg-rotator-queue-dead --message-retention-duration 7d
gcloud pubsub topics add-iam-policy-binding cnpg-rotator-queue --member "serviceAccount:$SA" --role roles/pubsub.publisher
gcloud functions deploy cnpg-rotator-plan "\${COMMON[@]}" --memory 1Gi --timeout 540s --entry-point plan --trigger-topic cnpg-rotator-plan \\
  --trigger-service-account "$SA" --update-env-vars "CNPG_ROTATOR_TOPIC=projects/$PROJECT/topics/cnpg-rotator-queue"
gcloud functions deploy cnpg-rotator-queue "\${COMMON[@]}" --entry-point rotateQueue --trigger-http --no-allow-unauthenticated --max-instances 10
gcloud functions add-invoker-policy-binding cnpg-rotator-queue --region "$REGION" --member "serviceAccount:$SA"
QUEUE_URL="$(gcloud functions describe cnpg-rotator-queue --region "$REGION" --format 'value(serviceConfig.uri)')"
PUBSUB_AGENT="serviceAccount:service-$(gcloud projects describe "$PROJECT" --format 'value(projectNumber)')@gcp-sa-pubsub.iam.gserviceaccount.com"
# The Pub/Sub service agent forwards to the dead-letter topic and acknowledges what it forwarded:
gcloud pubsub topics add-iam-policy-binding cnpg-rotator-queue-dead --member "$PUBSUB_AGENT" --role roles/pubsub.publisher
if gcloud pubsub subscriptions describe cnpg-rotator-queue-push >/dev/null 2>&1; then sub=update; else sub="create --topic cnpg-rotator-queue"; fi
gcloud pubsub subscriptions $sub cnpg-rotator-queue-push --push-endpoint "$QUEUE_URL" --push-auth-service-account "$SA" \\
  --ack-deadline 600 --dead-letter-topic cnpg-rotator-queue-dead --max-delivery-attempts ${MAX_DELIVERY_ATTEMPTS} \\
  --min-retry-delay 10s --max-retry-delay 600s
gcloud pubsub subscriptions add-iam-policy-binding cnpg-rotator-queue-push --member "$PUBSUB_AGENT" --role roles/pubsub.subscriber
`;
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function script(set: ManifestSet, manifestsDir: string, override?: string, fleet = set.clusters.length > 0): string {
  const { jobs, unscheduled } = schedulerJobs(set, override, fleet);
  const secrets = gcpSecrets(set);
  const example = jobs[0] ? (JSON.parse(jobs[0].body) as { target: string }).target : "namespace/name";
  const projects = [...new Set(secrets.map((s) => s.project))];
  // Shell text: \${…} below is the shell's, not a template placeholder.
  let out = `#!/usr/bin/env bash
# cnpg-rotator on Google Cloud, from ${manifestsDir}: ${set.externalSecrets.length} ExternalSecret(s), ${set.pushSecrets.length} PushSecret(s).
# Generated by deploy/gcp/commands.ts; read it, then run it with PROJECT (and REGION, NAMESPACE) set.
set -euo pipefail
: "\${PROJECT:?set PROJECT}"
REGION="\${REGION:-europe-west1}"
NAMESPACE="\${NAMESPACE:-${set.externalSecrets[0]?.metadata.namespace ?? "default"}}" # of manifests that name none
SA="cnpg-rotator@\${PROJECT}.iam.gserviceaccount.com"
gcloud config set project "$PROJECT"

# 1. The bundle: dist/gcp/{index.mjs,package.json,manifests/}.
npx node deploy/gcp/build.ts ${q(manifestsDir)}

# 2. The functions' identity; the kubeconfig in Secret Manager, read at start (never in the function's configuration).
#    Once: gcloud secrets create cnpg-rotator-kubeconfig --data-file=kubeconfig-of-the-rotator-serviceaccount
gcloud iam service-accounts describe "$SA" >/dev/null 2>&1 || gcloud iam service-accounts create cnpg-rotator --display-name "cnpg-rotator"
gcloud secrets add-iam-policy-binding cnpg-rotator-kubeconfig --member "serviceAccount:$SA" --role roles/secretmanager.secretAccessor
${projects.length > 0 ? "# The gcpsm stores create, version, label and delete their secrets (and the -pending siblings):\n" : ""}${projects
    .map((p) => `gcloud projects add-iam-policy-binding ${q(p)} --member "serviceAccount:$SA" --role roles/secretmanager.admin --condition None\n`)
    .join("")}
# 3. Topics: Cloud Scheduler (and Secret Manager) publish, the functions subscribe.
for t in cnpg-rotator-rotate cnpg-rotator-push; do
  gcloud pubsub topics describe "$t" >/dev/null 2>&1 || gcloud pubsub topics create "$t"
done

# 4. The functions (2nd gen). --retry: a failed scheduled run throws and Pub/Sub redelivers it; bad input is answered, not retried.
COMMON=(--gen2 --runtime nodejs24 --region "$REGION" --source dist/gcp --service-account "$SA" --memory 256Mi --timeout 120s
  --set-env-vars "CNPG_ROTATOR_MANIFESTS=/workspace/manifests,CNPG_ROTATOR_NAMESPACE=$NAMESPACE"
  --set-secrets "CNPG_ROTATOR_KUBECONFIG=cnpg-rotator-kubeconfig:latest")
gcloud functions deploy cnpg-rotator-rotate "\${COMMON[@]}" --entry-point rotate --trigger-topic cnpg-rotator-rotate --trigger-service-account "$SA" --retry
gcloud functions deploy cnpg-rotator-push "\${COMMON[@]}" --entry-point push --trigger-topic cnpg-rotator-push --trigger-service-account "$SA" --retry
gcloud functions deploy cnpg-rotator-http "\${COMMON[@]}" --entry-point rotateHttp --trigger-http --no-allow-unauthenticated
gcloud functions deploy cnpg-rotator-status "\${COMMON[@]}" --entry-point statusHttp --trigger-http --no-allow-unauthenticated
# Eventarc delivers to the Pub/Sub functions as $SA; you call the HTTP one with your own identity:
for f in cnpg-rotator-rotate cnpg-rotator-push; do
  gcloud functions add-invoker-policy-binding "$f" --region "$REGION" --member "serviceAccount:$SA"
done
#   curl -X POST "$(gcloud functions describe cnpg-rotator-http --region "$REGION" --format 'value(url)')" \\
#     -H "Authorization: bearer $(gcloud auth print-identity-token)" -H "content-type: application/json" \\
#     -d '{"target":"${example}","dryRun":true}'

${fleet ? fleetSection() : ""}
# 5. ${fleet ? "The planner's one Cloud Scheduler job, and push's one" : "One Cloud Scheduler job per ExternalSecret and PushSecret"} (UTC). A tick that finds nothing due writes nothing.
job() { # id schedule topic body description
  if gcloud scheduler jobs describe "$1" --location "$REGION" >/dev/null 2>&1; then verb=update; else verb=create; fi
  gcloud scheduler jobs "$verb" pubsub "$1" --location "$REGION" --schedule "$2" --time-zone Etc/UTC --topic "$3" --message-body "$4" --description "$5"
}
`;
  for (const j of jobs) out += `job ${q(j.id)} ${q(j.schedule)} ${j.topic} ${q(j.body)} ${q(j.description)}\n`;
  for (const u of unscheduled) out += `# not scheduled: ${u}\n`;
  if (secrets.length > 0) {
    out += `
# 6. Optional: Secret Manager's own rotation notifications (SECRET_ROTATE) on the rotate topic, for the secrets
#    the rotations write (they exist after the first rotation). The event is a scheduled tick like the jobs above:
#    the ExternalSecret's refreshInterval still decides whether a rotation is due.
PROJECT_NUMBER="$(gcloud projects describe "$PROJECT" --format "value(projectNumber)")"
gcloud pubsub topics add-iam-policy-binding cnpg-rotator-rotate --member "serviceAccount:service-\${PROJECT_NUMBER}@gcp-sa-secretmanager.iam.gserviceaccount.com" --role roles/pubsub.publisher
`;
    for (const s of secrets) {
      out += `# gcloud secrets update ${q(s.name)} --project ${q(s.project)} --add-topics "projects/$PROJECT/topics/cnpg-rotator-rotate" # add --rotation-period=<refreshInterval in s> --next-rotation-time=<RFC 3339> for SECRET_ROTATE\n`;
    }
  }
  return out;
}

if (import.meta.main) {
  const dir = process.argv[2] ?? "manifests";
  const namespace = process.env.CNPG_ROTATOR_NAMESPACE;
  const override = process.env.CNPG_ROTATOR_GCP_SCHEDULE; // unix-cron, for every job
  try {
    const set = readManifests([dir], namespace ? { namespace } : {});
    const fleet = set.clusters.length > 0 || process.env.CNPG_ROTATOR_GCP_FLEET === "1";
    process.stdout.write(script(set, dir, override || undefined, fleet));
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exitCode = 2;
  }
}
