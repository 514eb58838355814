// lib/stores/aws-client.ts: the trimmed Secrets Manager client signs exactly as the SDK's
// default does, and resolves the credentials once per process, whatever the clients.
import { createHash, createHmac } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DescribeSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SignatureV4 } from "@smithy/signature-v4";
import { afterAll, describe, expect, it, vi } from "vitest";
import { Sha256 } from "../../lib/sha256.ts";
import { createSecretsManagerClient } from "../../lib/stores/aws-client.ts";

/** The reference: node:crypto as is, a new key every time. */
class PlainSha256 {
  readonly #hash;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    const key =
      typeof secret === "string" || secret === undefined
        ? secret
        : ArrayBuffer.isView(secret)
          ? Buffer.from(secret.buffer, secret.byteOffset, secret.byteLength)
          : Buffer.from(secret);
    this.#hash = key === undefined ? createHash("sha256") : createHmac("sha256", key);
  }
  update(data: string | Uint8Array) {
    this.#hash.update(data);
  }
  async digest() {
    return new Uint8Array(this.#hash.digest());
  }
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

describe("Sha256 (lib/sha256.ts)", () => {
  it("gives node:crypto's SHA-256 and HMAC-SHA256, for text and bytes, keys reused or not, after reset", async () => {
    // A view into a larger buffer (offset and length matter) and a bare ArrayBuffer among them.
    const keys: (string | Uint8Array | DataView | ArrayBuffer)[] = [
      "AWS4secret",
      new Uint8Array([1, 2, 3, 250]),
      "",
      "ü-key",
      new DataView(new Uint8Array([9, 9, 1, 2, 3, 9]).buffer, 2, 3),
      new Uint8Array([5, 6, 7]).buffer,
    ];
    for (let round = 0; round < 3; round++) {
      for (const key of [undefined, ...keys]) {
        for (const data of ["", "hello", new Uint8Array([0, 255, 7]), "ä€𝄞"]) {
          const ours = new Sha256(key);
          ours.update(data);
          const ref = new PlainSha256(key);
          ref.update(typeof data === "string" ? Buffer.from(data, "utf8") : data);
          expect(hex(await ours.digest())).toBe(hex(await ref.digest()));
          ours.reset();
          ours.update("again");
          const ref2 = new PlainSha256(key);
          ref2.update("again");
          expect(hex(await ours.digest())).toBe(hex(await ref2.digest()));
        }
      }
    }
  });

  it("signs a request exactly as SigV4 with plain node:crypto does, across days and secrets", async () => {
    const request = () => ({
      method: "POST",
      protocol: "https:",
      hostname: "secretsmanager.eu-west-1.amazonaws.com",
      path: "/",
      headers: {
        host: "secretsmanager.eu-west-1.amazonaws.com",
        "content-type": "application/x-amz-json-1.1",
        "x-amz-target": "secretsmanager.DescribeSecret",
      },
      body: '{"SecretId":"prod/app"}',
    });
    for (const secretAccessKey of ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "another-secret"]) {
      for (const day of ["2026-01-01T00:00:00Z", "2026-01-02T12:34:56Z", "2026-01-01T23:59:59Z"]) {
        const signer = (sha256: typeof Sha256 | typeof PlainSha256) =>
          new SignatureV4({
            credentials: { accessKeyId: "AKIDEXAMPLE", secretAccessKey, sessionToken: "token" },
            region: "eu-west-1",
            service: "secretsmanager",
            sha256,
          });
        const signingDate = new Date(day);
        const ours = await signer(Sha256).sign(request(), { signingDate });
        const ref = await signer(PlainSha256).sign(request(), { signingDate });
        expect(ours.headers.authorization).toBe(ref.headers.authorization);
        expect(ours.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/secretsmanager\/aws4_request/);
      }
    }
  });
});

describe("createSecretsManagerClient", () => {
  it("makes one attempt per call (lib/retry.ts retries), and AWS's error arrives under its own name", async () => {
    let calls = 0;
    const requestHandler = {
      handle: async () => {
        calls++;
        const body = new TextEncoder().encode('{"__type":"InternalServiceError","message":"try again"}');
        return { response: { statusCode: 500, headers: { "content-type": "application/x-amz-json-1.1" }, body } };
      },
    };
    // Credentials given, so the process's shared chain (the next test's subject) is left alone.
    const credentials = { accessKeyId: "AKIDTEST", secretAccessKey: "secret" };
    const client = createSecretsManagerClient("eu-west-1", { requestHandler, credentials });
    const error = await client.send(new DescribeSecretCommand({ SecretId: "x" })).catch((e: unknown) => e as Error);
    expect(error).toMatchObject({ name: "InternalServiceError", message: "try again" });
    expect(calls).toBe(1);
    client.destroy();
  });

  it("sends the user agent the SDK's default client sends, built once per client, and has no logger middleware", async () => {
    const seen: Record<string, string>[] = [];
    const requestHandler = {
      handle: async (req: { headers: Record<string, string> }) => {
        seen.push(req.headers);
        const body = new TextEncoder().encode('{"Name":"x","ARN":"arn:aws:secretsmanager:eu-west-1:1:secret:x"}');
        return { response: { statusCode: 200, headers: { "content-type": "application/x-amz-json-1.1" }, body } };
      },
    };
    const credentials = { accessKeyId: "AKIDTEST", secretAccessKey: "secret" };
    // The SDK's own provider of the user agent's parts, counted.
    const defaults = new SecretsManagerClient({ region: "eu-west-1", credentials });
    const counting = vi.fn(defaults.config.defaultUserAgentProvider);
    defaults.destroy();
    const ours = createSecretsManagerClient("eu-west-1", { requestHandler, credentials, defaultUserAgentProvider: counting });
    for (let i = 0; i < 3; i++) await ours.send(new DescribeSecretCommand({ SecretId: "x" }));
    const sdk = new SecretsManagerClient({ region: "eu-west-1", requestHandler, credentials, maxAttempts: 1 });
    await sdk.send(new DescribeSecretCommand({ SecretId: "x" }));
    // The feature metrics (m/...) say which SDK features a call used: ours has no SDK retries.
    const parts = (h: Record<string, string>) => [h["user-agent"], h["x-amz-user-agent"]].map((v) => v?.replace(/ m\/\S+/, ""));
    expect(seen).toHaveLength(4);
    expect(parts(seen[0]!)[0]).toMatch(/^aws-sdk-js\/\S+ ua\/2\.1 os\/\S+ lang\/js md\/nodejs#\S+ api\/secrets-manager#\S+/);
    for (const h of seen) expect(parts(h)).toEqual(parts(seen[3]!));
    expect(new Set(seen.slice(0, 3).map((h) => h["user-agent"])).size).toBe(1);
    expect(counting).toHaveBeenCalledTimes(1);
    expect(ours.middlewareStack.identify().some((m) => m.startsWith("loggerMiddleware"))).toBe(false);
    expect(sdk.middlewareStack.identify().some((m) => m.startsWith("loggerMiddleware"))).toBe(true);
    ours.destroy();
    sdk.destroy();
  });

  it("signs each request it sends with SigV4 for its region and service, the same signer for every call", async () => {
    const sent: { method: string; path: string; headers: Record<string, string>; body: string }[] = [];
    const requestHandler = {
      handle: async (req: { method: string; path: string; headers: Record<string, string>; body: string | Uint8Array }) => {
        const body = typeof req.body === "string" ? req.body : new TextDecoder().decode(req.body);
        sent.push({ method: req.method, path: req.path, headers: { ...req.headers }, body });
        const answer = new TextEncoder().encode('{"Name":"x","ARN":"arn:aws:secretsmanager:ap-south-2:1:secret:x"}');
        return { response: { statusCode: 200, headers: { "content-type": "application/x-amz-json-1.1" }, body: answer } };
      },
    };
    const credentials = { accessKeyId: "AKIDSIGN", secretAccessKey: "sign-secret", sessionToken: "sign-token" };
    const client = createSecretsManagerClient("ap-south-2", { requestHandler, credentials });
    for (const id of ["a", "b/c", "ü"]) await client.send(new DescribeSecretCommand({ SecretId: id }));
    // One signer object for the client's life, not one built per call.
    expect(await client.config.signer()).toBe(await client.config.signer());
    client.destroy();
    expect(sent).toHaveLength(3);
    for (const req of sent) {
      const { authorization, ...unsigned } = req.headers;
      const amzDate = unsigned["x-amz-date"]!;
      const signingDate = new Date(amzDate.replace(/^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/, "$1-$2-$3T$4:$5:$6Z"));
      // The reference: a plain SigV4 signer with node:crypto as is, over exactly what was sent.
      const reference = new SignatureV4({ credentials, region: "ap-south-2", service: "secretsmanager", sha256: PlainSha256 });
      const signed = await reference.sign(
        { method: req.method, protocol: "https:", hostname: unsigned.host!, path: req.path, headers: unsigned, body: req.body },
        { signingDate },
      );
      expect(authorization).toBe(signed.headers.authorization);
      expect(authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=AKIDSIGN\/\d{8}\/ap-south-2\/secretsmanager\/aws4_request, SignedHeaders=\S*x-amz-security-token/);
    }
  });

  const dir = mkdtempSync(join(tmpdir(), "cnpg-rotator-aws-client-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("resolves the credentials once for every client of the process", async () => {
    // A profile whose credentials come from a process that counts how often it is run.
    const counter = join(dir, "runs");
    const script = join(dir, "credentials.sh");
    writeFileSync(
      script,
      `#!/bin/sh\necho run >> ${JSON.stringify(counter)}\n` +
        `echo '{"Version":1,"AccessKeyId":"AKIDPROCESS","SecretAccessKey":"process-secret","SessionToken":"t","Expiration":"2999-01-01T00:00:00Z"}'\n`,
    );
    chmodSync(script, 0o755);
    writeFileSync(join(dir, "config"), `[profile counted]\ncredential_process = ${script}\n`);
    for (const name of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_SECRETS_MANAGER"]) {
      vi.stubEnv(name, undefined);
    }
    vi.stubEnv("AWS_CONFIG_FILE", join(dir, "config"));
    vi.stubEnv("AWS_SHARED_CREDENTIALS_FILE", join(dir, "none"));
    vi.stubEnv("AWS_PROFILE", "counted");
    const seen: string[] = [];
    // Answers every request at once and records the key id it was signed with.
    const requestHandler = {
      handle: async (req: { headers: Record<string, string> }) => {
        seen.push(/Credential=([^/]+)\//.exec(req.headers.authorization ?? "")?.[1] ?? "");
        const body = new TextEncoder().encode('{"Name":"x","ARN":"arn:aws:secretsmanager:eu-west-1:1:secret:x"}');
        return { response: { statusCode: 200, headers: { "content-type": "application/x-amz-json-1.1" }, body } };
      },
    };
    try {
      for (let i = 0; i < 3; i++) {
        const client = createSecretsManagerClient("eu-west-1", { requestHandler });
        await client.send(new DescribeSecretCommand({ SecretId: "x" }));
        await client.send(new DescribeSecretCommand({ SecretId: "x" }));
        client.destroy();
      }
    } finally {
      vi.unstubAllEnvs();
    }
    expect(seen).toEqual(Array(6).fill("AKIDPROCESS"));
    expect(readFileSync(counter, "utf8").trim().split("\n")).toEqual(["run"]);
  });
});
