// Azure Key Vault primitives (docs/STORE-DESIGN.md): consumers read the latest version, so the
// protocol stages in a sibling `<key>-pending`. Tags belong to a version: every version we write
// carries our marker, a rotation's its rotation id, a `<key>` version the version it replaced (how
// "previous" is found: `created` times are whole seconds), and a push the record of the last
// rotation's version, so a rotation pushed over is still known as done. No compare-and-swap: the
// protocol re-reads before each write and serializes a key's calls; the Lease keeps others out.
// Soft delete: a deleted name stays taken until purged or recovered. The sibling is purged after
// its delete where the vault allows (recovery level "...+Purgeable"), else the next stage recovers
// it; a deleted `<key>` is only soft-deleted, and a later write recovers it, history and all.
// Permissions: get, set, delete, recover and purge (only on the sibling); never list. The function
// authenticates as itself (DefaultAzureCredential); ESO's authSecretRef is ESO's own.
import { Buffer } from "node:buffer";
import {
  AzureAuthorityHosts,
  DefaultAzureCredential,
  type DefaultAzureCredentialClientIdOptions,
  type DefaultAzureCredentialResourceIdOptions,
  type TokenCredential,
} from "@azure/identity";
import { isRestError, type KeyVaultSecret, SecretClient, type SecretClientOptions } from "@azure/keyvault-secrets";
import { InputError, StoreConflictError, StoreStateError } from "../errors.ts";
import type { AzureProvider } from "../manifests/schema.ts";
import { isNetworkError, isTransientStatus, withRetry } from "../retry.ts";
import { CURRENT_ROTATION, errorIs, OURS, parseJson, ROTATION_ID, requestTimeoutMs, siblingNames, storeCalls, unless } from "./primitives.ts";
import type { StoredVersion, SecretHead, SiblingPrimitives, StoreDeps } from "./types.ts";

/** Version tag on `<key>`: the version this one replaced, i.e. the previous value. */
export const PREVIOUS_VERSION_TAG = "cnpg-rotator-previous-version";
/** Key Vault's limit on a secret value: 25 KB. */
export const MAX_VALUE_BYTES = 25 * 1024;

const NAME = /^[0-9a-zA-Z-]{1,127}$/;
const MAX_NAME_LENGTH = 127;
/** Waits on soft-delete transitions (delete, recover, purge) poll this often. */
const POLL_MS = 250;
const LRO_TIMEOUT_MS = 60_000;
/** A name being deleted, purged or recovered answers 409 for a few seconds: waited out with the retry policy. */
const TRANSITION = { retries: 8, minDelayMs: POLL_MS, maxDelayMs: 4_000, maxRetryTimeMs: 30_000 };

const AUTH_TYPES = ["ServicePrincipal", "ManagedIdentity", "WorkloadIdentity"] as const;

/** For tests only (the registry passes none): a stub credential, and the emulator's CA in `clientOptions`. */
export interface AzureStoreTestSeam {
  readonly credential?: TokenCredential;
  readonly clientOptions?: SecretClientOptions;
}

const statusOf = (error: unknown) => (isRestError(error) ? error.statusCode : undefined);
const is = errorIs(statusOf);

export function azurePrimitives(config: AzureProvider, _deps: StoreDeps = {}, seam: AzureStoreTestSeam = {}): SiblingPrimitives {
  const url = new URL(config.vaultUrl);
  if (url.protocol !== "https:") {
    throw new InputError(`spec.provider.azurekv.vaultUrl: expected an https URL (Key Vault serves only TLS), found a ${url.protocol} URL`);
  }
  const credential = seam.credential ?? defaultCredential(config);
  const timeout = requestTimeoutMs();
  // No SDK retries (storeCalls retries, so retries never multiply), and a deadline on every request.
  const client = new SecretClient(url.origin, credential, {
    ...seam.clientOptions,
    retryOptions: { maxRetries: 0 },
    additionalPolicies: [
      ...(seam.clientOptions?.additionalPolicies ?? []),
      {
        position: "perRetry",
        policy: {
          name: "cnpg-rotator-timeout",
          // The HTTP client ends a request past its timeout as an AbortError (a caller's cancel):
          // renamed TimeoutError it is retried like every other store's. A real cancel stays one.
          sendRequest: (request, next) =>
            next(Object.assign(request, { timeout })).catch((error: unknown) => {
              if (!(error instanceof Error) || error.name !== "AbortError" || request.abortSignal?.aborted) throw error;
              throw Object.assign(new Error(`no answer within ${timeout} ms`, { cause: error }), { name: "TimeoutError" });
            }),
        },
      },
    ],
  });
  const description = `azure keyvault ${url.origin}`;
  const send = storeCalls(description, {
    transient: (e) => isNetworkError(e) || isTransientStatus(statusOf(e)) || (isRestError(e) && e.code === "REQUEST_SEND_ERROR"),
    detail: (e) => {
      const status = statusOf(e);
      const code = isRestError(e) && e.code ? ` ${e.code}` : "";
      const hint =
        status === 403
          ? " (the function's identity needs the secret permissions get, set, delete, recover and purge on this vault, e.g. the Key Vault Secrets Officer role)"
          : "";
      return `${status ?? "no response"}${code}: ${e instanceof Error ? e.message : String(e)}${hint}`;
    },
  });
  const get = (name: string, version?: string) => send("GetSecret", name, () => client.getSecret(name, version ? { version } : {}), is(404));
  const getDeleted = (name: string) => send("GetDeletedSecret", name, () => client.getDeletedSecret(name), is(404));
  const versionOf = (secret: KeyVaultSecret): StoredVersion => {
    const version = secret.properties.version;
    if (version === undefined || secret.value === undefined) {
      throw new StoreStateError(`secret "${secret.name}" came back from Key Vault without a version or a value`);
    }
    const rotationId = secret.properties.tags?.[ROTATION_ID];
    return { versionId: version, ...(rotationId ? { rotationId } : {}), value: secret.value };
  };
  const headOf = (secret: KeyVaultSecret, deleted: boolean): SecretHead => {
    const { versionId, rotationId } = deleted ? { versionId: secret.properties.version ?? "", rotationId: undefined } : versionOf(secret);
    return { deleted, marks: secret.properties.tags ?? {}, latest: { versionId, ...(rotationId ? { rotationId } : {}) } };
  };
  /** Waits out a soft-delete transition of `name`, then runs `call` again. */
  const afterTransition = <T>(call: string, name: string, fn: () => Promise<T>) =>
    send(call, name, () => withRetry(fn, { what: `${call} "${name}" (being deleted, purged or recovered)`, isTransient: is(409), ...TRANSITION }));

  const primitives: SiblingPrimitives = {
    staging: "sibling",
    provider: "azurekv",
    description,
    markKind: "tag",
    compareAndSwap: false,

    names(key) {
      if (!NAME.test(key)) {
        throw new InputError(`remote key ${JSON.stringify(key)} in ${description}: expected a Key Vault secret name, 1 to ${MAX_NAME_LENGTH} letters, digits and dashes`);
      }
      // A key whose sibling name would pass 127 characters can be pushed, not rotated.
      return siblingNames(key, MAX_NAME_LENGTH);
    },

    checkValue(name, value) {
      const bytes = Buffer.byteLength(value, "utf8");
      if (bytes <= MAX_VALUE_BYTES) return;
      throw new InputError(
        `cannot write "${name}" in ${description}: expected a value of at most ${MAX_VALUE_BYTES} bytes (Key Vault's 25 KB limit), found ${bytes} bytes; nothing was written`,
      );
    },

    async head(name) {
      const secret = await get(name);
      if (secret) return headOf(secret, false);
      const deleted = await getDeleted(name);
      return deleted && headOf(deleted, true);
    },

    async read(name, which) {
      const latest = await get(name, typeof which === "object" ? which.versionId : undefined);
      if (which !== "previous" || !latest) return latest && versionOf(latest);
      const previous = latest.properties.tags?.[PREVIOUS_VERSION_TAG];
      const version = previous ? await get(name, previous) : undefined;
      return version && versionOf(version);
    },

    async write(name, value, { head, marks, rotationId }) {
      // No create-only write in Key Vault: the re-read is the only check.
      if (!head && (await get(name))) throw new StoreConflictError(`cannot create "${name}" in ${description}: it exists; nothing was written`);
      // A plain version carries the record of the last version a rotation wrote (`<rotation id>@<version>`),
      // so that a rotation promoted and then pushed over is still known as done here.
      const live = head && !head.deleted ? head : undefined;
      const rotated = live?.latest?.rotationId ? `${live.latest.rotationId}@${live.latest.versionId}` : live?.marks[CURRENT_ROTATION];
      const tags: Record<string, string> = {
        ...(live ? OURS : marks),
        ...(rotationId !== undefined ? { [ROTATION_ID]: rotationId } : rotated ? { [CURRENT_ROTATION]: rotated } : {}),
        ...(head?.latest?.versionId ? { [PREVIOUS_VERSION_TAG]: head.latest.versionId } : {}),
      };
      const set = () => client.setSecret(name, value, { contentType: contentTypeOf(value), tags });
      const written = await send("SetSecret", name, set, is(409));
      if (written) return versionOf(written).versionId;
      // The name is held by a soft-deleted secret (ours: the protocol checked its head), or one in transition.
      if (await getDeleted(name)) await recover(name);
      return versionOf(await afterTransition("SetSecret", name, set)).versionId;
    },

    async adopt(name, head, rotationId) {
      await send("UpdateSecretProperties", name, () =>
        client.updateSecretProperties(name, head.latest!.versionId, { tags: { ...head.marks, [ROTATION_ID]: rotationId } }),
      );
    },

    async remove(name, { purge }) {
      const poller = await send("DeleteSecret", name, () => client.beginDeleteSecret(name, { intervalInMs: POLL_MS }), is(404));
      if (!poller || !purge) return;
      await send("DeleteSecret", name, () => poller.pollUntilDone({ abortSignal: AbortSignal.timeout(LRO_TIMEOUT_MS) }), is(404));
      const properties = poller.getResult()?.properties;
      // No recovery id: soft delete is off and the secret is gone. No "Purgeable" in the recovery
      // level: purge protection is on; the next stage recovers the sibling and writes over it.
      if (!properties?.recoveryId || !properties.recoveryLevel?.includes("Purgeable")) return;
      // 403: no purge permission; the sibling stays soft-deleted and is recovered on the next stage.
      await afterTransition("PurgeDeletedSecret", name, () => client.purgeDeletedSecret(name).catch(unless(is(403, 404), undefined)));
    },

    async close() {},
  };

  async function recover(name: string): Promise<void> {
    // 404, 409: recovered or deleted meanwhile by someone else; the write that follows finds out which.
    const recovering = async () => {
      const poller = await client.beginRecoverDeletedSecret(name, { intervalInMs: POLL_MS });
      if (!poller.isDone()) await poller.pollUntilDone({ abortSignal: AbortSignal.timeout(LRO_TIMEOUT_MS) });
    };
    await send("RecoverDeletedSecret", name, recovering, is(404, 409));
  }
  return primitives;
}

/** Where each of ESO's environmentTypes authenticates (PublicCloud: the SDK's default). */
const AUTHORITY: Record<string, string | undefined> = {
  PublicCloud: undefined,
  ChinaCloud: AzureAuthorityHosts.AzureChina,
  USGovernmentCloud: AzureAuthorityHosts.AzureGovernment,
};

function defaultCredential(config: AzureProvider): TokenCredential {
  const authType = config.authType ?? "ServicePrincipal";
  if (!(AUTH_TYPES as readonly string[]).includes(authType)) {
    throw new InputError(`spec.provider.azurekv.authType: expected one of ${AUTH_TYPES.join(", ")}, found "${authType}"`);
  }
  const environment = config.environmentType ?? "PublicCloud";
  if (!Object.hasOwn(AUTHORITY, environment)) {
    throw new InputError(
      `spec.provider.azurekv.environmentType: expected PublicCloud, ChinaCloud or USGovernmentCloud, found "${environment}" (GermanCloud closed in 2021; AzureStackCloud is not supported)`,
    );
  }
  const authorityHost = AUTHORITY[environment];
  const common = { ...(config.tenantId ? { tenantId: config.tenantId } : {}), ...(authorityHost ? { authorityHost } : {}) };
  // identityId picks a user-assigned managed identity, by client id or by ARM resource id.
  const id = config.identityId;
  const options: DefaultAzureCredentialResourceIdOptions | DefaultAzureCredentialClientIdOptions = id?.startsWith("/subscriptions/")
    ? { ...common, managedIdentityResourceId: id }
    : { ...common, ...(id ? { managedIdentityClientId: id } : {}) };
  return new DefaultAzureCredential(options);
}

/** "application/json" for a JSON object or array (a whole-Secret push), else "text/plain". */
export function contentTypeOf(value: string): string {
  const first = value.trimStart()[0];
  return (first === "{" || first === "[") && parseJson(value) !== undefined ? "application/json" : "text/plain";
}
