// The Secrets Manager client every aws store (and the kubeconfig-from read) uses, with
// the SDK's own configuration trimmed of per-call work it does not need here. Measured
// in bench/README.md (clientCosts): what is left per call is signing, the JSON protocol's
// (de)serialisation and the middleware chain itself.
import { SecretsManagerClient, type SecretsManagerClientConfig } from "@aws-sdk/client-secrets-manager";
import { defaultProvider } from "@aws-sdk/credential-provider-node";
import { SignatureV4 } from "@smithy/signature-v4";
import { Sha256 } from "../sha256.ts";

type CredentialProvider = ReturnType<typeof defaultProvider>;

/**
 * A Secrets Manager client for `region`; `options` (a request handler with timeouts, a
 * retry setting, an endpoint, credentials) override the defaults below.
 *
 * - `cacheMiddleware`: the middleware stack is resolved once per command type, not on
 *   every call (the SDK otherwise clones and sorts it each time).
 * - `credentials`: one default provider chain per container, shared by every client, so
 *   each invocation's new store client does not resolve the credentials again (on Lambda
 *   they come from the environment; elsewhere the chain may mean files, SSO or a metadata
 *   endpoint). The SDK refreshes them before they expire.
 * - no retry middleware, no logger middleware, the user agent's parts built once (below).
 * - one SigV4 signer per client, not one per call (below).
 * - `sha256`: lib/sha256.ts, which keeps the HMAC keys as KeyObjects.
 */
export function createSecretsManagerClient(region: string, options: SecretsManagerClientConfig = {}): SecretsManagerClient {
  const client = new SecretsManagerClient({
    region,
    cacheMiddleware: true,
    credentials: containerCredentials(),
    sha256: Sha256,
    ...options,
  });
  // No SDK retries: lib/retry.ts is the one retry policy, around each call. The SDK's retry
  // middleware would still draw a token from its bucket, make an invocation id and add two
  // headers to sign on every call, so it is replaced by one that only passes the call on
  // (same name and place: the signing middleware is placed relative to it).
  client.middlewareStack.add((next) => next, {
    step: "finalizeRequest",
    name: "retryMiddleware",
    priority: "high",
    override: true,
  });
  // No logger is configured (the SDK's no-op one): its middleware would still read the
  // context and the command's log filters on every call, for nothing.
  client.middlewareStack.remove("loggerMiddleware");
  // The user agent's parts (SDK, OS release, Node version, app id) are the same for every
  // call; the SDK rebuilds them each time (an uname call among it). Built once per client;
  // the per-call parts (feature metrics) are still added by the SDK's middleware.
  const userAgent = client.config.defaultUserAgentProvider;
  let parts: ReturnType<typeof userAgent> | undefined;
  client.config.defaultUserAgentProvider = () => (parts ??= userAgent());
  // One SigV4 signer per client. Without a `signer`, the SDK builds a new SignatureV4 for every
  // call, from a copy of the whole client configuration. This one signs as that one would: the
  // client's resolved credentials (memoised, refreshed before expiry), its region, the same
  // hashing; the service and region to sign for still come with each call from its auth scheme.
  if (!options.signer) {
    const signer = new SignatureV4({
      credentials: client.config.credentials,
      region: client.config.region,
      service: "secretsmanager",
      sha256: Sha256,
      uriEscapePath: client.config.signingEscapePath,
    });
    client.config.signer = async () => signer;
  }
  return client;
}

let shared: CredentialProvider | undefined;

/** The SDK's default credential chain, created once per process and memoised by the SDK. */
function containerCredentials(): CredentialProvider {
  shared ??= defaultProvider();
  return shared;
}
