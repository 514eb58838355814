// GKE accepts a Google OAuth2 access token of an identity that has IAM access to the
// cluster (roles/container.developer or RBAC on its email), as gke-gcloud-auth-plugin
// sends it. Application Default Credentials supply it: the function's service account on
// Cloud Run / Functions, GOOGLE_APPLICATION_CREDENTIALS, or workload identity federation.
import type { Token } from "./token.ts";

export const GKE_SCOPE = "https://www.googleapis.com/auth/cloud-platform";
/** When a client does not say when its token expires: google-auth-library hands out tokens valid >= 5 min more. */
const UNKNOWN_EXPIRY_MS = 5 * 60_000;

/** The part of a google-auth-library AuthClient we use. */
export interface GoogleAccessTokenClient {
  getAccessToken(): Promise<{ token?: string | null }>;
  readonly credentials?: { expiry_date?: number | null } | null;
}

/** ADC's client for the cloud-platform scope (google-auth-library caches and refreshes the token itself). */
export async function defaultGoogleClient(): Promise<GoogleAccessTokenClient> {
  const { GoogleAuth } = await import("google-auth-library");
  return new GoogleAuth({ scopes: [GKE_SCOPE] }).getClient();
}

/** The client's current access token and its expiry. */
export async function googleAccessToken(client: GoogleAccessTokenClient, now: number): Promise<Token> {
  const { token } = await client.getAccessToken();
  if (!token) throw new Error("Application Default Credentials returned no access token");
  const expiry = client.credentials?.expiry_date;
  return { value: token, expiresAt: new Date(typeof expiry === "number" && expiry > 0 ? expiry : now + UNKNOWN_EXPIRY_MS) };
}
