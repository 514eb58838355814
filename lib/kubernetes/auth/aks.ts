// AKS with Microsoft Entra ID integration accepts an Entra access token for the AKS
// server application (the same well-known id in every tenant), as kubelogin sends it.
// DefaultAzureCredential finds the function's managed identity (AZURE_CLIENT_ID picks a
// user-assigned one), workload identity, or a developer's az login.
import type { Token } from "./token.ts";

/** The Azure Kubernetes Service AAD Server application, as a `.default` scope. */
export const AKS_SCOPE = "6dae42f8-4368-4678-94ff-3960e28e3630/.default";

/** The part of an @azure/identity TokenCredential we use. */
export interface AzureTokenCredential {
  getToken(
    scopes: string | string[],
  ): Promise<{ token: string; expiresOnTimestamp: number; refreshAfterTimestamp?: number } | null>;
}

export async function defaultAzureCredential(): Promise<AzureTokenCredential> {
  const { DefaultAzureCredential } = await import("@azure/identity");
  return new DefaultAzureCredential();
}

export async function azureAccessToken(credential: AzureTokenCredential): Promise<Token> {
  const t = await credential.getToken(AKS_SCOPE);
  if (!t?.token) throw new Error("the Azure credential returned no access token");
  return {
    value: t.token,
    expiresAt: new Date(t.expiresOnTimestamp),
    ...(t.refreshAfterTimestamp ? { refreshAt: new Date(t.refreshAfterTimestamp) } : {}),
  };
}
