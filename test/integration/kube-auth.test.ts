// Cluster credentials from providers and stores against the real kube-apiserver and moto
// (test/infra): a provider's token reaches the server on every request and is refreshed;
// CNPG_ROTATOR_CLUSTER's path with fake cloud identities handing out the static users'
// tokens; CNPG_ROTATOR_KUBECONFIG_FROM=aws:... read from moto; TLS only off when told.
import { randomBytes } from "node:crypto";
import { CreateSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { InputError, KubernetesError, PermissionError, StoreError } from "../../lib/errors.ts";
import { type GoogleAccessTokenClient, TokenProvider } from "../../lib/kubernetes/auth/index.ts";
import { connectCluster, connectClusterFromEnvironment } from "../../lib/kubernetes/connect.ts";
import { readStoredSecret } from "../../lib/rotation/stores.ts";
import type { KubernetesClient } from "../../lib/kubernetes/index.ts";
import { renderKubeconfig } from "../infra/servers.ts";
import { adminClient, capturingLogger, logLines, seenSecrets } from "./support.ts";

const infra = inject("infra");
const suffix = randomBytes(3).toString("hex");
const ns = `kube-auth-${suffix}`;
const b64 = (s: string) => Buffer.from(s).toString("base64");

/** The error `p` rejects with; fails the test when it resolves. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the call to fail");
}

let admin: KubernetesClient;
let aws: SecretsManagerClient;
const opened: KubernetesClient[] = [];
function track(c: KubernetesClient): KubernetesClient {
  opened.push(c);
  return c;
}

beforeAll(async () => {
  for (const token of Object.values(infra.tokens)) seenSecrets.add(token);
  admin = adminClient();
  await admin.ensureNamespace(ns);
  await admin.createSecret(ns, "read-me", { type: "Opaque", data: { password: "stored-value-1234" } });
  seenSecrets.add("stored-value-1234");
  // Endpoint and dummy credentials come from the global setup's env, as a function's would.
  aws = new SecretsManagerClient({ region: "us-east-1" });
});

afterAll(async () => {
  for (const c of opened) await c.close();
  await admin?.close();
  aws?.destroy();
});

/** Stores `value` in moto; returns its ARN. */
async function storeInAws(name: string, value: string): Promise<string> {
  const out = await aws.send(new CreateSecretCommand({ Name: name, SecretString: value }));
  return out.ARN!;
}

function fakeGoogle(token: string): GoogleAccessTokenClient {
  return {
    credentials: { expiry_date: Date.now() + 3_600_000 },
    getAccessToken: async () => ({ token }),
  };
}

describe("a token provider on the request path", () => {
  it("authenticates every request with the provider's token, refreshing it when due", async () => {
    let now = Date.now();
    const handedOut = [infra.tokens.admin, infra.tokens.limited];
    const provider = new TokenProvider(
      "a test token",
      async () => ({ value: handedOut.shift() ?? "exhausted", expiresAt: new Date(now + 10 * 60_000) }),
      { now: () => now },
    );
    // The kubeconfig's own user has a worthless token: only the provider's can succeed.
    const kubeconfigYaml = renderKubeconfig(infra, { user: "nobody", token: "not-a-valid-token" });
    const client = track(connectCluster({ kubeconfigYaml }, { tokenProvider: provider }));

    expect((await client.readSecret(ns, "read-me"))?.data.password).toBe("stored-value-1234");
    expect(await client.readSecret(ns, "read-me")).toBeDefined();
    expect(provider.fetchCount).toBe(1);

    // Past the refresh point the next request carries a new token: here the unprivileged user's.
    now += 9 * 60_000;
    const refused = await rejection(client.readSecret(ns, "read-me"));
    expect(provider.fetchCount).toBe(2);
    expect(refused).toBeInstanceOf(PermissionError);
    expect(refused.message).toMatch(/^forbidden: user "limited" cannot get secrets "read-me"/);
  });

  it("a provider failure fails the request with its message, and the next request tries again", async () => {
    let fail = true;
    const provider = new TokenProvider("a flaky token", async () => {
      if (fail) throw new Error("identity service unavailable");
      return { value: infra.tokens.admin, expiresAt: new Date(Date.now() + 600_000) };
    });
    const client = track(connectCluster({ kubeconfigPath: infra.kubeconfigPath }, { tokenProvider: provider }));
    const error = await rejection(client.readSecret(ns, "read-me"));
    expect(error).toBeInstanceOf(KubernetesError);
    expect(error.message).toBe("cannot get a flaky token: identity service unavailable");
    expect(client.requestCount).toBe(0);
    fail = false;
    expect(await client.readSecret(ns, "read-me")).toBeDefined();
  });

  it("a token the server rejects is a 401 KubernetesError without the token", async () => {
    const provider = new TokenProvider("a wrong token", async () => ({
      value: "wrong-token-abcdef",
      expiresAt: new Date(Date.now() + 600_000),
    }));
    const client = track(connectCluster({ kubeconfigPath: infra.kubeconfigPath }, { tokenProvider: provider }));
    const error = await rejection(client.readSecret(ns, "read-me"));
    expect(error).toBeInstanceOf(KubernetesError);
    expect(error.message).toMatch(/HTTP 401 Unauthorized/);
    expect(error.message).not.toContain("wrong-token-abcdef");
  });
});

describe("CNPG_ROTATOR_CLUSTER with server and CA from the environment", () => {
  const endpointEnv = () => ({ CNPG_ROTATOR_CLUSTER_SERVER: infra.server, CNPG_ROTATOR_CLUSTER_CA: b64(infra.caPem) });

  it("gke: the ADC token reaches the API server", async () => {
    const client = track(
      await connectClusterFromEnvironment({
        env: { ...endpointEnv(), CNPG_ROTATOR_CLUSTER: "gke" },
        cloudCredentials: { google: fakeGoogle(infra.tokens.admin) },
      }),
    );
    expect((await client.readSecret(ns, "read-me"))?.data.password).toBe("stored-value-1234");
  });

  it("aks: the Entra token reaches the API server (sync connectCluster works too)", async () => {
    const azure = {
      getToken: async () => ({ token: infra.tokens.admin, expiresOnTimestamp: Date.now() + 3_600_000 }),
    };
    const client = track(
      connectCluster({}, { env: { ...endpointEnv(), CNPG_ROTATOR_CLUSTER: "aks" }, cloudCredentials: { azure } }),
    );
    expect(await client.readSecret(ns, "read-me")).toBeDefined();
  });

  it("verifies the server against the CA given: a foreign CA fails the TLS handshake", async () => {
    // A valid CA that did not sign the server's certificate: the unit tests' throwaway one.
    const foreign =
      "MIIBnDCCAUOgAwIBAgIUTmsGUH9gbRrzSHj72QGqI/XBOKUwCgYIKoZIzj0EAwIwJDEiMCAGA1UEAwwZY25wZy1yb3RhdG9yLXVuaXQtdGVzdC1jYTAeFw0yNjExMjcy" +
      "MTE2MzNaFw0zNjExMjQyMTE2MzNaMCQxIjAgBgNVBAMMGWNucGctcm90YXRvci11bml0LXRlc3QtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATtMd3ruzQ0bW71" +
      "vsIaMfgZYuvHD7rZthUM2Bs+blbwll5HMODRtKYjbVEwphZIEtA5Czk+xY27HBUTz9Rb1/4Vo1MwUTAdBgNVHQ4EFgQUxj0xtUrumW92sePeUPZokhFtRyMwHwYDVR0j" +
      "BBgwFoAUxj0xtUrumW92sePeUPZokhFtRyMwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBk4oSsdTtLXPOahdU/Bdsz6AM9KnNO5S5VrIHmydgfzwIg" +
      "ZF9tTPsU1Mf5ZGKnnedTpi1E6tiCzb9OsUbxw+sUxwM=";
    const pem = `-----BEGIN CERTIFICATE-----\n${foreign.replace(/(.{64})/g, "$1\n")}\n-----END CERTIFICATE-----\n`;
    const env = { CNPG_ROTATOR_CLUSTER: "gke", CNPG_ROTATOR_CLUSTER_SERVER: infra.server, CNPG_ROTATOR_CLUSTER_CA: pem };
    const client = track(connectCluster({}, { env, cloudCredentials: { google: fakeGoogle(infra.tokens.admin) } }));
    const error = await rejection(client.readSecret(ns, "read-me"));
    expect(error).toBeInstanceOf(KubernetesError);
    expect(error.message).toMatch(/request to https:\/\/127\.0\.0\.1:\d+ failed: .*(certificate|CERT)/i);
  });

  it("CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY=true connects without a CA, warning loudly", async () => {
    const log = capturingLogger();
    const before = logLines.length;
    const env = {
      CNPG_ROTATOR_CLUSTER: "gke",
      CNPG_ROTATOR_CLUSTER_SERVER: infra.server,
      CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY: "true",
    };
    const client = track(
      await connectClusterFromEnvironment({ env, log, cloudCredentials: { google: fakeGoogle(infra.tokens.admin) } }),
    );
    expect(await client.readSecret(ns, "read-me")).toBeDefined();
    const warnings = logLines.slice(before).filter((l) => l.includes('"level":"warn"'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("INSECURE: the Kubernetes API server's TLS certificate is NOT verified");
  });
});

describe("CNPG_ROTATOR_KUBECONFIG_FROM=aws:... (moto)", () => {
  // Read through the stores' primitives, as the engine hands them over (lib/rotation/context.ts).
  const connectFrom = (options: Parameters<typeof connectClusterFromEnvironment>[0] = {}) =>
    connectClusterFromEnvironment({ ...options, readStoredSecret });
  const env = (from: string, extra: Record<string, string> = {}) => ({
    CNPG_ROTATOR_KUBECONFIG_FROM: from,
    AWS_REGION: "us-east-1",
    ...extra,
  });

  it("reads a kubeconfig from Secrets Manager at connect time and reads a Secret with it", async () => {
    const name = `kube-auth/kubeconfig-${suffix}`;
    const arn = await storeInAws(name, renderKubeconfig(infra, { user: "admin", token: infra.tokens.admin }));
    const log = capturingLogger();
    const before = logLines.length;
    for (const from of [`aws:${name}`, `aws:${arn}`]) {
      const client = track(await connectFrom({ env: env(from), log }));
      expect((await client.readSecret(ns, "read-me"))?.data.password).toBe("stored-value-1234");
    }
    // What the function logs names the server and the kind of credential; the guard checks no token leaked.
    const info = logLines.slice(before).filter((l) => l.includes("Kubernetes API server"));
    expect(info).toHaveLength(2);
    expect(info[0]).toContain('kubeconfig user \\"admin\\" (bearer token)');
  });

  it("takes JSON {server, ca, token}, and {server, ca} with a cloud identity", async () => {
    const full = `kube-auth/endpoint-${suffix}`;
    await storeInAws(full, JSON.stringify({ server: infra.server, ca: infra.caPem, token: infra.tokens.admin }));
    const a = track(await connectFrom({ env: env(`aws:${full}`) }));
    expect(await a.readSecret(ns, "read-me")).toBeDefined();

    const noToken = `kube-auth/endpoint-no-token-${suffix}`;
    await storeInAws(noToken, JSON.stringify({ server: infra.server, ca: b64(infra.caPem) }));
    await expect(connectFrom({ env: env(`aws:${noToken}`) })).rejects.toThrow(
      /field token is missing; store one, or set CNPG_ROTATOR_CLUSTER/,
    );
    const b = track(
      await connectFrom({
        env: env(`aws:${noToken}`, { CNPG_ROTATOR_CLUSTER: "gke" }),
        cloudCredentials: { google: fakeGoogle(infra.tokens.admin) },
      }),
    );
    expect(await b.readSecret(ns, "read-me")).toBeDefined();
  });

  it("a missing secret or unusable content is a clear error that quotes no value", async () => {
    const missing = await rejection(connectFrom({ env: env(`aws:kube-auth/none-${suffix}`) }));
    expect(missing).toBeInstanceOf(StoreError);
    expect(missing.message).toMatch(
      new RegExp(
        `^cannot read the cluster connection from CNPG_ROTATOR_KUBECONFIG_FROM \\(AWS Secrets Manager secret "kube-auth/none-${suffix}"\\): "kube-auth/none-${suffix}" in aws secretsmanager us-east-1: no such secret or version`,
      ),
    );

    const garbage = `kube-auth/garbage-${suffix}`;
    await storeInAws(garbage, `{"server": "${infra.server}", "token": "${infra.tokens.admin}"`);
    const error = await rejection(connectFrom({ env: env(`aws:${garbage}`) }));
    expect(error).toBeInstanceOf(InputError);
    expect(error.message).toContain("is not valid JSON");
    expect(error.message).not.toContain(infra.tokens.admin);

    await expect(
      connectFrom({ env: env(`aws:${garbage}`, { CNPG_ROTATOR_KUBECONFIG: "apiVersion: v1" }) }),
    ).rejects.toThrow(/both CNPG_ROTATOR_KUBECONFIG_FROM and CNPG_ROTATOR_KUBECONFIG give a kubeconfig/);
  });
});
