// Proves the test servers are real: kube-apiserver stores and authorizes (RBAC, TLS verified
// against our CA, kubectl agrees) and moto answers the Secrets Manager JSON protocol.
import { randomBytes } from "node:crypto";
import { describe, expect, inject, it } from "vitest";
import { kubectl, kubeRequest, serviceAccountToken } from "../infra/kube-client.ts";
import { issueClientCertificate, writeKubeconfig } from "../infra/servers.ts";

const infra = inject("infra");
const suffix = randomBytes(4).toString("hex");

/** Polls until `check` holds: RBAC changes reach the authorizer's informers a moment later. */
async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return check();
}

describe("kube-apiserver", () => {
  const namespace = `infra-${suffix}`;
  const secretName = "db-app";
  const password = `pw-${randomBytes(8).toString("hex")}`;
  const secretPath = `/api/v1/namespaces/${namespace}/secrets/${secretName}`;

  it("rejects clients that do not trust the test CA", async () => {
    // Global fetch only trusts the public roots, so the self-made serving cert must fail it.
    await expect(fetch(`${infra.server}/version`)).rejects.toThrow();
  });

  it("stores a Secret written over REST, and kubectl reads it back", async () => {
    const ns = await kubeRequest(infra, "/api/v1/namespaces", {
      method: "POST",
      body: { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } },
    });
    expect(ns.status).toBe(201);

    const created = await kubeRequest(infra, `/api/v1/namespaces/${namespace}/secrets`, {
      method: "POST",
      body: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: secretName },
        type: "kubernetes.io/basic-auth",
        stringData: { username: "app", password },
      },
    });
    expect(created.status).toBe(201);

    const namespaces = await kubectl(infra.kubeconfigPath, ["get", "ns", "-o", "name"]);
    expect(namespaces.split("\n")).toContain(`namespace/${namespace}`);

    const data = await kubectl(infra.kubeconfigPath, [
      "get", "secret", secretName, "-n", namespace, "-o", "jsonpath={.data.password}",
    ]);
    expect(Buffer.from(data, "base64").toString("utf8")).toBe(password);
  });

  it("forbids a user without RBAC grants until a Role and RoleBinding allow it", async () => {
    const asRotator = () => kubeRequest(infra, secretPath, { token: infra.tokens.rotator });
    const asLimited = () => kubeRequest(infra, secretPath, { token: infra.tokens.limited });
    expect((await asRotator()).status).toBe(403);
    expect((await asLimited()).status).toBe(403);
    // A token nobody issued is not a user at all.
    expect((await kubeRequest(infra, secretPath, { token: "not-a-token" })).status).toBe(401);

    const role = await kubeRequest(infra, `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`, {
      method: "POST",
      body: {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "read-db-app" },
        rules: [{ apiGroups: [""], resources: ["secrets"], resourceNames: [secretName], verbs: ["get"] }],
      },
    });
    expect(role.status).toBe(201);
    const binding = await kubeRequest(
      infra,
      `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`,
      {
        method: "POST",
        body: {
          apiVersion: "rbac.authorization.k8s.io/v1",
          kind: "RoleBinding",
          metadata: { name: "rotator-reads-db-app" },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "read-db-app" },
          subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "rotator" }],
        },
      },
    );
    expect(binding.status).toBe(201);

    expect(await eventually(async () => (await asRotator()).status === 200)).toBe(true);
    expect((await asLimited()).status).toBe(403);

    // The same grant seen through kubectl with a kubeconfig for that token.
    const rotatorKubeconfig = await writeKubeconfig(infra, { user: "rotator", token: infra.tokens.rotator });
    const data = await kubectl(rotatorKubeconfig, [
      "get", "secret", secretName, "-n", namespace, "-o", "jsonpath={.data.password}",
    ]);
    expect(Buffer.from(data, "base64").toString("utf8")).toBe(password);
    await expect(kubectl(rotatorKubeconfig, ["get", "secrets", "-n", namespace])).rejects.toThrow(/forbidden/i);
  });

  it("issues ServiceAccount tokens that authenticate but have no rights", async () => {
    const token = await serviceAccountToken(infra, namespace, "someone");
    expect((await kubeRequest(infra, secretPath, { token })).status).toBe(403);
    const review = await kubeRequest<{ status: { userInfo: { username: string } } }>(
      infra,
      "/apis/authentication.k8s.io/v1/selfsubjectreviews",
      {
        method: "POST",
        token,
        body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
      },
    );
    expect(review.status).toBe(201);
    expect(review.body.status.userInfo.username).toBe(`system:serviceaccount:${namespace}:someone`);
  });

  it("accepts client certificates signed by the test CA", async () => {
    const certificate = await issueClientCertificate(infra, "cert-user", ["cnpg-admins"]);
    const kubeconfig = await writeKubeconfig(infra, { user: "cert-user", clientCertificate: certificate });
    const whoami = await kubectl(kubeconfig, ["auth", "whoami", "-o", "json"]);
    const userInfo = (JSON.parse(whoami) as { status: { userInfo: { username: string; groups: string[] } } })
      .status.userInfo;
    expect(userInfo.username).toBe("cert-user");
    expect(userInfo.groups).toContain("cnpg-admins");
  });
});

describe("moto (AWS Secrets Manager)", () => {
  // moto picks the service from the SigV4 credential scope and does not check signatures.
  const headers = (action: string) => ({
    "content-type": "application/x-amz-json-1.1",
    "x-amz-target": `secretsmanager.${action}`,
    authorization:
      "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/secretsmanager/aws4_request, " +
      "SignedHeaders=content-type;host;x-amz-target, Signature=0",
  });
  const call = async (action: string, body: object) => {
    const response = await fetch(infra.awsEndpoint, {
      method: "POST",
      headers: headers(action),
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  it("creates a secret and returns its value", async () => {
    const name = `cnpg/app-${suffix}`;
    const secretString = JSON.stringify({ username: "app", password: randomBytes(8).toString("hex") });
    const created = await call("CreateSecret", { Name: name, SecretString: secretString });
    expect(created.status).toBe(200);
    expect(created.body.ARN).toMatch(/^arn:aws:secretsmanager:us-east-1:\d{12}:secret:cnpg\/app-/);

    const read = await call("GetSecretValue", { SecretId: name });
    expect(read.status).toBe(200);
    expect(read.body.SecretString).toBe(secretString);
    expect(read.body.VersionStages).toEqual(["AWSCURRENT"]);

    const missing = await call("GetSecretValue", { SecretId: `absent-${suffix}` });
    // Real Secrets Manager answers 400 here, moto 404: only the error type is common ground.
    expect(missing.status).toBeGreaterThanOrEqual(400);
    expect(missing.body.__type).toMatch(/ResourceNotFoundException/);
  });

  it("exposes the endpoint to SDKs through the environment", () => {
    expect(process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER).toBe(infra.awsEndpoint);
    expect(process.env.KUBECONFIG).toBe(infra.kubeconfigPath);
  });
});
