// Cluster credentials without a long-lived token (lib/kubernetes/auth): the EKS token
// checked against the format aws-iam-authenticator verifies and its SigV4 signature
// recomputed here from AWS's documented algorithm; the token cache; the GKE and AKS
// providers with fake credential sources; the environment's settings. No I/O.
import { createHash, createHmac } from "node:crypto";
import { Writable } from "node:stream";
import { HttpMethod, KubeConfig, RequestContext } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { InputError, KubernetesError } from "../../lib/errors.ts";
import {
  AKS_SCOPE,
  type AwsCredentials,
  type AzureTokenCredential,
  cloudTokenProvider,
  EKS_TOKEN_PREFIX,
  eksToken,
  GKE_SCOPE,
  type GoogleAccessTokenClient,
  parseKubeconfigFrom,
  readClusterEnvironment,
  TokenProvider,
  useTokenProvider,
} from "../../lib/kubernetes/auth/index.ts";
import { parseStoredConnection } from "../../lib/kubernetes/auth/kubeconfig-from.ts";
import { connectCluster } from "../../lib/kubernetes/connect.ts";
import { createLogger } from "../../lib/log.ts";

// A throwaway self-signed CA (public certificate only), so CA parsing sees a real one.
const CA_PEM = `-----BEGIN CERTIFICATE-----
MIIBnDCCAUOgAwIBAgIUTmsGUH9gbRrzSHj72QGqI/XBOKUwCgYIKoZIzj0EAwIw
JDEiMCAGA1UEAwwZY25wZy1yb3RhdG9yLXVuaXQtdGVzdC1jYTAeFw0yNjExMjcy
MTE2MzNaFw0zNjExMjQyMTE2MzNaMCQxIjAgBgNVBAMMGWNucGctcm90YXRvci11
bml0LXRlc3QtY2EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATtMd3ruzQ0bW71
vsIaMfgZYuvHD7rZthUM2Bs+blbwll5HMODRtKYjbVEwphZIEtA5Czk+xY27HBUT
z9Rb1/4Vo1MwUTAdBgNVHQ4EFgQUxj0xtUrumW92sePeUPZokhFtRyMwHwYDVR0j
BBgwFoAUxj0xtUrumW92sePeUPZokhFtRyMwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNHADBEAiBk4oSsdTtLXPOahdU/Bdsz6AM9KnNO5S5VrIHmydgfzwIg
ZF9tTPsU1Mf5ZGKnnedTpi1E6tiCzb9OsUbxw+sUxwM=
-----END CERTIFICATE-----
`;
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

// ---------------------------------------------------------------------------------------
// SigV4, written from AWS's description (canonical request, string to sign, signing key
// chain), independent of the signer the code uses.

const sha256Hex = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
const hmac = (key: Buffer | string, s: string) => createHmac("sha256", key).update(s, "utf8").digest();
/** RFC 3986 unreserved characters stay, everything else is %XX (upper case). */
const uriEncode = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

interface SigV4Input {
  method: string;
  path: string;
  /** Decoded parameters (the signature's own excluded). */
  query: [string, string][];
  /** Lower-case names. */
  headers: Record<string, string>;
  payloadHash: string;
  amzDate: string;
  region: string;
  service: string;
  secretAccessKey: string;
}

function canonicalRequest(i: SigV4Input): string {
  const query = i.query
    .map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const names = Object.keys(i.headers).sort();
  const headers = names.map((n) => `${n}:${i.headers[n]!.trim().replace(/\s+/g, " ")}\n`).join("");
  return [i.method, i.path, query, headers, names.join(";"), i.payloadHash].join("\n");
}

function sigV4(i: SigV4Input): { canonical: string; stringToSign: string; signature: string } {
  const date = i.amzDate.slice(0, 8);
  const scope = `${date}/${i.region}/${i.service}/aws4_request`;
  const canonical = canonicalRequest(i);
  const stringToSign = ["AWS4-HMAC-SHA256", i.amzDate, scope, sha256Hex(canonical)].join("\n");
  const kDate = hmac(`AWS4${i.secretAccessKey}`, date);
  const kSigning = hmac(hmac(hmac(kDate, i.region), i.service), "aws4_request");
  return { canonical, stringToSign, signature: createHmac("sha256", kSigning).update(stringToSign, "utf8").digest("hex") };
}

describe("the test's own SigV4", () => {
  it("reproduces AWS's documented example (S3 GET Object, Authorization header)", () => {
    // docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "Example: GET Object".
    const emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const { stringToSign, signature } = sigV4({
      method: "GET",
      path: "/test.txt",
      query: [],
      headers: {
        host: "examplebucket.s3.amazonaws.com",
        range: "bytes=0-9",
        "x-amz-content-sha256": emptyHash,
        "x-amz-date": "20130524T000000Z",
      },
      payloadHash: emptyHash,
      amzDate: "20130524T000000Z",
      region: "us-east-1",
      service: "s3",
      secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    });
    expect(stringToSign.split("\n")[3]).toBe("7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    expect(signature).toBe("f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  });
});

// ---------------------------------------------------------------------------------------
// EKS

const CREDS: AwsCredentials = {
  accessKeyId: "AKIDEXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};
const SESSION_CREDS: AwsCredentials = {
  ...CREDS,
  accessKeyId: "ASIAEXAMPLE",
  // Session tokens hold / + = , which must arrive percent-encoded.
  sessionToken: "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIB+example/token==",
};
const SIGNED_AT = new Date("2024-03-09T17:04:05.789Z");
const EMPTY_SHA256 = sha256Hex("");

/** Everything the authenticator checks, and the URL's parts for the signature check. */
function decodeEksToken(token: string) {
  expect(token.startsWith(EKS_TOKEN_PREFIX)).toBe(true);
  const body = token.slice(EKS_TOKEN_PREFIX.length);
  // base64url alphabet, no padding (Go's base64.RawURLEncoding).
  expect(body).toMatch(/^[A-Za-z0-9_-]+$/);
  const url = new URL(Buffer.from(body, "base64url").toString("utf8"));
  expect(Buffer.from(url.href).toString("base64url")).toBe(body);
  const params = [...url.searchParams];
  const get = (k: string) => {
    const values = url.searchParams.getAll(k);
    expect(values, k).toHaveLength(1);
    return values[0]!;
  };
  return { url, params, get };
}

function verifyEksSignature(token: string, clusterName: string, secretAccessKey: string): boolean {
  const { url, params, get } = decodeEksToken(token);
  const signedHeaders = get("X-Amz-SignedHeaders").split(";");
  const headerValues: Record<string, string> = { host: url.host, "x-k8s-aws-id": clusterName };
  const { signature } = sigV4({
    method: "GET",
    path: url.pathname,
    query: params.filter(([k]) => k !== "X-Amz-Signature"),
    headers: Object.fromEntries(signedHeaders.map((h) => [h, headerValues[h]!])),
    payloadHash: EMPTY_SHA256,
    amzDate: get("X-Amz-Date"),
    region: get("X-Amz-Credential").split("/")[2]!,
    service: "sts",
    secretAccessKey,
  });
  return signature === get("X-Amz-Signature");
}

describe("EKS token", () => {
  it("has the format aws-iam-authenticator verifies", async () => {
    const { value } = await eksToken({ clusterName: "prod-db", region: "eu-west-1", credentials: CREDS, signingDate: SIGNED_AT });
    const { url, params, get } = decodeEksToken(value);
    expect(url.protocol).toBe("https:");
    expect(url.host).toBe("sts.eu-west-1.amazonaws.com");
    expect(url.pathname).toBe("/");
    expect(get("Action")).toBe("GetCallerIdentity");
    expect(get("Version")).toBe("2011-06-15");
    expect(get("X-Amz-Algorithm")).toBe("AWS4-HMAC-SHA256");
    expect(get("X-Amz-Credential")).toBe("AKIDEXAMPLE/20240309/eu-west-1/sts/aws4_request");
    expect(get("X-Amz-Date")).toBe("20240309T170405Z");
    expect(get("X-Amz-Expires")).toBe("60");
    expect(get("X-Amz-SignedHeaders").split(";")).toEqual(["host", "x-k8s-aws-id"]);
    expect(get("X-Amz-Signature")).toMatch(/^[0-9a-f]{64}$/);
    // Only the authenticator's whitelisted parameters; the cluster id travels as a signed header, not in the URL.
    const allowed = ["action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires", "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders"];
    for (const [k] of params) expect(allowed).toContain(k.toLowerCase());
    expect(url.searchParams.has("X-Amz-Security-Token")).toBe(false);
    expect(url.search).toContain("X-Amz-Credential=AKIDEXAMPLE%2F20240309%2Feu-west-1%2Fsts%2Faws4_request");
    expect(value.length).toBeLessThanOrEqual(4096);
  });

  it("carries a SigV4 signature that recomputes from the canonical request, the cluster name included", async () => {
    const { value } = await eksToken({ clusterName: "prod-db", region: "eu-west-1", credentials: CREDS, signingDate: SIGNED_AT });
    expect(verifyEksSignature(value, "prod-db", CREDS.secretAccessKey)).toBe(true);
    // The x-k8s-aws-id header is signed: another cluster name, another secret key, does not verify.
    expect(verifyEksSignature(value, "other-cluster", CREDS.secretAccessKey)).toBe(false);
    expect(verifyEksSignature(value, "prod-db", "wrong-secret")).toBe(false);
  });

  it("with session credentials carries X-Amz-Security-Token, signed", async () => {
    const { value } = await eksToken({ clusterName: "c1", region: "us-east-1", credentials: SESSION_CREDS, signingDate: SIGNED_AT });
    const { url, get } = decodeEksToken(value);
    expect(get("X-Amz-Security-Token")).toBe(SESSION_CREDS.sessionToken);
    expect(url.search).toContain("X-Amz-Security-Token=IQoJb3JpZ2luX2VjEJr%2F%2F%2F");
    expect(get("X-Amz-Credential")).toBe("ASIAEXAMPLE/20240309/us-east-1/sts/aws4_request");
    expect(url.host).toBe("sts.us-east-1.amazonaws.com");
    expect(verifyEksSignature(value, "c1", SESSION_CREDS.secretAccessKey)).toBe(true);
  });

  it("lives 15 minutes from X-Amz-Date, or less when the credentials expire first", async () => {
    const t = await eksToken({ clusterName: "c1", region: "eu-west-1", credentials: CREDS, signingDate: SIGNED_AT });
    expect(t.expiresAt.toISOString()).toBe("2024-03-09T17:19:05.000Z");
    const expiring = { ...SESSION_CREDS, expiration: new Date("2024-03-09T17:10:00Z") };
    const short = await eksToken({ clusterName: "c1", region: "eu-west-1", credentials: expiring, signingDate: SIGNED_AT });
    expect(short.expiresAt.toISOString()).toBe("2024-03-09T17:10:00.000Z");
  });

  it("uses the China partition's STS host there, and refuses bad names and regions", async () => {
    const { value } = await eksToken({ clusterName: "c1", region: "cn-north-1", credentials: CREDS, signingDate: SIGNED_AT });
    expect(decodeEksToken(value).url.host).toBe("sts.cn-north-1.amazonaws.com.cn");
    await expect(eksToken({ clusterName: "c1", region: "moon", credentials: CREDS })).rejects.toThrow(/expected an AWS region/);
    expect(() => readClusterEnvironment({ CNPG_ROTATOR_CLUSTER: "eks:bad name", AWS_REGION: "eu-west-1" })).toThrow(
      /CNPG_ROTATOR_CLUSTER: expected an EKS cluster name/,
    );
    expect(() => readClusterEnvironment({ CNPG_ROTATOR_CLUSTER: "eks:prod" })).toThrow(/set AWS_REGION/);
  });

  it("through the provider: default-chain stand-in called per token, token reused ~14 minutes, then re-signed", async () => {
    let now = SIGNED_AT.getTime();
    let calls = 0;
    const provider = cloudTokenProvider(
      { kind: "eks", clusterName: "prod-db", region: "eu-west-1" },
      {
        credentials: {
          aws: async () => {
            calls++;
            return CREDS;
          },
        },
        now: () => now,
      },
    );
    const first = await provider.token();
    expect(verifyEksSignature(first, "prod-db", CREDS.secretAccessKey)).toBe(true);
    now += 13 * 60_000 + 59_000;
    expect(await provider.token()).toBe(first);
    now += 2_000; // 14 minutes and 1 second after signing: inside the last minute
    const second = await provider.token();
    expect(second).not.toBe(first);
    expect(decodeEksToken(second).get("X-Amz-Date")).toBe("20240309T171806Z");
    expect(calls).toBe(2);
    expect(provider.description).toBe('an EKS token for cluster "prod-db" (AWS default credentials, STS eu-west-1)');
  });

  it("a credential failure is a KubernetesError naming the cluster, without secrets", async () => {
    const provider = cloudTokenProvider(
      { kind: "eks", clusterName: "prod-db", region: "eu-west-1" },
      {
        credentials: {
          aws: async () => {
            throw Object.assign(new Error("Could not load credentials from any providers"), { name: "CredentialsProviderError" });
          },
        },
      },
    );
    const error = await rejection(provider.token());
    expect(error).toBeInstanceOf(KubernetesError);
    expect(error.message).toBe(
      'cannot get an EKS token for cluster "prod-db" (AWS default credentials, STS eu-west-1): ' +
        "CredentialsProviderError: Could not load credentials from any providers",
    );
  });
});

// ---------------------------------------------------------------------------------------
// The cache every provider shares

describe("TokenProvider", () => {
  const at = (ms: number) => new Date(ms);

  it("reuses a token until a minute before expiry, shares one fetch among concurrent callers", async () => {
    let now = 1_000_000;
    let n = 0;
    const p = new TokenProvider("a test token", async () => ({ value: `t${++n}`, expiresAt: at(now + 10 * 60_000) }), {
      now: () => now,
    });
    expect(await Promise.all([p.token(), p.token(), p.token()])).toEqual(["t1", "t1", "t1"]);
    expect(p.fetchCount).toBe(1);
    now += 9 * 60_000 - 1;
    expect(await p.token()).toBe("t1");
    now += 1;
    expect(await p.token()).toBe("t2");
    p.invalidate();
    expect(await p.token()).toBe("t3");
  });

  it("refreshes at the issuer's refreshAt when earlier", async () => {
    let now = 0;
    let n = 0;
    const p = new TokenProvider(
      "a test token",
      async () => ({ value: `t${++n}`, expiresAt: at(now + 3_600_000), refreshAt: at(now + 1_800_000) }),
      { now: () => now },
    );
    expect(await p.token()).toBe("t1");
    now = 1_800_000;
    expect(await p.token()).toBe("t2");
  });

  it("does not cache a failure, and masks a token an error message quotes", async () => {
    let fail = true;
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJl";
    const p = new TokenProvider("a test token", async () => {
      if (fail) throw new Error(`token ${jwt} was rejected\nsecond line`);
      return { value: "good", expiresAt: at(Date.now() + 3_600_000) };
    });
    const error = await rejection(p.token());
    expect(error).toBeInstanceOf(KubernetesError);
    expect(error.message).toBe("cannot get a test token: token [redacted token] was rejected");
    fail = false;
    expect(await p.token()).toBe("good");
  });

  it("refuses an empty, multi-line or already expired token", async () => {
    const bad = (value: string, expiresAt: Date) => new TokenProvider("a test token", async () => ({ value, expiresAt })).token();
    const later = at(Date.now() + 3_600_000);
    await expect(bad("", later)).rejects.toThrow(/empty or malformed token/);
    await expect(bad("a\r\nX-Evil: 1", later)).rejects.toThrow(/empty or malformed token/);
    await expect(bad("old", at(Date.now() - 1000))).rejects.toThrow(/returned a token that expired at .*check this machine's clock/);
  });
});

// ---------------------------------------------------------------------------------------
// GKE and AKS with fake credential sources, through the client's authentication hook

/** The Authorization header client-node would send for `kc`. */
async function authorizationHeader(kc: KubeConfig): Promise<string | undefined> {
  const ctx = new RequestContext("https://cluster.example:443/api/v1/namespaces", HttpMethod.GET);
  await kc.applySecurityAuthentication(ctx);
  await ctx.getDispatcher()?.close();
  return ctx.getHeaders().Authorization;
}

function kubeConfigFor(provider: TokenProvider): KubeConfig {
  const kc = new KubeConfig();
  useTokenProvider(kc, { name: "c", server: "https://cluster.example", caData: b64(CA_PEM), skipTLSVerify: false }, provider);
  return kc;
}

describe("GKE provider (Application Default Credentials stand-in)", () => {
  function fakeGoogle(tokens: string[], lifetimeMs: number, clock: () => number) {
    const client: GoogleAccessTokenClient & { calls: number; fail?: Error } = {
      calls: 0,
      credentials: { expiry_date: null },
      async getAccessToken() {
        if (client.fail) throw client.fail;
        const token = tokens[client.calls++];
        (client.credentials as { expiry_date: number | null }).expiry_date = clock() + lifetimeMs;
        return { token };
      },
    };
    return client;
  }

  it("sends the access token as Bearer and refreshes it when it expires", async () => {
    let now = 5_000_000;
    const google = fakeGoogle(["ya29.first", "ya29.second"], 3_600_000, () => now);
    const provider = cloudTokenProvider({ kind: "gke" }, { credentials: { google }, now: () => now });
    const kc = kubeConfigFor(provider);
    expect(await authorizationHeader(kc)).toBe("Bearer ya29.first");
    expect(await authorizationHeader(kc)).toBe("Bearer ya29.first");
    expect(google.calls).toBe(1);
    now += 3_600_000 - 60_000;
    expect(await authorizationHeader(kc)).toBe("Bearer ya29.second");
    expect(GKE_SCOPE).toBe("https://www.googleapis.com/auth/cloud-platform");
  });

  it("fails clearly when ADC has no credentials", async () => {
    const google = fakeGoogle([], 0, Date.now);
    google.fail = new Error("Could not load the default credentials. Browse to https://cloud.google.com/docs/authentication/getting-started for more information.");
    const provider = cloudTokenProvider({ kind: "gke" }, { credentials: { google } });
    await expect(authorizationHeader(kubeConfigFor(provider))).rejects.toThrow(
      "cannot get a GKE access token (Google Application Default Credentials): Could not load the default credentials.",
    );
    const empty = cloudTokenProvider({ kind: "gke" }, { credentials: { google: fakeGoogle([], 1000, Date.now) } });
    await expect(empty.token()).rejects.toThrow(/returned no access token/);
  });
});

describe("AKS provider (DefaultAzureCredential stand-in)", () => {
  function fakeAzure(clock: () => number) {
    const asked: (string | string[])[] = [];
    let n = 0;
    const credential: AzureTokenCredential & { asked: typeof asked } = {
      asked,
      async getToken(scopes) {
        asked.push(scopes);
        n++;
        return { token: `entra-${n}`, expiresOnTimestamp: clock() + 3_600_000, refreshAfterTimestamp: clock() + 1_800_000 };
      },
    };
    return credential;
  }

  it("asks for the AKS server application's scope, sends the token as Bearer, refreshes at refreshAfter", async () => {
    let now = 0;
    const azure = fakeAzure(() => now);
    const kc = kubeConfigFor(cloudTokenProvider({ kind: "aks" }, { credentials: { azure }, now: () => now }));
    expect(await authorizationHeader(kc)).toBe("Bearer entra-1");
    now = 1_799_999;
    expect(await authorizationHeader(kc)).toBe("Bearer entra-1");
    now = 1_800_000;
    expect(await authorizationHeader(kc)).toBe("Bearer entra-2");
    expect(azure.asked).toEqual([AKS_SCOPE, AKS_SCOPE]);
    expect(AKS_SCOPE).toBe("6dae42f8-4368-4678-94ff-3960e28e3630/.default");
  });

  it("fails clearly when no Azure identity is available", async () => {
    const azure: AzureTokenCredential = {
      async getToken() {
        throw Object.assign(new Error("DefaultAzureCredential failed to retrieve a token from the included credentials."), {
          name: "AggregateAuthenticationError",
        });
      },
    };
    const error = await rejection(cloudTokenProvider({ kind: "aks" }, { credentials: { azure } }).token());
    expect(error).toBeInstanceOf(KubernetesError);
    expect(error.message).toBe(
      "cannot get an AKS access token (Microsoft Entra ID, DefaultAzureCredential): AggregateAuthenticationError: " +
        "DefaultAzureCredential failed to retrieve a token from the included credentials.",
    );
    const none: AzureTokenCredential = { getToken: async () => null };
    await expect(cloudTokenProvider({ kind: "aks" }, { credentials: { azure: none } }).token()).rejects.toThrow(
      /returned no access token/,
    );
  });
});

// ---------------------------------------------------------------------------------------
// Settings

describe("environment settings", () => {
  const base = { CNPG_ROTATOR_CLUSTER: "gke", CNPG_ROTATOR_CLUSTER_SERVER: "https://34.1.2.3" };

  it("takes the CA as PEM or base64 PEM and the three clouds", () => {
    for (const ca of [CA_PEM, b64(CA_PEM), b64(CA_PEM).replace(/(.{64})/g, "$1\n")]) {
      const s = readClusterEnvironment({ ...base, CNPG_ROTATOR_CLUSTER_CA: ca });
      expect(s.endpoint).toEqual({ server: "https://34.1.2.3", caPem: CA_PEM });
      expect(s.insecureSkipTlsVerify).toBe(false);
    }
    expect(readClusterEnvironment({ CNPG_ROTATOR_CLUSTER: "eks:prod-db", AWS_REGION: "eu-west-1" }).cloud).toEqual({
      kind: "eks",
      clusterName: "prod-db",
      region: "eu-west-1",
    });
    expect(readClusterEnvironment({ CNPG_ROTATOR_CLUSTER: "aks" }).cloud).toEqual({ kind: "aks" });
    expect(readClusterEnvironment({})).toEqual({ insecureSkipTlsVerify: false });
  });

  it("names the variable at fault", () => {
    const bad = (env: NodeJS.ProcessEnv) => () => readClusterEnvironment(env);
    expect(bad({ CNPG_ROTATOR_CLUSTER: "openshift" })).toThrow(/CNPG_ROTATOR_CLUSTER: expected eks:<cluster-name>, gke or aks, found "openshift"/);
    expect(bad(base)).toThrow(/CNPG_ROTATOR_CLUSTER_SERVER is set but CNPG_ROTATOR_CLUSTER_CA is not/);
    expect(bad({ ...base, CNPG_ROTATOR_CLUSTER_CA: "not a certificate" })).toThrow(
      /CNPG_ROTATOR_CLUSTER_CA: expected a CA certificate as PEM or base64 of the PEM/,
    );
    expect(bad({ ...base, CNPG_ROTATOR_CLUSTER_SERVER: "http://34.1.2.3", CNPG_ROTATOR_CLUSTER_CA: CA_PEM })).toThrow(/must be https/);
    expect(bad({ CNPG_ROTATOR_CLUSTER_SERVER: "https://x", CNPG_ROTATOR_CLUSTER_CA: CA_PEM })).toThrow(
      /CNPG_ROTATOR_CLUSTER_SERVER is set but CNPG_ROTATOR_CLUSTER is not/,
    );
    expect(bad({ ...base, CNPG_ROTATOR_CLUSTER_CA: CA_PEM, CNPG_ROTATOR_KUBECONFIG_FROM: "aws:k" })).toThrow(/set only one/);
    expect(bad({ CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY: "yes" })).toThrow(/expected true or false, found "yes"/);
    // Without TLS verification the CA may be left out.
    expect(readClusterEnvironment({ ...base, CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY: "true" }).endpoint).toEqual({
      server: "https://34.1.2.3",
    });
  });

  it("reads CNPG_ROTATOR_KUBECONFIG_FROM references", () => {
    expect(parseKubeconfigFrom("aws:prod/kubeconfig")).toMatchObject({ store: "aws", secretId: "prod/kubeconfig", region: undefined });
    expect(parseKubeconfigFrom("aws:arn:aws:secretsmanager:eu-west-1:123456789012:secret:kc-AbCdEf")).toMatchObject({
      region: "eu-west-1",
    });
    expect(parseKubeconfigFrom("gcpsm:projects/p1/secrets/kc")).toMatchObject({
      store: "gcpsm",
      name: "projects/p1/secrets/kc/versions/latest",
    });
    expect(parseKubeconfigFrom("gcpsm:projects/p1/locations/europe-west1/secrets/kc/versions/3")).toMatchObject({
      name: "projects/p1/locations/europe-west1/secrets/kc/versions/3",
      location: "europe-west1",
    });
    expect(parseKubeconfigFrom("azurekv:https://my-vault.vault.azure.net/secrets/kubeconfig")).toMatchObject({
      store: "azurekv",
      vaultUrl: "https://my-vault.vault.azure.net",
      name: "kubeconfig",
      version: undefined,
    });
    expect(() => parseKubeconfigFrom("s3:bucket/key")).toThrow(/CNPG_ROTATOR_KUBECONFIG_FROM: .*expected aws:/);
    expect(() => parseKubeconfigFrom("azurekv:http://v.vault.azure.net/secrets/x")).toThrow(InputError);
    expect(() => parseKubeconfigFrom("vault:secret/kube")).toThrow(/vault: is not supported/);
  });

  it("reads a stored connection as kubeconfig or {server, ca, token}, never quoting it", () => {
    const src = "the store";
    expect(parseStoredConnection("apiVersion: v1\nkind: Config\n", src)).toMatchObject({ kind: "kubeconfig" });
    expect(parseStoredConnection(b64("apiVersion: v1\nkind: Config\n"), src)).toMatchObject({ kind: "kubeconfig" });
    expect(parseStoredConnection('{"kind":"Config","clusters":[]}', src)).toMatchObject({ kind: "kubeconfig" });
    const json = JSON.stringify({ server: "https://10.0.0.1:6443", ca: b64(CA_PEM), token: "s3cr3t-token-value" });
    expect(parseStoredConnection(json, src)).toEqual({
      kind: "endpoint",
      server: "https://10.0.0.1:6443",
      caPem: CA_PEM,
      token: "s3cr3t-token-value",
      source: src,
    });
    const broken = '{"server": "https://x", "token": "s3cr3t-token-value",';
    const errors = [
      broken,
      JSON.stringify({ server: "https://x", token: "s3cr3t-token-value", extra: 1 }),
      JSON.stringify({ token: "s3cr3t-token-value" }),
    ].map((t) => {
      try {
        parseStoredConnection(t, src);
      } catch (e) {
        return e as Error;
      }
      throw new Error("expected an error");
    });
    expect(errors.map((e) => e.message)).toEqual([
      "the store starts like JSON but is not valid JSON; expected a kubeconfig or {server, ca, token}",
      "the store: expected only the fields server, ca and token; found also extra",
      "the store: field server (the API server's https:// URL) is missing",
    ]);
    for (const e of errors) expect(e.message).not.toContain("s3cr3t");
  });
});

describe("connectCluster from the environment (nothing fetched)", () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      level: "info",
      destination: new Writable({
        write(chunk, _enc, done) {
          lines.push(...String(chunk).split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>));
          done();
        },
      }),
    });
    return { log, lines };
  }

  it("builds a client for CNPG_ROTATOR_CLUSTER + server + CA and logs what it uses", () => {
    const { log, lines } = capture();
    const env = { CNPG_ROTATOR_CLUSTER: "aks", CNPG_ROTATOR_CLUSTER_SERVER: "https://aks.example:443", CNPG_ROTATOR_CLUSTER_CA: CA_PEM };
    const client = connectCluster({}, { env, log });
    expect(client.server).toBe("https://aks.example:443");
    expect(lines).toEqual([
      expect.objectContaining({
        level: "info",
        server: "https://aks.example:443",
        credential: "an AKS access token (Microsoft Entra ID, DefaultAzureCredential)",
      }),
    ]);
  });

  it("refuses a context where the server is named without a kubeconfig", () => {
    const env = { CNPG_ROTATOR_CLUSTER: "gke", CNPG_ROTATOR_CLUSTER_SERVER: "https://34.1.2.3", CNPG_ROTATOR_CLUSTER_CA: CA_PEM };
    expect(() => connectCluster({ context: "prod" }, { env })).toThrow(
      /context "prod" was asked for, but env CNPG_ROTATOR_CLUSTER_SERVER names the API server directly/,
    );
  });

  it("sends CNPG_ROTATOR_KUBECONFIG_FROM to the asynchronous variant", () => {
    expect(() => connectCluster({}, { env: { CNPG_ROTATOR_KUBECONFIG_FROM: "aws:kc" } })).toThrow(
      /CNPG_ROTATOR_KUBECONFIG_FROM is set: .* needs connectClusterFromEnvironment\(\)/,
    );
  });

  it("turns TLS verification off only when told, with a warning every time", () => {
    const { log, lines } = capture();
    const env = { CNPG_ROTATOR_CLUSTER: "gke", CNPG_ROTATOR_CLUSTER_SERVER: "https://34.1.2.3", CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY: "true" };
    connectCluster({}, { env, log });
    connectCluster({}, { env, log });
    const warnings = lines.filter((l) => l.level === "warn");
    expect(warnings).toHaveLength(2);
    expect(String(warnings[0]!.msg)).toMatch(/^INSECURE: the Kubernetes API server's TLS certificate is NOT verified/);
    const insecureKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://10.0.0.1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`;
    expect(() => connectCluster({ kubeconfigYaml: insecureKubeconfig }, { env: {} })).toThrow(
      /sets insecure-skip-tls-verify; give its CA .*CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY=true/,
    );
    expect(() =>
      connectCluster({ kubeconfigYaml: insecureKubeconfig }, { env: { CNPG_ROTATOR_INSECURE_SKIP_TLS_VERIFY: "true" }, log }),
    ).not.toThrow();
    expect(lines.filter((l) => l.level === "warn")).toHaveLength(3);
  });
});
