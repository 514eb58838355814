// TEST ONLY: plays CNPG's part for one application Secret. It polls the Secret through the
// real kube-apiserver and, once it carries `cnpg.io/reload: "true"`, sets the role named by
// its `username` to its `password` with ALTER ROLE — as CNPG's instance manager does after
// the Secret changes. It can wait before applying (a slow CNPG) or never apply (a broken
// one). It never logs or throws a password.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import type { KubernetesClient } from "../../lib/kubernetes/index.ts";

export type ReconcilerMode = "apply" | "never";

export interface ReconcilerOptions {
  readonly kube: KubernetesClient;
  readonly namespace: string;
  readonly secretName: string;
  /** Superuser connection to the server (test/infra/postgres.ts). */
  readonly postgres: { host: string; port: number; user: string; password: string; database?: string };
  readonly mode?: ReconcilerMode;
  /** How long after first seeing a new password it applies it (default 0). */
  readonly delayMs?: number;
  /** Poll interval (default 200 ms). */
  readonly intervalMs?: number;
}

export interface Reconciler {
  setMode(mode: ReconcilerMode): void;
  setDelay(ms: number): void;
  /** ALTER ROLE statements run so far. */
  readonly applied: number;
  /** New passwords seen and not applied because the mode is "never". */
  readonly ignored: number;
  /** The last failure (never carries a password), if any. */
  readonly lastError: string | undefined;
  /** Resolves after the next complete poll (and any apply it made). */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

const digest = (user: string, password: string) => createHash("sha256").update(`${user}\0${password}`).digest("hex");

export function startReconciler(options: ReconcilerOptions): Reconciler {
  let mode: ReconcilerMode = options.mode ?? "apply";
  let delayMs = options.delayMs ?? 0;
  const intervalMs = options.intervalMs ?? 200;
  let applied = 0;
  let ignored = 0;
  let lastError: string | undefined;
  let lastApplied: string | undefined;
  let lastIgnored: string | undefined;
  const firstSeen = new Map<string, number>();
  let stopped = false;
  let client: pg.Client | undefined;
  let waiters: (() => void)[] = [];

  const connection = async () => {
    if (client) return client;
    const c = new pg.Client({ ...options.postgres, database: options.postgres.database ?? "postgres", ssl: false });
    c.on("error", () => {
      if (client === c) client = undefined;
    });
    await c.connect();
    client = c;
    return c;
  };

  const poll = async () => {
    const secret = await options.kube.readSecret(options.namespace, options.secretName);
    if (secret?.labels["cnpg.io/reload"] !== "true") return;
    const user = secret.data.username;
    const password = secret.data.password;
    if (!user || password === undefined) return;
    const key = digest(user, password);
    if (key === lastApplied) return;
    if (mode === "never") {
      if (key !== lastIgnored) ignored++;
      lastIgnored = key;
      return;
    }
    const seen = firstSeen.get(key) ?? Date.now();
    firstSeen.set(key, seen);
    if (Date.now() - seen < delayMs) return;
    const c = await connection();
    // Both quoted by pg's escaping, the way CNPG quotes the literal (pq.QuoteLiteral).
    await c.query(`ALTER ROLE ${pg.escapeIdentifier(user)} WITH PASSWORD ${pg.escapeLiteral(password)}`);
    lastApplied = key;
    firstSeen.clear();
    applied++;
  };

  const loop = (async () => {
    while (!stopped) {
      try {
        await poll();
        lastError = undefined;
      } catch (e) {
        // Messages of a failed ALTER ROLE could quote it: keep only the SQLSTATE / error name.
        const err = e as { code?: string; name?: string };
        lastError = `${err.name ?? "Error"}${err.code ? ` ${err.code}` : ""}`;
        client?.end().catch(() => {});
        client = undefined;
      }
      const done = waiters;
      waiters = [];
      for (const w of done) w();
      if (!stopped) await sleep(intervalMs);
    }
  })();

  return {
    setMode(m) {
      mode = m;
    },
    setDelay(ms) {
      delayMs = ms;
    },
    get applied() {
      return applied;
    },
    get ignored() {
      return ignored;
    },
    get lastError() {
      return lastError;
    },
    settled() {
      // Two rounds: the one running now may have read the Secret before the caller's change.
      const next = () => new Promise<void>((resolve) => waiters.push(resolve));
      return next().then(next);
    },
    async stop() {
      stopped = true;
      await loop;
      await client?.end().catch(() => {});
      client = undefined;
    },
  };
}
