// The commands that talk to a cluster: rotate, push, status. Each builds the
// same Engine the cloud functions build, then makes one engine call.
import { InputError } from "../errors.ts";
import { connectCluster, connectClusterFromEnvironment } from "../kubernetes/index.ts";
import { createLogger } from "../log.ts";
import { engineFromEnvironment } from "../rotation/context.ts";
import { readStoredSecret } from "../rotation/stores.ts";
import { type Engine, rotate } from "../rotation/engine.ts";
import { push } from "../rotation/push.ts";
import { rollback } from "../rotation/rollback.ts";
import { status } from "../rotation/status.ts";
import { integer, manifestOptions, type Options, parse } from "./args.ts";

const clusterOptions = {
  ...manifestOptions,
  kubeconfig: { type: "string" },
  context: { type: "string" },
  target: { type: "string", short: "t", multiple: true },
  output: { type: "string", short: "o" },
  concurrency: { type: "string" },
  verbose: { type: "boolean", short: "v" },
} as const satisfies Options;

const common = `  -f, --filename PATH     manifests: a file, a directory of *.yaml, or - (repeatable)
  -n, --namespace NS      namespace of manifests that name none (default "default")
  -t, --target NS/NAME    only this target (repeatable; default: all)
      --kubeconfig PATH   kubeconfig (default: $CNPG_ROTATOR_KUBECONFIG, $KUBECONFIG, ~/.kube/config)
      --context NAME      kubeconfig context (default: its current-context)
  -o, --output FORMAT     table (default) or json
      --concurrency N     targets at once (default 8)
  -v, --verbose           engine logs on stderr at $CNPG_ROTATOR_LOG_LEVEL (default info;
                          JSON lines, never secret values)`;

export const rotateHelp = `Usage: cnpg-rotator rotate -f manifests.yaml [--force] [--dry-run] [--verify] [flags]

Runs the rotation of each ExternalSecret that is due: stage the new password in
the store, merge it into the Secret, promote it in the store. A rotation left
half-done by an earlier run is finished with the same password.

      --force             rotate even if not due
      --dry-run           report what would change; write nothing
      --verify            log in to PostgreSQL with the new password before promoting
                          (as CNPG_ROTATOR_VERIFY=true; see the README for host/TLS settings)
      --no-rollback       when that login fails, leave the rotation merged for the next run
                          to test again, instead of restoring the store's current password
${common}
Exit codes: 0 every target ok, 1 a target failed, 2 bad input (nothing written).
`;

export const rollbackHelp = `Usage: cnpg-rotator rollback -f manifests.yaml [flags]

Rolls back a rotation that was merged into the Secret but not promoted (e.g.
its verification failed): the store's current password goes back into the
Secret and the pending one is discarded, so Secret, store and database agree.
${common}
`;

export const pushHelp = `Usage: cnpg-rotator push -f manifests.yaml [--dry-run] [flags]

Runs each PushSecret: copies its Secret to its stores (no new version when
nothing changed; updatePolicy and deletionPolicy as in ESO).

      --dry-run           report what would change; write nothing
${common}
`;

export const statusHelp = `Usage: cnpg-rotator status -f manifests.yaml [flags]

For each ExternalSecret and PushSecret: target, store, refresh interval, status
reason, ready, last rotation, rotation id, drift between store and Secret (by
fingerprint) and any rotation in flight. Read-only.
${common}
Exit codes: 0 everything ready, 1 something is not, 2 bad input.
`;

async function buildEngine(
  v: ReturnType<typeof parse<typeof clusterOptions>>["values"],
  extra: { verify?: boolean; rollbackOnVerifyFailure?: boolean } = {},
): Promise<Engine> {
  if (!v.filename?.length) throw new InputError("missing -f: give the manifests file (-f manifests.yaml)");
  if (v.output !== undefined && v.output !== "table" && v.output !== "json") {
    throw new InputError(`--output: expected table or json, found "${v.output}"`);
  }
  const concurrency = integer("concurrency", v.concurrency);
  if (concurrency !== undefined && concurrency < 1) throw new InputError("--concurrency: expected at least 1");
  // -v shows the engine's logs at CNPG_ROTATOR_LOG_LEVEL (default info), as a deployed function logs.
  const log = v.verbose ? createLogger() : createLogger({ level: "silent" });
  // An explicit --kubeconfig wins; otherwise the same environment a deployed function reads.
  const kube = v.kubeconfig
    ? connectCluster({ kubeconfigPath: v.kubeconfig, ...(v.context ? { context: v.context } : {}) })
    : await connectClusterFromEnvironment({ log, readStoredSecret, ...(v.context ? { context: v.context } : {}) });
  return engineFromEnvironment({
    manifests: v.filename,
    ...(v.namespace ? { namespace: v.namespace } : {}),
    kube,
    log,
    ...(concurrency ? { concurrency } : {}),
    ...extra,
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

export async function rotateCommand(argv: string[], out: (t: string) => void): Promise<number> {
  const { values: v } = parse(argv, {
    ...clusterOptions,
    force: { type: "boolean" },
    "dry-run": { type: "boolean" },
    verify: { type: "boolean" },
    "no-rollback": { type: "boolean" },
  });
  if (v.help) {
    out(rotateHelp);
    return 0;
  }
  const engine = await buildEngine(v, {
    ...(v.verify ? { verify: true } : {}),
    ...(v["no-rollback"] ? { rollbackOnVerifyFailure: false } : {}),
  });
  const results = await rotate(engine, {
    ...(v.target ? { targets: v.target } : {}),
    ...(v.force ? { force: true } : {}),
    ...(v["dry-run"] ? { dryRun: true } : {}),
  });
  if (v.output === "json") out(JSON.stringify(results, null, 2));
  else {
    out(
      table([
        ["TARGET", "OUTCOME", "ROTATION ID", "FINGERPRINT", "CHANGED KEYS", "DETAIL"],
        ...results.map((r) => [
          r.target,
          r.outcome,
          r.rotationId?.slice(0, 8) ?? "",
          r.fingerprint ?? "",
          r.changedKeys?.join(",") ?? "",
          r.error ? `${r.error.type}: ${r.error.message}` : (r.reason ?? (r.nextDue ? `next due ${r.nextDue}` : "")),
        ]),
      ]),
    );
  }
  return results.some((r) => r.outcome === "failed") ? 1 : 0;
}

export async function pushCommand(argv: string[], out: (t: string) => void): Promise<number> {
  const { values: v } = parse(argv, { ...clusterOptions, "dry-run": { type: "boolean" } });
  if (v.help) {
    out(pushHelp);
    return 0;
  }
  const results = await push(await buildEngine(v), {
    ...(v.target ? { targets: v.target } : {}),
    ...(v["dry-run"] ? { dryRun: true } : {}),
  });
  if (v.output === "json") out(JSON.stringify(results, null, 2));
  else {
    out(
      table([
        ["PUSHSECRET", "SECRET", "STORE", "REMOTE KEY", "OUTCOME", "VERSION", "DETAIL"],
        ...results.map((r) => [
          r.pushSecret,
          r.secret,
          r.store,
          r.remoteKey,
          r.outcome,
          r.versionId ?? "",
          r.error ? `${r.error.type}: ${r.error.message}` : (r.reason ?? ""),
        ]),
      ]),
    );
  }
  return results.some((r) => r.outcome === "failed") ? 1 : 0;
}

export async function statusCommand(argv: string[], out: (t: string) => void): Promise<number> {
  const { values: v } = parse(argv, clusterOptions);
  if (v.help) {
    out(statusHelp);
    return 0;
  }
  const results = await status(await buildEngine(v), v.target ? { targets: v.target } : {});
  if (v.output === "json") out(JSON.stringify(results, null, 2));
  else {
    out(
      table([
        ["KIND", "NAME", "TARGET", "STORE", "REFRESH INTERVAL", "STATUS", "READY", "LAST ROTATION", "ROTATION ID", "DRIFT"],
        ...results.map((r) => [
          r.kind,
          r.name,
          r.target,
          r.stores.map((s) => s.store).join(",") || "-",
          r.refreshInterval,
          r.reason,
          r.ready ? "True" : "False",
          r.kind === "ExternalSecret" ? (r.lastRotation ?? "-") : "-",
          r.kind === "ExternalSecret" ? (r.rotationId?.slice(0, 8) ?? "-") : "-",
          r.stores.some((s) => !s.inSync) ? r.stores.flatMap((s) => s.driftedKeys ?? (s.inSync ? [] : ["missing"])).join(",") : "none",
        ]),
      ]),
    );
    for (const r of results.filter((x) => !x.ready)) out(`${r.kind} ${r.name}: ${r.message}`);
  }
  return results.every((r) => r.ready) ? 0 : 1;
}

export async function rollbackCommand(argv: string[], out: (t: string) => void): Promise<number> {
  const { values: v } = parse(argv, clusterOptions);
  if (v.help) {
    out(rollbackHelp);
    return 0;
  }
  const results = await rollback(await buildEngine(v), v.target ? { targets: v.target } : {});
  if (v.output === "json") out(JSON.stringify(results, null, 2));
  else {
    out(
      table([
        ["TARGET", "OUTCOME", "ROTATION ID", "FINGERPRINT", "DETAIL"],
        ...results.map((r) => [
          r.target,
          r.outcome,
          r.rotationId?.slice(0, 8) ?? "",
          r.fingerprint ?? "",
          r.error ? `${r.error.type}: ${r.error.message}` : (r.reason ?? ""),
        ]),
      ]),
    );
  }
  return results.some((r) => r.outcome === "failed") ? 1 : 0;
}
