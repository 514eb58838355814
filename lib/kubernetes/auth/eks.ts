// EKS authenticates a bearer token that is a presigned STS GetCallerIdentity URL: the API
// server (aws-iam-authenticator) calls the URL and maps the IAM identity STS answers with
// to a Kubernetes user (access entries or the aws-auth ConfigMap). The token is made
// exactly as aws-iam-authenticator's and `aws eks get-token`'s:
//   "k8s-aws-v1." + base64url-without-padding("https://sts.<region>.amazonaws.com/?Action=
//   GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=
//   ...&X-Amz-Date=...&X-Amz-Expires=60[&X-Amz-Security-Token=...]&X-Amz-SignedHeaders=
//   host;x-k8s-aws-id&X-Amz-Signature=...")
// signed with SigV4 for service "sts", the header `x-k8s-aws-id: <cluster name>` signed
// (so a token made for one cluster is refused by another) but not sent in the URL.
//
// Lifetime: STS ignores X-Amz-Expires for GetCallerIdentity and accepts the URL for 15
// minutes after X-Amz-Date; the authenticator checks X-Amz-Expires is within 0..900 and
// refuses the token 15 minutes after X-Amz-Date. 60 is what every client sends (the
// authenticator 0.3.0 and older accepted only 0..60). The token also dies with the
// session credentials that signed it, so it is cached until the earlier of the two,
// less a minute (the provider's margin): about 14 minutes, as aws-iam-authenticator does.
import { InputError, KubernetesError } from "../../errors.ts";
import { Sha256 } from "../../sha256.ts";
import type { Token } from "./token.ts";

export const EKS_TOKEN_PREFIX = "k8s-aws-v1.";
export const CLUSTER_ID_HEADER = "x-k8s-aws-id";
/** How long EKS accepts a token after its X-Amz-Date. */
export const EKS_TOKEN_LIFETIME_MS = 15 * 60_000;
/** X-Amz-Expires: ignored by STS for this call, bounded by the authenticator (see above). */
const PRESIGN_EXPIRES_SECONDS = 60;
/** aws-iam-authenticator refuses longer tokens. */
const MAX_TOKEN_LENGTH = 4096;

/** AWS credentials as the SDK's providers resolve them. */
export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly expiration?: Date;
}

export type AwsCredentialsProvider = () => Promise<AwsCredentials>;

export interface EksTokenRequest {
  readonly clusterName: string;
  readonly region: string;
  readonly credentials: AwsCredentials;
  /** Signing time; default now. */
  readonly signingDate?: Date;
}

/** EKS cluster names: 1-100 of letters, digits, - and _, starting alphanumeric. */
export function checkEksClusterName(name: string, where: string): void {
  if (!/^[0-9A-Za-z][0-9A-Za-z_-]{0,99}$/.test(name)) {
    throw new InputError(
      `${where}: expected an EKS cluster name (1-100 letters, digits, - or _, starting with a letter or digit), found "${name}"`,
    );
  }
}

export function checkAwsRegion(region: string, where: string): void {
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
    throw new InputError(`${where}: expected an AWS region such as "eu-west-1", found "${region}"`);
  }
}

/** The regional STS endpoint the authenticator accepts: *.amazonaws.com, *.amazonaws.com.cn in China. */
export function stsHost(region: string): string {
  checkAwsRegion(region, "the EKS token's STS region");
  return `sts.${region}.amazonaws.com${region.startsWith("cn-") ? ".cn" : ""}`;
}

/** A token for `clusterName`, valid until `expiresAt` (15 minutes after signing, or when the credentials expire). */
export async function eksToken(request: EksTokenRequest): Promise<Token> {
  const { clusterName, region, credentials } = request;
  const signingDate = request.signingDate ?? new Date();
  const hostname = stsHost(region);
  // Loaded on first use, so a function for another cloud never loads the signer.
  const { SignatureV4 } = await import("@smithy/signature-v4");
  const signer = new SignatureV4({ service: "sts", region, credentials, sha256: Sha256 });
  const signed = await signer.presign(
    {
      method: "GET",
      protocol: "https:",
      hostname,
      path: "/",
      query: { Action: "GetCallerIdentity", Version: "2011-06-15" },
      // x-k8s-aws-id does not start with x-amz-, so the presigner signs it as a header instead of hoisting it.
      headers: { host: hostname, [CLUSTER_ID_HEADER]: clusterName },
    },
    { expiresIn: PRESIGN_EXPIRES_SECONDS, signingDate },
  );
  const url = `https://${hostname}/?${presignedQuery(signed.query ?? {})}`;
  const value = EKS_TOKEN_PREFIX + Buffer.from(url, "utf8").toString("base64url");
  if (value.length > MAX_TOKEN_LENGTH) {
    throw new KubernetesError(
      `the EKS token for cluster "${clusterName}" is ${value.length} characters; EKS accepts at most ${MAX_TOKEN_LENGTH} ` +
        "(the session token of the credentials is unusually long)",
    );
  }
  // X-Amz-Date has whole seconds: count the lifetime from there, as the server does.
  const signedAt = Math.floor(signingDate.getTime() / 1000) * 1000;
  const expiresAt = Math.min(signedAt + EKS_TOKEN_LIFETIME_MS, credentials.expiration?.getTime() ?? Number.POSITIVE_INFINITY);
  return { value, expiresAt: new Date(expiresAt) };
}

/** The credentials of the runtime's default chain (env, web identity, ECS/Lambda, IMDS, ...), cached and refreshed by the SDK. */
export async function defaultAwsCredentials(): Promise<AwsCredentialsProvider> {
  const { defaultProvider } = await import("@aws-sdk/credential-provider-node");
  return defaultProvider();
}

type Query = Record<string, string | string[] | null>;

/** The query as the SDKs print it: sorted, X-Amz-Signature last, each part RFC 3986 encoded as SigV4 canonicalizes it. */
function presignedQuery(query: Query): string {
  const single = (key: string): string => {
    const v = query[key];
    if (typeof v !== "string") throw new KubernetesError(`presigning the EKS token produced no single ${key} parameter`);
    return v;
  };
  const keys = Object.keys(query)
    .filter((k) => k !== "X-Amz-Signature")
    .sort();
  return [...keys, "X-Amz-Signature"].map((k) => `${uriEncode(k)}=${uriEncode(single(k))}`).join("&");
}

function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
