// Plugs a TokenProvider into @kubernetes/client-node. Its KubeConfig authenticates each
// request in applySecurityAuthentication, which asks the first authenticator whose
// isAuthProvider matches the current user to set headers, and awaits it: so a user whose
// auth-provider is ours gets `Authorization: Bearer <provider token>` on every request,
// fetched (or taken from the cache) right then. The built-in matchers look for the names
// azure, gcp, oidc, a tokenFile or an exec block, none of which our user has.
import type { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import type { Cluster, User } from "@kubernetes/client-node/dist/config_types.js";
import type { TokenProvider } from "./token.ts";

/** The auth-provider name of the in-memory user that carries a TokenProvider. */
export const AUTH_PROVIDER_NAME = "cnpg-rotator-token-provider";
const CONTEXT_NAME = "cnpg-rotator";

type Authenticator = Parameters<KubeConfig["addAuthenticator"]>[0];

/** An authenticator that sets the provider's token as the bearer token of every request. */
export function tokenAuthenticator(provider: TokenProvider): Authenticator {
  return {
    isAuthProvider: (user: User) => user?.authProvider?.name === AUTH_PROVIDER_NAME,
    async applyAuthentication(_user, opts) {
      const token = await provider.token();
      opts.headers = { ...(opts.headers as Record<string, string> | undefined), Authorization: `Bearer ${token}` };
    },
  };
}

/**
 * Makes `kc` hold only `cluster` and a user whose every request carries `provider`'s
 * token (no token, client certificate or exec plugin of its own).
 */
export function useTokenProvider(kc: KubeConfig, cluster: Cluster, provider: TokenProvider, namespace?: string): void {
  const user: User = { name: AUTH_PROVIDER_NAME, authProvider: { name: AUTH_PROVIDER_NAME, config: {} } };
  kc.loadFromOptions({
    clusters: [cluster],
    users: [user],
    contexts: [{ name: CONTEXT_NAME, cluster: cluster.name, user: user.name, ...(namespace ? { namespace } : {}) }],
    currentContext: CONTEXT_NAME,
  });
  kc.addAuthenticator(tokenAuthenticator(provider));
}
