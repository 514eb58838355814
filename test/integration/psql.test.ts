// The connection strings a rotation writes, used by the real client: psql logs in to a real
// PostgreSQL with the Secret's `uri`, and with a .pgpass file holding the Secret's `pgpass`,
// for passwords drawn from ESO's full default symbol set. Every password comes from the real
// engine (generator → template / derived-key rewrite → Secret → store), is applied to the role
// by a CNPG stand-in and verified before promotion, so psql reads exactly what the product wrote.
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildAppSecretData, readPgpass, readUri } from "../../lib/cnpg/index.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { rotate } from "../../lib/rotation/engine.ts";
import { createVerifier } from "../../lib/rotation/verify.ts";
import { type Reconciler, startReconciler } from "../infra/cnpg-reconciler.ts";
import { type PostgresServer, psqlBinary, startPostgres } from "../infra/postgres.ts";
import {
  adminClient,
  CNPG_LABELS,
  capturingLogger,
  engineFor,
  fileStoreYaml,
  pushSecretYaml,
  seenSecrets,
  tempDir,
  uniqueName,
} from "./support.ts";

/** ESO's default symbolCharacters, written out here as the oracle (SPEC §1). */
const ESO_SYMBOLS = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./";
const ROTATIONS = 20;
const kube = adminClient();
const seen = seenSecrets;

let server: PostgresServer;
const reconcilers: Reconciler[] = [];
beforeAll(async () => {
  // startPostgres fails the file when the server is missing: never skipped.
  server = await startPostgres();
  seen.add(server.superuserPassword);
});
afterAll(async () => {
  await Promise.all(reconcilers.map((r) => r.stop()));
  await server?.stop();
});

/**
 * Target A renders uri / pgpass / jdbc-uri from the seed's template, pointed at the test
 * server. Target B renders only `password`: its uri and pgpass are CNPG's, rewritten by the
 * engine's derived-key path.
 */
function manifestsYaml(port: number, storePath: string): string {
  const generator = (name: string) => `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata:
  name: ${name}
spec:
  length: 40
  digits: 5
  symbols: 20
`;
  const externalSecret = (name: string, secret: string, generatorName: string, data: string) => `apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: ${name}
spec:
  refreshInterval: "24h"
  target:
    name: ${secret}
    creationPolicy: Merge
    template:
      metadata:
        labels:
          cnpg.io/reload: "true"
      data:
${data}
  dataFrom:
    - sourceRef:
        generatorRef:
          apiVersion: generators.external-secrets.io/v1alpha1
          kind: Password
          name: ${generatorName}
`;
  return [
    generator("eso-defaults-a"),
    generator("eso-defaults-b"),
    externalSecret(
      "app-a",
      "cluster-a-app",
      "eso-defaults-a",
      [
        `        password: "{{ .password }}"`,
        `        pgpass: "127.0.0.1:${port}:app:app:{{ .password }}"`,
        `        jdbc-uri: "jdbc:postgresql://127.0.0.1:${port}/app?password={{ .password }}&user=app"`,
        `        uri: "postgresql://app:{{ .password }}@127.0.0.1:${port}/app"`,
      ].join("\n"),
    ),
    externalSecret("app-b", "cluster-b-app", "eso-defaults-b", `        password: "{{ .password }}"`),
    fileStoreYaml(storePath),
    pushSecretYaml("local", "cluster-a-app", "cluster-a-app"),
    pushSecretYaml("local", "cluster-b-app", "cluster-b-app"),
  ].join("---\n");
}

/** CNPG's app Secret for `cluster`, with host and port (only those) rewritten to the test server's. */
function appSecretData(namespace: string, cluster: string, user: string, password: string, port: number) {
  const data: Record<string, string> = buildAppSecretData({ clusterName: cluster, namespace, username: user, dbname: user, password });
  const inCluster = `${cluster}-rw.${namespace}:5432/`;
  for (const key of ["uri", "jdbc-uri"]) {
    expect(data[key]).toContain(`${inCluster}`);
    data[key] = data[key]!.replace(inCluster, `127.0.0.1:${port}/`);
  }
  expect(data.pgpass!.startsWith(`${cluster}-rw:5432:`)).toBe(true);
  data.pgpass = `127.0.0.1:${port}:${data.pgpass!.slice(`${cluster}-rw:5432:`.length)}`;
  data.host = "127.0.0.1";
  data.port = String(port);
  return data;
}

interface PsqlRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** psql -c "select current_user" with a clean environment (no ~/.pgpass, no PG* from the caller). */
function psql(args: string[], env: Record<string, string>, secrets: readonly string[]): PsqlRun {
  const home = tempDir();
  const r = spawnSync(psqlBinary(server.binDir), ["-X", "-w", "-A", "-t", "-c", "select current_user", ...args], {
    encoding: "utf8",
    timeout: 20_000,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, LANG: "C", PGCONNECT_TIMEOUT: "5", PGSSLMODE: "disable", ...env },
  });
  // A failing assertion prints stderr: make sure no password can ride along.
  let stderr = r.stderr ?? String(r.error ?? "");
  for (const s of secrets) for (const form of [s, encodeURIComponent(s)]) stderr = stderr.split(form).join("<password>");
  return { status: r.status, stdout: (r.stdout ?? "").trim(), stderr: stderr.trim() };
}

const viaUri = (uri: string, secrets: readonly string[]) => psql(["-d", uri], { PGPASSFILE: "/nonexistent/pgpass" }, secrets);

function viaPgpass(pgpass: string, user: string, secrets: readonly string[]): PsqlRun {
  const dir = tempDir();
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "pgpass");
  writeFileSync(file, pgpass, { mode: 0o600 }); // libpq ignores a .pgpass readable by others
  return psql(["-h", "127.0.0.1", "-p", String(server.port), "-U", user, "-d", user], { PGPASSFILE: file }, secrets);
}

describe("psql logs in with what a rotation wrote", () => {
  it(`uri and .pgpass, ${ROTATIONS} rotations of two targets, passwords from ESO's full default symbol set`, async () => {
    expect([...ESO_SYMBOLS]).toHaveLength(30);
    const namespace = uniqueName("psql");
    await kube.ensureNamespace(namespace);
    const storePath = join(tempDir(), "store.json");
    const targets = [
      { secret: "cluster-a-app", cluster: "cluster-a", user: "app" },
      { secret: "cluster-b-app", cluster: "cluster-b", user: "app_b" },
    ] as const;
    for (const t of targets) {
      const initial = `initial-${t.user}-${Math.random().toString(36).slice(2)}`;
      seen.add(initial);
      await server.ensureLoginRole(t.user, initial);
      await kube.createSecret(namespace, t.secret, {
        type: "kubernetes.io/basic-auth",
        data: appSecretData(namespace, t.cluster, t.user, initial, server.port),
        labels: { ...CNPG_LABELS, "cnpg.io/cluster": t.cluster },
      });
      reconcilers.push(
        startReconciler({
          kube: adminClient(),
          namespace,
          secretName: t.secret,
          postgres: { host: server.host, port: server.port, user: server.superuser, password: server.superuserPassword },
          intervalMs: 50,
        }),
      );
    }
    const manifests = loadManifests([{ file: "psql.yaml", text: manifestsYaml(server.port, storePath) }], { namespace });
    const verify = createVerifier(
      { enabled: true, host: server.host, port: server.port, sslMode: "disable", timeoutMs: 20_000, initialDelayMs: 50 },
      { log: capturingLogger() },
    );
    const engine = engineFor(manifests, kube, { verify, rollbackOnVerifyFailure: true });

    const passwords = new Map<string, string[]>(targets.map((t) => [t.user, []]));
    const first = new Map<string, { uri: string; pgpass: string }>();
    for (let i = 0; i < ROTATIONS; i++) {
      const results = await rotate(engine, { force: true });
      expect(results.map((r) => [r.target, r.outcome, r.error?.message])).toEqual(
        targets.map((t) => [`${namespace}/${t.secret}`, "rotated", undefined]),
      );
      const stored = JSON.parse(readFileSync(storePath, "utf8")) as { secrets: Record<string, { current: { value: string } }> };
      for (const t of targets) {
        const secret = (await kube.readSecret(namespace, t.secret))!;
        const { password, uri, pgpass } = secret.data as Record<string, string>;
        seen.add(password!);
        const all = passwords.get(t.user)!;
        all.push(password!);
        if (i === 0) first.set(t.user, { uri: uri!, pgpass: pgpass! });
        // psql is handed exactly what the product wrote: the Secret, and the store's copy of it.
        expect(JSON.parse(stored.secrets[t.secret]!.current.value)).toEqual(secret.data);
        expect(readUri(uri!)).toMatchObject({ user: t.user, password, host: "127.0.0.1", port: String(server.port) });
        expect(readPgpass(pgpass!)).toMatchObject({ host: "127.0.0.1", port: String(server.port), user: t.user, password });

        const byUri = viaUri(uri!, all);
        expect(byUri.stderr, `psql with the uri, rotation ${i + 1} of ${t.secret}`).toBe("");
        expect(byUri).toMatchObject({ status: 0, stdout: t.user });
        const byPgpass = viaPgpass(pgpass!, t.user, all);
        expect(byPgpass.stderr, `psql with the pgpass, rotation ${i + 1} of ${t.secret}`).toBe("");
        expect(byPgpass).toMatchObject({ status: 0, stdout: t.user });
      }
    }

    for (const t of targets) {
      const all = passwords.get(t.user)!;
      expect(new Set(all).size).toBe(ROTATIONS);
      // Every password has its 20 symbols; together they use every one of ESO's 30.
      for (const p of all) expect([...p].filter((c) => ESO_SYMBOLS.includes(c))).toHaveLength(20);
      const used = new Set(all.flatMap((p) => [...p]));
      expect([...ESO_SYMBOLS].filter((c) => !used.has(c))).toEqual([]);

      // Control: the same strings from the first rotation no longer log in, so psql really used them.
      const old = first.get(t.user)!;
      const staleUri = viaUri(old.uri, all);
      expect(staleUri.status).not.toBe(0);
      expect(staleUri.stderr).toContain(`password authentication failed for user "${t.user}"`);
      const stalePgpass = viaPgpass(old.pgpass, t.user, all);
      expect(stalePgpass.status).not.toBe(0);
      expect(stalePgpass.stderr).toContain(`password authentication failed for user "${t.user}"`);
      // And without a usable .pgpass entry psql has no password at all.
      const none = viaPgpass("# nothing here\n", t.user, all);
      expect(none.status).not.toBe(0);
      expect(none.stderr).toContain("no password supplied");
    }
    for (const r of reconcilers) expect(r.lastError).toBeUndefined();
  });
});
