// TEST ONLY: how the campaign reads a run's remote secret at the end, straight from the server
// (no proxy): the current and previous versions as the protocol names them (with their rotation
// ids), through the project's store clients made with the campaign's own credentials.
import { createStore } from "../../lib/protocol/index.ts";
import type { SecretStoreClient } from "../../lib/stores/types.ts";
import type { CampaignServers } from "./servers.ts";

export type StoreName = "aws" | "gcp" | "vault" | "azure";

export interface StoredState {
  readonly current?: { readonly value: string; readonly rotationId?: string };
  readonly previous?: { readonly value: string; readonly rotationId?: string };
  /** Any other value the store holds for the key (a pending one). */
  readonly others: readonly string[];
}

const clients = new Map<StoreName, Promise<SecretStoreClient>>();

function client(servers: CampaignServers, store: StoreName): Promise<SecretStoreClient> {
  let c = clients.get(store);
  if (!c) {
    c = (async () => {
      switch (store) {
        case "aws":
          process.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = servers.aws;
          Object.assign(process.env, { AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing", AWS_SESSION_TOKEN: "testing" });
          return createStore({ name: "aws", config: { service: "SecretsManager", region: "us-east-1" } });
        case "gcp":
          process.env.GOOGLE_SECRET_MANAGER_ENDPOINT = servers.gcp;
          process.env.METADATA_SERVER_DETECTION = "none";
          return createStore({ name: "gcpsm", config: { projectID: "faults" } });
        case "vault":
          return createStore(
            { name: "vault", config: { server: servers.vault.address, path: "secrets", version: "v2", auth: { tokenSecretRef: { name: "vault-token", key: "token" } } } },
            { token: servers.vault.token },
          );
        case "azure": {
          const [{ azurePrimitives }, { createClient }] = await Promise.all([import("../../lib/stores/azure.ts"), import("../../lib/protocol/index.ts")]);
          return createClient(azurePrimitives({ vaultUrl: servers.azure.url }, {}, {
            credential: { getToken: async () => ({ token: "lowkey-any-token", expiresOnTimestamp: Date.now() + 3_600_000 }) },
            clientOptions: { tlsOptions: { ca: servers.azure.caPem }, disableChallengeResourceVerification: true },
          }));
        }
      }
    })();
    clients.set(store, c);
  }
  return c;
}

export async function readStore(servers: CampaignServers, store: StoreName, key: string): Promise<StoredState> {
  const c = await client(servers, store);
  const [current, previous, pending] = await Promise.all([c.getCurrent(key), c.getPrevious(key), c.getPending(key)]);
  const pick = (v: typeof current) => v && { value: v.value, ...(v.rotationId ? { rotationId: v.rotationId } : {}) };
  return { ...(current ? { current: pick(current)! } : {}), ...(previous ? { previous: pick(previous)! } : {}), others: pending ? [pending.value] : [] };
}
