// Azure Key Vault, mapped as docs/STORE-DESIGN.md says. Consumers read the
// latest version of a secret, so a rotation never writes `<key>` before it is
// accepted: it stages in a sibling secret `<key>-pending` (tagged with its
// rotation id), and promote adds that value as a new version of `<key>`
// tagged with the same id, then deletes the sibling. A consumer reading
// `<key>` therefore sees the old value until promote, then the new one.
//
// A rotation's StoredVersion has the rotation id as versionId (see toStored);
// a pushed one has its Key Vault version id.
//
// Ownership and bookkeeping live in version tags (Key Vault tags belong to a
// version): `managed-by: cnpg-rotator` on every version we write, the rotation
// id on versions a rotation wrote, and the version each one replaced, which is
// how getPrevious finds "the version before": Key Vault's `created` times are
// whole seconds, so ordering versions by time is ambiguous and costs list pages.
//
// Soft delete: a deleted name stays taken until purged or recovered. The
// sibling is purged after its delete when the vault allows purging (recovery
// level "...+Purgeable"); in a purge-protected vault it stays soft-deleted and
// the next stage recovers it and writes over it. Deleting `<key>` (PushSecret
// deletionPolicy Delete) only soft-deletes it, like AWS's recovery window; a
// later write recovers it, so its history carries on.
//
// Permissions (access policy "secret permissions", or the data actions of the
// "Key Vault Secrets Officer" role): get, set, delete, recover, and purge (used
// only on the sibling; without it the sibling is recovered each rotation).
// Listing versions is never needed.
//
// Key Vault has no compare-and-swap on writes. Calls on one key are serialized
// inside this process, and the rotation engine's lease keeps other processes
// out, so the first value staged for a rotation is the one kept.
//
// Authentication is the function's own identity (DefaultAzureCredential:
// workload identity, managed identity, or AZURE_CLIENT_ID/SECRET/TENANT_ID in
// its environment), like the aws store; ESO's authSecretRef is ESO's own.
import { Buffer } from "node:buffer";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AzureAuthorityHosts,
  DefaultAzureCredential,
  type DefaultAzureCredentialClientIdOptions,
  type DefaultAzureCredentialResourceIdOptions,
  type TokenCredential,
} from "@azure/identity";
import { isRestError, type KeyVaultSecret, SecretClient, type SecretClientOptions } from "@azure/keyvault-secrets";
import { InputError, OwnershipError, RotatorError, StoreError, StoreStateError } from "../errors.ts";
import type { AzureProvider } from "../manifests/schema.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE, type StoreDeps } from "./types.ts";
import type { PushResult, SecretStoreClient, StoredVersion } from "./legacy.ts";

/** `<key>` + this names the sibling that holds a staged value. */
export const PENDING_SUFFIX = "-pending";
/** Version tag: the rotation that wrote this version (on `<key>` and on the sibling). */
export const ROTATION_ID_TAG = "cnpg-rotator-rotation-id";
/** Version tag on `<key>`: the version this one replaced, i.e. the previous value. */
export const PREVIOUS_VERSION_TAG = "cnpg-rotator-previous-version";
/** Key Vault's limit on a secret value: 25 KB. */
export const MAX_VALUE_BYTES = 25 * 1024;

const NAME = /^[0-9a-zA-Z-]{1,127}$/;
const MAX_NAME_LENGTH = 127;
/** Tag values are limited to 256 characters. */
const MAX_TAG_VALUE = 256;
/** Waits on soft-delete transitions (delete, recover, purge) start here and double. */
const POLL_MS = 250;
const MAX_POLL_MS = 4000;
/** A write refused because the name is being deleted, purged or recovered is tried this often (about 16 s). */
const WRITE_ATTEMPTS = 8;
const LRO_TIMEOUT_MS = 60_000;

const AUTH_TYPES = ["ServicePrincipal", "ManagedIdentity", "WorkloadIdentity"] as const;

/**
 * For tests only: the registry calls createAzureStore(config, deps), so
 * production always authenticates with DefaultAzureCredential and the SDK's
 * default TLS verification. Tests pass a stub credential and the emulator's
 * CA (`clientOptions.tlsOptions.ca`, verification stays on).
 */
export interface AzureStoreTestSeam {
  readonly credential?: TokenCredential;
  readonly clientOptions?: SecretClientOptions;
}

export async function createAzureStore(
  config: AzureProvider,
  _deps: StoreDeps = {},
  seam: AzureStoreTestSeam = {},
): Promise<SecretStoreClient> {
  const url = new URL(config.vaultUrl);
  if (url.protocol !== "https:") {
    throw new InputError(
      `spec.provider.azurekv.vaultUrl: expected an https URL (Key Vault serves only TLS), found a ${url.protocol} URL`,
    );
  }
  const credential = seam.credential ?? defaultCredential(config);
  const client = new SecretClient(url.origin, credential, seam.clientOptions ?? {});
  return new AzureStore(client, `azure keyvault ${url.origin}`);
}

function defaultCredential(config: AzureProvider): TokenCredential {
  const authType = config.authType ?? "ServicePrincipal";
  if (!(AUTH_TYPES as readonly string[]).includes(authType)) {
    throw new InputError(`spec.provider.azurekv.authType: expected one of ${AUTH_TYPES.join(", ")}, found "${authType}"`);
  }
  let authorityHost: string | undefined;
  switch (config.environmentType ?? "PublicCloud") {
    case "PublicCloud":
      break;
    case "ChinaCloud":
      authorityHost = AzureAuthorityHosts.AzureChina;
      break;
    case "USGovernmentCloud":
      authorityHost = AzureAuthorityHosts.AzureGovernment;
      break;
    default:
      throw new InputError(
        `spec.provider.azurekv.environmentType: expected PublicCloud, ChinaCloud or USGovernmentCloud, found "${config.environmentType}" (GermanCloud closed in 2021; AzureStackCloud is not supported)`,
      );
  }
  const common = {
    ...(config.tenantId ? { tenantId: config.tenantId } : {}),
    ...(authorityHost ? { authorityHost } : {}),
  };
  // identityId picks a user-assigned managed identity, by client id or by ARM resource id.
  const id = config.identityId;
  if (id?.startsWith("/subscriptions/")) {
    const options: DefaultAzureCredentialResourceIdOptions = { ...common, managedIdentityResourceId: id };
    return new DefaultAzureCredential(options);
  }
  const options: DefaultAzureCredentialClientIdOptions = { ...common, ...(id ? { managedIdentityClientId: id } : {}) };
  return new DefaultAzureCredential(options);
}

interface Names {
  /** The secret consumers read. */
  readonly name: string;
  /** Its sibling; undefined when `<key>-pending` would exceed 127 characters (such a key can be pushed, not rotated). */
  readonly pending: string | undefined;
}

class AzureStore implements SecretStoreClient {
  readonly provider = "azurekv";
  readonly description: string;
  readonly #client: SecretClient;
  /** Per key, the tail of the calls that change it: they run one at a time. */
  readonly #queues = new Map<string, Promise<void>>();

  constructor(client: SecretClient, description: string) {
    this.#client = client;
    this.description = description;
  }

  async stagePending(key: string, value: string, rotationId: string): Promise<StoredVersion> {
    const { name, pending } = this.#names(key);
    if (pending === undefined) {
      throw new InputError(
        `remote key "${key}" in ${this.description}: expected at most ${MAX_NAME_LENGTH - PENDING_SUFFIX.length} characters to be rotated (its pending value is staged in "${key}${PENDING_SUFFIX}", and Key Vault names stop at ${MAX_NAME_LENGTH}), found ${key.length}`,
      );
    }
    if (rotationId.length === 0 || rotationId.length > MAX_TAG_VALUE) {
      throw new StoreError(
        `cannot stage into "${name}" in ${this.description}: expected a rotation id of 1 to ${MAX_TAG_VALUE} characters (it becomes a tag value), found ${rotationId.length}`,
      );
    }
    this.#checkSize(pending, value);
    return this.#serialized(key, async () => {
      const [current, staged] = await Promise.all([this.#read(name), this.#read(pending)]);
      if (current) this.#assertOwned(name, current, "stage a pending version for");
      if (staged) this.#assertOwned(pending, staged, "stage a pending version in");
      // The first value staged for a rotation is the one kept: a retry must not change the password.
      if (staged && rotationOf(staged) === rotationId) return toStored(staged);
      if (current && rotationOf(current) === rotationId) return toStored(current);
      if (!current) {
        // Promote will have to recover a soft-deleted <key>: find out now if it is not ours, not after the database changed.
        const deleted = await this.#readDeleted(name);
        if (deleted) this.#assertOwned(name, deleted, "stage a rotation for the soft-deleted secret");
      }
      return toStored(await this.#write(pending, value, { rotationId }));
    });
  }

  async getPending(key: string): Promise<StoredVersion | undefined> {
    const { pending } = this.#names(key);
    const staged = pending === undefined ? undefined : await this.#read(pending);
    return staged && isPending(staged) ? toStored(staged) : undefined;
  }

  async promote(key: string, rotationId: string): Promise<StoredVersion> {
    const { name, pending } = this.#names(key);
    return this.#serialized(key, async () => {
      const [current, staged] = await Promise.all([
        this.#read(name),
        pending === undefined ? undefined : this.#read(pending),
      ]);
      if (current) this.#assertOwned(name, current, "promote a version of");
      if (staged && pending !== undefined) this.#assertOwned(pending, staged, "promote");
      const stagedHere = staged !== undefined && pending !== undefined && rotationOf(staged) === rotationId;
      if (current && rotationOf(current) === rotationId) {
        // Promoted before, maybe by a call that stopped before deleting the sibling: finish that.
        if (stagedHere) await this.#remove(pending, { purge: true });
        return toStored(current);
      }
      if (!stagedHere) {
        const found = !current && !staged ? "no such secret" : staged ? `rotation ${rotationOf(staged) ?? "(none)"} pending` : "nothing pending";
        throw new StoreStateError(
          `cannot promote rotation ${rotationId} of "${name}" in ${this.description}: expected it pending in "${pending ?? `${name}${PENDING_SUFFIX}`}", found ${found}`,
        );
      }
      const promoted = await this.#write(name, toStored(staged).value, {
        rotationId,
        history: { previous: current?.properties.version },
      });
      await this.#remove(pending, { purge: true });
      return toStored(promoted);
    });
  }

  async discardPending(key: string, rotationId: string): Promise<void> {
    const { pending } = this.#names(key);
    if (pending === undefined) return;
    await this.#serialized(key, async () => {
      const staged = await this.#read(pending);
      // Nothing of ours, or of this rotation, is pending: nothing to drop. `<key>` itself never
      // holds a staged value, so a secret that never had a current value is gone with the sibling.
      if (!staged || !isOwned(staged) || rotationOf(staged) !== rotationId) return;
      await this.#remove(pending, { purge: true });
    });
  }

  async getCurrent(key: string): Promise<StoredVersion | undefined> {
    const current = await this.#read(this.#names(key).name);
    return current && toStored(current);
  }

  async getPrevious(key: string): Promise<StoredVersion | undefined> {
    const { name } = this.#names(key);
    const current = await this.#read(name);
    const previous = current?.properties.tags?.[PREVIOUS_VERSION_TAG];
    if (!previous) return undefined;
    const version = await this.#read(name, previous);
    return version && toStored(version);
  }

  async push(key: string, value: string, options: { ifNotExists?: boolean } = {}): Promise<PushResult> {
    const { name } = this.#names(key);
    this.#checkSize(name, value);
    return this.#serialized(key, async (): Promise<PushResult> => {
      const current = await this.#read(name);
      const versionId = current?.properties.version;
      // Like ESO's updatePolicy IfNotExists: an existing secret, ours or not, is left alone.
      if (current && options.ifNotExists) return { changed: false, versionId };
      if (current) this.#assertOwned(name, current, "push to");
      if (current && current.value === value) return { changed: false, versionId };
      const written = await this.#write(name, value, { history: { previous: versionId } });
      return { changed: true, versionId: written.properties.version };
    });
  }

  async exists(key: string): Promise<boolean> {
    const { name, pending } = this.#names(key);
    if (await this.#read(name)) return true;
    // A secret being created by its first rotation exists only as its sibling so far.
    const staged = pending === undefined ? undefined : await this.#read(pending);
    return staged !== undefined && isPending(staged);
  }

  async delete(key: string): Promise<void> {
    const { name, pending } = this.#names(key);
    await this.#serialized(key, async () => {
      const [current, staged] = await Promise.all([
        this.#read(name),
        pending === undefined ? undefined : this.#read(pending),
      ]);
      if (current) this.#assertOwned(name, current, "delete");
      if (current) await this.#remove(name, { purge: false });
      // A rotation in flight for a deleted secret must not bring it back.
      if (staged && pending !== undefined && isOwned(staged)) await this.#remove(pending, { purge: true });
    });
  }

  #names(key: string): Names {
    if (!NAME.test(key)) {
      throw new InputError(
        `remote key ${JSON.stringify(key)} in ${this.description}: expected a Key Vault secret name, 1 to ${MAX_NAME_LENGTH} letters, digits and dashes`,
      );
    }
    if (key.endsWith(PENDING_SUFFIX)) {
      throw new InputError(
        `remote key "${key}" in ${this.description}: names ending in "${PENDING_SUFFIX}" are reserved for the value a rotation stages for "${key.slice(0, -PENDING_SUFFIX.length)}"; pick another remote key`,
      );
    }
    const pending = key + PENDING_SUFFIX;
    return { name: key, pending: pending.length <= MAX_NAME_LENGTH ? pending : undefined };
  }

  #checkSize(name: string, value: string): void {
    const bytes = Buffer.byteLength(value, "utf8");
    if (bytes > MAX_VALUE_BYTES) {
      throw new InputError(
        `cannot write "${name}" in ${this.description}: expected a value of at most ${MAX_VALUE_BYTES} bytes (Key Vault's 25 KB limit), found ${bytes} bytes; nothing was written`,
      );
    }
  }

  #assertOwned(name: string, secret: KeyVaultSecret, action: string): void {
    if (isOwned(secret)) return;
    const found = secret.properties.tags?.[MANAGED_BY_KEY];
    throw new OwnershipError(
      `refusing to ${action} "${name}" in ${this.description}: expected tag ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE} on its latest version, found ${
        found === undefined ? "no such tag" : `${MANAGED_BY_KEY}=${found}`
      }; it was not created by cnpg-rotator`,
    );
  }

  /** Runs the calls that change one key one after another, so concurrent calls see each other's writes. */
  async #serialized<T>(key: string, body: () => Promise<T>): Promise<T> {
    const before = this.#queues.get(key) ?? Promise.resolve();
    const run = before.then(body);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.#queues.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#queues.get(key) === tail) this.#queues.delete(key);
    }
  }

  /** The latest version of `name` (or the given version); undefined when there is none, also when soft-deleted. */
  async #read(name: string, version?: string): Promise<KeyVaultSecret | undefined> {
    try {
      return await this.#client.getSecret(name, version ? { version } : {});
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.#failed("GetSecret", name, error);
    }
  }

  async #readDeleted(name: string): Promise<KeyVaultSecret | undefined> {
    try {
      return await this.#client.getDeletedSecret(name);
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw this.#failed("GetDeletedSecret", name, error);
    }
  }

  /**
   * Adds a version to `name` with our tags. With `history`, records the version it replaces.
   * Key Vault answers 409 while the name is held by a soft-deleted secret (recovered here, if
   * ours, then written over) or by one still being deleted, purged or recovered (waited out).
   */
  async #write(
    name: string,
    value: string,
    options: { rotationId?: string; history?: { previous: string | undefined } },
  ): Promise<KeyVaultSecret> {
    let previous = options.history?.previous;
    for (let attempt = 1; ; attempt++) {
      const tags: Record<string, string> = {
        [MANAGED_BY_KEY]: MANAGED_BY_VALUE,
        ...(options.rotationId === undefined ? {} : { [ROTATION_ID_TAG]: options.rotationId }),
        ...(options.history && previous ? { [PREVIOUS_VERSION_TAG]: previous } : {}),
      };
      try {
        return await this.#client.setSecret(name, value, { contentType: contentTypeOf(value), tags });
      } catch (error) {
        if (statusOf(error) !== 409 || attempt >= WRITE_ATTEMPTS) throw this.#failed("SetSecret", name, error);
      }
      const deleted = await this.#readDeleted(name);
      if (deleted) {
        this.#assertOwned(name, deleted, "recover (and write to) the soft-deleted secret");
        await this.#recover(name);
        // Its latest version comes back and is the one this write replaces.
        previous = deleted.properties.version;
      } else {
        await sleep(backoff(attempt));
      }
    }
  }

  async #recover(name: string): Promise<void> {
    try {
      const poller = await this.#client.beginRecoverDeletedSecret(name, { intervalInMs: POLL_MS });
      if (!poller.isDone()) await poller.pollUntilDone({ abortSignal: AbortSignal.timeout(LRO_TIMEOUT_MS) });
    } catch (error) {
      // Recovered or deleted meanwhile by someone else: the write that follows finds out which.
      if (statusOf(error) === 409 || statusOf(error) === 404) return;
      throw this.#failed("RecoverDeletedSecret", name, error);
    }
  }

  /** Soft-deletes `name`; with `purge`, then purges it if the vault allows it, so the name is free at once. */
  async #remove(name: string, options: { purge: boolean }): Promise<void> {
    let poller: Awaited<ReturnType<SecretClient["beginDeleteSecret"]>>;
    try {
      poller = await this.#client.beginDeleteSecret(name, { intervalInMs: POLL_MS });
      if (!options.purge) return;
      if (!poller.isDone()) await poller.pollUntilDone({ abortSignal: AbortSignal.timeout(LRO_TIMEOUT_MS) });
    } catch (error) {
      if (statusOf(error) === 404) return; // Deleted meanwhile.
      throw this.#failed("DeleteSecret", name, error);
    }
    const properties = poller.getResult()?.properties;
    // No recovery id: soft delete is off and the secret is gone. No "Purgeable" in the recovery
    // level: purge protection is on; the next stage recovers the sibling and writes over it.
    if (!properties?.recoveryId || !properties.recoveryLevel?.includes("Purgeable")) return;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#client.purgeDeletedSecret(name);
        return;
      } catch (error) {
        const status = statusOf(error);
        // 403: no purge permission; the sibling stays soft-deleted and is recovered on the next stage.
        if (status === 403 || status === 404) return;
        if (status !== 409 || attempt >= WRITE_ATTEMPTS) throw this.#failed("PurgeDeletedSecret", name, error);
      }
      await sleep(backoff(attempt));
    }
  }

  /** A StoreError naming the call and the secret. Key Vault's messages do not echo values. */
  #failed(call: string, name: string, error: unknown): RotatorError {
    if (error instanceof RotatorError) return error;
    const status = statusOf(error);
    const code = isRestError(error) && error.code ? ` ${error.code}` : "";
    const message = error instanceof Error ? error.message : String(error);
    const hint =
      status === 403
        ? " (the function's identity needs the secret permissions get, set, delete, recover and purge on this vault, e.g. the Key Vault Secrets Officer role)"
        : "";
    return new StoreError(
      `${call} of "${name}" in ${this.description} failed: ${status ?? "no response"}${code}: ${message}${hint}`,
      { cause: error },
    );
  }
}

function statusOf(error: unknown): number | undefined {
  return isRestError(error) ? error.statusCode : undefined;
}

function backoff(attempt: number): number {
  return Math.min(POLL_MS * 2 ** (attempt - 1), MAX_POLL_MS);
}

function isOwned(secret: KeyVaultSecret): boolean {
  return secret.properties.tags?.[MANAGED_BY_KEY] === MANAGED_BY_VALUE;
}

function rotationOf(secret: KeyVaultSecret): string | undefined {
  return secret.properties.tags?.[ROTATION_ID_TAG];
}

/** A sibling written by a rotation of ours; anything else under that name is no pending value. */
function isPending(secret: KeyVaultSecret): boolean {
  return isOwned(secret) && rotationOf(secret) !== undefined;
}

/** "application/json" for a JSON object or array (a whole-Secret push), else "text/plain". */
export function contentTypeOf(value: string): string {
  const first = value.trimStart()[0];
  if (first !== "{" && first !== "[") return "text/plain";
  try {
    JSON.parse(value);
    return "application/json";
  } catch {
    return "text/plain";
  }
}

/**
 * A rotation's version is identified by its rotation id, the same staged (in the sibling) and
 * promoted (in `<key>`), as on AWS and GCP: Key Vault gives the two copies different version
 * ids. A pushed version's id is its Key Vault version.
 */
function toStored(secret: KeyVaultSecret): StoredVersion {
  const version = secret.properties.version;
  if (version === undefined || secret.value === undefined) {
    throw new StoreStateError(`secret "${secret.name}" came back from Key Vault without a version or a value`);
  }
  const rotationId = rotationOf(secret);
  return rotationId === undefined
    ? { versionId: version, value: secret.value }
    : { versionId: rotationId, value: secret.value, rotationId };
}
