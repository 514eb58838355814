// The commands that talk to a cluster: rotate, push, status. Each builds the
// same Engine the cloud functions build, then makes one engine call.
import { InputError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { engineFromEnvironment } from "../rotation/context.ts";
import { type Engine, rotate } from "../rotation/engine.ts";
import { push } from "../rotation/push.ts";
import { rollback } from "../rotation/rollback.ts";
import { status } from "../rotation/status.ts";
import { flags, integer, manifestOptions, type Options } from "./args.ts";

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

type ClusterFlags = NonNullable<ReturnType<typeof flags<typeof clusterOptions>>>;

async function buildEngine(v: ClusterFlags, extra: { verify?: boolean; rollbackOnVerifyFailure?: boolean } = {}): Promise<Engine> {
  if (!v.filename?.length) throw new InputError("missing -f: give the manifests file (-f manifests.yaml)");
  if (v.output !== undefined && v.output !== "table" && v.output !== "json") {
    throw new InputError(`--output: expected table or json, found "${v.output}"`);
  }
  const concurrency = integer("concurrency", v.concurrency);
  if (concurrency !== undefined && concurrency < 1) throw new InputError("--concurrency: expected at least 1");
  return engineFromEnvironment({
    manifests: v.filename,
    ...(v.namespace ? { namespace: v.namespace } : {}),
    // An explicit --kubeconfig wins; otherwise the same environment a deployed function reads.
    ...(v.kubeconfig ? { kubeconfig: v.kubeconfig } : {}),
    ...(v.context ? { context: v.context } : {}),
    // -v shows the engine's logs at CNPG_ROTATOR_LOG_LEVEL (default info), as a deployed function logs.
    log: v.verbose ? createLogger() : createLogger({ level: "silent" }),
    ...(concurrency ? { concurrency } : {}),
    ...extra,
  });
}

/** Prints `results` as JSON (-o json) or as a table, a column per entry of `columns`. */
function report<R>(v: ClusterFlags, out: (t: string) => void, results: readonly R[], columns: Record<string, (r: R) => string>): void {
  if (v.output === "json") {
    out(JSON.stringify(results, null, 2));
    return;
  }
  const rows = [Object.keys(columns), ...results.map((r) => Object.values(columns).map((column) => column(r)))];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  out(rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n"));
}

/** A result's DETAIL column: its error, else what `otherwise` says. */
const detail =
  <R extends { readonly error?: { readonly type: string; readonly message: string }; readonly reason?: string }>(otherwise: (r: R) => string = (r) => r.reason ?? "") =>
  (r: R) =>
    r.error ? `${r.error.type}: ${r.error.message}` : otherwise(r);

const failed = (results: readonly { readonly outcome: string }[]) => (results.some((r) => r.outcome === "failed") ? 1 : 0);

export async function rotateCommand(argv: string[], out: (t: string) => void): Promise<number> {
  const rotateOptions = { ...clusterOptions, force: { type: "boolean" }, "dry-run": { type: "boolean" }, verify: { type: "boolean" }, "no-rollback": { type: "boolean" } } as const;
  const v = flags(argv, rotateOptions, rotateHelp, out);
  if (!v) return 0;
  const engine = await buildEngine(v, {
    ...(v.verify ? { verify: true } : {}),
    ...(v["no-rollback"] ? { rollbackOnVerifyFailure: false } : {}),
  });
  const results = await rotate(engine, {
    ...(v.target ? { targets: v.target } : {}),
    ...(v.force ? { force: true } : {}),
    ...(v["dry-run"] ? { dryRun: true } : {}),
  });
  report(v, out, results, {
    TARGET: (r) => r.target,
    OUTCOME: (r) => r.outcome,
    "ROTATION ID": (r) => r.rotationId?.slice(0, 8) ?? "",
    FINGERPRINT: (r) => r.fingerprint ?? "",
    "CHANGED KEYS": (r) => r.changedKeys?.join(",") ?? "",
    DETAIL: detail((r) => r.reason ?? (r.nextDue ? `next due ${r.nextDue}` : "")),
  });
  return failed(results);
}

export async function pushCommand(argv: string[], out: (t: string) => void): Promise<number> {
  const v = flags(argv, { ...clusterOptions, "dry-run": { type: "boolean" } }, pushHelp, out);
  if (!v) return 0;
  const results = await push(await buildEngine(v), {
    ...(v.target ? { targets: v.target } : {}),
    ...(v["dry-run"] ? { dryRun: true } : {}),
  });
  report(v, out, results, {
    PUSHSECRET: (r) => r.pushSecret,
    SECRET: (r) => r.secret,
    STORE: (r) => r.store,
    "REMOTE KEY": (r) => r.remoteKey,
    OUTCOME: (r) => r.outcome,
    VERSION: (r) => r.versionId ?? "",
    DETAIL: detail(),
  });
  return failed(results);
}

/** A command that makes one engine call on the targets named, then reports its results as `columns`. */
function targetsCommand<R>(
  help: string,
  call: (engine: Engine, request: { readonly targets?: readonly string[] }) => Promise<R[]>,
  columns: Record<string, (r: R) => string>,
  exit: (results: readonly R[], v: ClusterFlags, out: (t: string) => void) => number,
): (argv: string[], out: (t: string) => void) => Promise<number> {
  return async (argv, out) => {
    const v = flags(argv, clusterOptions, help, out);
    if (!v) return 0;
    const results = await call(await buildEngine(v), v.target ? { targets: v.target } : {});
    report(v, out, results, columns);
    return exit(results, v, out);
  };
}

export const statusCommand = targetsCommand(
  statusHelp,
  status,
  {
    KIND: (r) => r.kind,
    NAME: (r) => r.name,
    TARGET: (r) => r.target,
    STORE: (r) => r.stores.map((s) => s.store).join(",") || "-",
    "REFRESH INTERVAL": (r) => r.refreshInterval,
    STATUS: (r) => r.reason,
    READY: (r) => (r.ready ? "True" : "False"),
    "LAST ROTATION": (r) => (r.kind === "ExternalSecret" ? (r.lastRotation ?? "-") : "-"),
    "ROTATION ID": (r) => (r.kind === "ExternalSecret" ? (r.rotationId?.slice(0, 8) ?? "-") : "-"),
    DRIFT: (r) =>
      r.stores.some((s) => !s.inSync) ? r.stores.flatMap((s) => s.driftedKeys ?? (s.inSync ? [] : ["missing"])).join(",") : "none",
  },
  (results, v, out) => {
    if (v.output !== "json") for (const r of results.filter((x) => !x.ready)) out(`${r.kind} ${r.name}: ${r.message}`);
    return results.every((r) => r.ready) ? 0 : 1;
  },
);

export const rollbackCommand = targetsCommand(
  rollbackHelp,
  rollback,
  {
    TARGET: (r) => r.target,
    OUTCOME: (r) => r.outcome,
    "ROTATION ID": (r) => r.rotationId?.slice(0, 8) ?? "",
    FINGERPRINT: (r) => r.fingerprint ?? "",
    DETAIL: detail(),
  },
  failed,
);
