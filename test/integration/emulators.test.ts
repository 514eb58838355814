// Proves that each secret-store emulator the store tests will use is the real thing and
// behaves as the design relies on (and records where it departs from the cloud it imitates).
// Part of `npm test`; alone: npx vitest run -c test/infra/emulators/vitest.emulators.config.ts

import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TokenCredential } from "@azure/core-auth";
import { SecretClient } from "@azure/keyvault-secrets";
import { SecretManagerServiceClient } from "@google-cloud/secret-manager";
import { grpc } from "google-gax";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  findLowkeyJar,
  findLowkeyJava,
  type GcpSecretManagerEmulator,
  GOOGLE_CLIENT_ENV,
  LOWKEY_VAULT_JAR_SHA256,
  type LowkeyVault,
  startGcpSecretManager,
  startLowkeyVault,
  startVault,
  VERSIONS,
  type VaultServer,
} from "../infra/emulators/servers.ts";

Object.assign(process.env, GOOGLE_CLIENT_ENV);

async function json(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  return text === "" ? {} : (JSON.parse(text) as Record<string, unknown>);
}

describe("Vault dev server (KV v2)", () => {
  let vault: VaultServer;
  beforeAll(async () => {
    vault = await startVault();
  });
  afterAll(async () => {
    await vault?.stop();
  });

  const call = (method: string, p: string, body?: unknown) =>
    fetch(`${vault.address}/v1/${p}`, {
      method,
      headers: { "X-Vault-Token": vault.token, "Content-Type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it("is the pinned Vault, with KV v2 mounted at the seed's `secrets` path", async () => {
    const health = await json(await call("GET", "sys/health"));
    expect(health["version"]).toBe(VERSIONS.vault.slice(1));
    expect(health["sealed"]).toBe(false);
    const mounts = (await json(await call("GET", "sys/mounts"))) as Record<string, { type: string; options: Record<string, string> | null }>;
    expect(mounts["secrets/"]?.type).toBe("kv");
    expect(mounts["secrets/"]?.options?.["version"]).toBe("2");
  });

  it("rejects requests without the token", async () => {
    const res = await fetch(`${vault.address}/v1/secrets/data/nope`);
    expect(res.status).toBe(403);
  });

  it("writes with cas: 0 once, refuses a second create-only write, then accepts cas: <current>", async () => {
    const first = await call("POST", "secrets/data/cluster-example/app", {
      options: { cas: 0 },
      data: { password: "p1" },
    });
    expect(first.status).toBe(200);
    expect(((await json(first))["data"] as { version: number }).version).toBe(1);

    const again = await call("POST", "secrets/data/cluster-example/app", {
      options: { cas: 0 },
      data: { password: "p2" },
    });
    expect(again.status).toBe(400);
    expect(JSON.stringify(await json(again))).toMatch(/check-and-set/);

    const stale = await call("POST", "secrets/data/cluster-example/app", { options: { cas: 5 }, data: { password: "p2" } });
    expect(stale.status).toBe(400);

    const next = await call("POST", "secrets/data/cluster-example/app", { options: { cas: 1 }, data: { password: "p2" } });
    expect(next.status).toBe(200);
    const read = await json(await call("GET", "secrets/data/cluster-example/app"));
    const data = read["data"] as { data: Record<string, string>; metadata: { version: number } };
    expect(data.data).toEqual({ password: "p2" });
    expect(data.metadata.version).toBe(2);
  });

  it("keeps custom_metadata (our ownership marker) via /metadata/", async () => {
    await call("POST", "secrets/data/owned", { data: { password: "x" } });
    const put = await call("POST", "secrets/metadata/owned", {
      custom_metadata: { "managed-by": "cnpg-rotator" },
    });
    expect(put.status).toBe(204);
    const meta = (await json(await call("GET", "secrets/metadata/owned")))["data"] as {
      custom_metadata: Record<string, string>;
      current_version: number;
    };
    expect(meta.custom_metadata).toEqual({ "managed-by": "cnpg-rotator" });
    expect(meta.current_version).toBe(1);
    // A new data version leaves custom_metadata alone.
    await call("POST", "secrets/data/owned", { data: { password: "y" } });
    const after = (await json(await call("GET", "secrets/metadata/owned")))["data"] as {
      custom_metadata: Record<string, string>;
    };
    expect(after.custom_metadata).toEqual({ "managed-by": "cnpg-rotator" });
  });
});

describe("Google Secret Manager emulator", () => {
  let gcp: GcpSecretManagerEmulator;
  beforeAll(async () => {
    gcp = await startGcpSecretManager();
  });
  afterAll(async () => {
    await gcp?.stop();
  });

  const rest = (method: string, p: string, body?: unknown) =>
    fetch(`${gcp.restUrl}/${p}`, {
      method,
      headers: { "Content-Type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it("creates a labelled secret, adds a version and accesses it (REST)", async () => {
    const created = await rest("POST", "projects/p1/secrets?secretId=pg-app", {
      replication: { automatic: {} },
      labels: { "managed-by": "cnpg-rotator" },
      annotations: { "cnpg-rotator/state": "{}" },
    });
    expect(created.status).toBe(200);
    const secret = await json(created);
    expect(secret["labels"]).toEqual({ "managed-by": "cnpg-rotator" });
    expect(secret["annotations"]).toEqual({ "cnpg-rotator/state": "{}" });
    expect(typeof secret["etag"]).toBe("string");

    const dup = await rest("POST", "projects/p1/secrets?secretId=pg-app", { replication: { automatic: {} } });
    expect(dup.status).toBe(409);

    const added = await json(
      await rest("POST", "projects/p1/secrets/pg-app:addVersion", {
        payload: { data: Buffer.from("s3cr3t").toString("base64") },
      }),
    );
    expect(added["name"]).toBe("projects/p1/secrets/pg-app/versions/1");
    expect(added["state"]).toBe("ENABLED");

    const accessed = await json(await rest("GET", "projects/p1/secrets/pg-app/versions/latest:access"));
    const payload = accessed["payload"] as { data: string };
    expect(Buffer.from(payload.data, "base64").toString()).toBe("s3cr3t");
    expect(accessed["name"]).toBe("projects/p1/secrets/pg-app/versions/1");

    const missing = await rest("GET", "projects/p1/secrets/nope/versions/latest:access");
    expect(missing.status).toBe(404);
  });

  it("checks the etag on UpdateSecret and resolves version aliases", async () => {
    const secret = await json(
      await rest("POST", "projects/p1/secrets?secretId=etag-test", {
        replication: { automatic: {} },
        labels: { "managed-by": "cnpg-rotator" },
      }),
    );
    await rest("POST", "projects/p1/secrets/etag-test:addVersion", { payload: { data: "djE=" } });
    const etag0 = secret["etag"] as string;

    const updated = await rest("PATCH", "projects/p1/secrets/etag-test?updateMask=annotations,version_aliases", {
      annotations: { "cnpg-rotator/pending": "1" },
      versionAliases: { current: "1" },
      etag: etag0,
    });
    expect(updated.status).toBe(200);
    const etag1 = (await json(updated))["etag"] as string;
    expect(etag1).not.toBe(etag0);

    // The etag of before the update is refused: ABORTED, HTTP 409.
    const stale = await rest("PATCH", "projects/p1/secrets/etag-test?updateMask=labels", {
      labels: {},
      etag: etag0,
    });
    expect(stale.status).toBe(409);

    const viaAlias = await json(await rest("GET", "projects/p1/secrets/etag-test/versions/current:access"));
    expect(viaAlias["name"]).toBe("projects/p1/secrets/etag-test/versions/1");
  });

  it("departs from Secret Manager where the store code must not lean on it", async () => {
    await rest("POST", "projects/p1/secrets?secretId=quirks", { replication: { automatic: {} } });
    const e0 = (await json(await rest("GET", "projects/p1/secrets/quirks")))["etag"] as string;
    const u1 = await json(
      await rest("PATCH", "projects/p1/secrets/quirks?updateMask=annotations", { annotations: { a: "1" }, etag: e0 }),
    );
    const u2 = await json(
      await rest("PATCH", "projects/p1/secrets/quirks?updateMask=annotations", {
        annotations: { a: "2" },
        etag: u1["etag"],
      }),
    );
    // The etag is derived from (name, create time, next version number), so two updates in a
    // row give the same etag: a writer holding the first one is not stopped by the second.
    expect(u2["etag"]).toBe(u1["etag"]);
    // "latest" is accepted as a user alias, and aliases may name versions that do not exist.
    const aliases = await rest("PATCH", "projects/p1/secrets/quirks?updateMask=version_aliases", {
      versionAliases: { latest: "7", ghost: "99" },
    });
    expect(aliases.status).toBe(200);
    // Without a client-sent data_crc32c, access returns dataCrc32c "0" (not the real CRC).
    await rest("POST", "projects/p1/secrets/quirks:addVersion", { payload: { data: "eA==" } });
    const acc = await json(await rest("GET", "projects/p1/secrets/quirks/versions/1:access"));
    expect((acc["payload"] as { dataCrc32c: string }).dataCrc32c).toBe("0");
  });

  it("serves the Node gRPC client (@google-cloud/secret-manager)", async () => {
    const client = new SecretManagerServiceClient({
      ...gcp.clientOptions,
      sslCreds: grpc.credentials.createInsecure(),
    });
    try {
      const [s] = await client.createSecret({
        parent: "projects/p1",
        secretId: "grpc-test",
        secret: { replication: { automatic: {} }, labels: { "managed-by": "cnpg-rotator" } },
      });
      const name = s.name ?? "";
      await client.addSecretVersion({ parent: name, payload: { data: Buffer.from("pw") } });
      const [acc] = await client.accessSecretVersion({ name: `${name}/versions/latest` });
      expect(Buffer.from(acc.payload?.data ?? "").toString()).toBe("pw");
      const [listed] = await client.listSecrets({ parent: "projects/p1", filter: "labels.managed-by=cnpg-rotator" });
      expect(listed.map((x) => x.name)).toContain(name);
    } finally {
      await client.close();
    }
  });
});

describe("lowkey-vault: the jar and the Java it needs", () => {
  const dir = mkdtempSync(join(tmpdir(), "cnpg-rotator-lowkey-find-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("names LOWKEY_VAULT_JAR when it points at nothing, and a jar whose sha256 is not the pinned one", async () => {
    const missing = join(dir, "nope.jar");
    await expect(findLowkeyJar({ LOWKEY_VAULT_JAR: missing })).rejects.toThrow(
      new RegExp(`lowkey-vault 7\\.1\\.13 .* is missing: looked at LOWKEY_VAULT_JAR \\(${missing}\\): no such file.*v7\\.1\\.13 tag`),
    );
    const other = join(dir, "other.jar");
    writeFileSync(other, "not the jar");
    const sha = createHash("sha256").update("not the jar").digest("hex");
    await expect(findLowkeyJar({ LOWKEY_VAULT_JAR: other })).rejects.toThrow(`sha256 ${sha}, expected ${LOWKEY_VAULT_JAR_SHA256}`);
    // A jar built elsewhere is accepted under its own pin, and only that one.
    expect(await findLowkeyJar({ LOWKEY_VAULT_JAR: other, LOWKEY_VAULT_JAR_SHA256: sha })).toBe(other);
  });

  it("passes over a Java older than 25 (the machine's default 17) for one that is new enough", async () => {
    const java = await findLowkeyJava({ LOWKEY_VAULT_JAVA_HOME: "/usr/lib/jvm/java-17-openjdk-amd64", JAVA_HOME: join(dir, "no-jdk") });
    const reported = spawnSync(java, ["-version"], { encoding: "utf8" }).stderr;
    expect(Number(/version "(\d+)/.exec(reported)?.[1])).toBeGreaterThanOrEqual(25);
  });
});

// lowkey-vault's jar is not served by the Maven Central reachable here: this block runs one built
// from its tagged source (findLowkeyJar says where it looks), and without it fails with that
// explanation — never skipped.
describe("Azure Key Vault (lowkey-vault)", () => {
  let kv: LowkeyVault;
  beforeAll(async () => {
    kv = await startLowkeyVault();
  });
  afterAll(async () => {
    await kv?.stop();
  });

  it("sets and gets a secret with tags (REST, api-version 7.4)", async () => {
    const https = await import("node:https");
    const req = (method: string, p: string, body?: unknown) =>
      new Promise<{ status: number; body: Record<string, unknown> }>((resolve, reject) => {
        const r = https.request(
          `${kv.vaultUrl}${p}`,
          {
            method,
            ca: kv.caPem,
            headers: { Authorization: "Bearer test-token", "Content-Type": "application/json" },
          },
          (res) => {
            let text = "";
            res.on("data", (c) => (text += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : {} }));
          },
        );
        r.on("error", reject);
        r.end(body === undefined ? undefined : JSON.stringify(body));
      });
    const put = await req("PUT", "/secrets/pg-app?api-version=7.4", {
      value: "s3cr3t",
      contentType: "application/json",
      tags: { "managed-by": "cnpg-rotator" },
    });
    expect(put.status).toBe(200);
    const got = await req("GET", "/secrets/pg-app?api-version=7.4");
    expect(got.body["value"]).toBe("s3cr3t");
    expect(got.body["tags"]).toEqual({ "managed-by": "cnpg-rotator" });
    // Its managed-identity endpoint hands out tokens too (for IDENTITY_ENDPOINT-style auth).
    const tok = await fetch(`${kv.tokenEndpoint}?resource=https%3A%2F%2Fvault.azure.net&api-version=2019-08-01`);
    expect(tok.status).toBe(200);
    expect(await json(tok)).toHaveProperty("access_token");
  });

  it("serves @azure/keyvault-secrets: every set is a new version, tags per version", async () => {
    // lowkey-vault accepts any Bearer token; its challenge names its own host, not
    // vault.azure.net, hence disableChallengeResourceVerification.
    const credential: TokenCredential = {
      getToken: async () => ({ token: "test-token", expiresOnTimestamp: Date.now() + 3_600_000 }),
    };
    const client = new SecretClient(kv.vaultUrl, credential, {
      disableChallengeResourceVerification: true,
      tlsOptions: { ca: kv.caPem },
    });
    const v1 = await client.setSecret("sdk-app", "one", { tags: { "managed-by": "cnpg-rotator" }, contentType: "text/plain" });
    const v2 = await client.setSecret("sdk-app", "two", { tags: { "managed-by": "cnpg-rotator" } });
    expect(v2.properties.version).not.toBe(v1.properties.version);
    const latest = await client.getSecret("sdk-app");
    expect(latest.value).toBe("two");
    expect(latest.properties.tags).toEqual({ "managed-by": "cnpg-rotator" });
    const first = await client.getSecret("sdk-app", { version: v1.properties.version ?? "" });
    expect(first.value).toBe("one");
    expect(first.properties.contentType).toBe("text/plain");
    await expect(client.getSecret("sdk-missing")).rejects.toMatchObject({ statusCode: 404 });
  });
});
