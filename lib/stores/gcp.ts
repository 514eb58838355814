// Google Secret Manager (docs/STORE-DESIGN.md). Consumers read `versions/latest`
// of `<key>`, so a rotation never writes a version there before it is accepted:
//
// - `<key>`          latest version = current, the enabled one before it = previous.
//                    Annotation `cnpg-rotator-current-rotation: <rotationId>@<version>`
//                    names the version a rotation promoted (and `…-previous-rotation` the
//                    one before), so promote is idempotent and versions map back to rotations.
// - `<key>-pending`  exists only while a rotation is in flight: annotation
//                    `cnpg-rotator-rotation-id`, staged value = its version 1 (the sibling is
//                    created afresh per rotation, so its first version is the first value
//                    staged, whoever wins a race). Promote adds that value as a new version of
//                    `<key>`, records it with an etag compare-and-swap, deletes the sibling.
//
// During a rotation, consumers reading `latest` see the old value until promote; the moment
// promote's AddSecretVersion returns, they see the new one.
//
// A rotation's version has the rotation id as `versionId` (as on AWS, where VersionId is the
// rotation id): it must be the same when staged and once promoted, and GCP numbers the
// version only at promote. A pushed version's `versionId` is its GCP version number.
//
// `location` makes the secrets regional, as ESO reads them with the same SecretStore:
// `projects/<p>/locations/<l>/secrets/…` through `secretmanager.<l>.rep.googleapis.com`
// (regional secrets take no replication). Without it: global secrets, automatic replication.
// `auth` is how ESO authenticates in the cluster; the function uses its runtime's own
// identity (Application Default Credentials), so grant that one access instead.
import { type protos, SecretManagerServiceClient } from "@google-cloud/secret-manager";
import { grpc } from "google-gax";
import { InputError, OwnershipError, RotatorError, StoreError, StoreStateError } from "../errors.ts";
import type { GcpProvider } from "../manifests/schema.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE, type StoreDeps } from "./types.ts";
import type { PushResult, SecretStoreClient, StoredVersion } from "./legacy.ts";

/**
 * `host:port` of a Secret Manager emulator: plaintext gRPC and no credentials. For tests and
 * local runs only; unset, the SDK's own endpoint (or the regional one) and ADC are used.
 */
export const ENDPOINT_ENV = "GOOGLE_SECRET_MANAGER_ENDPOINT";
export const PENDING_SUFFIX = "-pending";
/** GCP annotation keys allow no "/": letters, digits, "-", "_", "." only. */
export const CURRENT_ROTATION = "cnpg-rotator-current-rotation";
export const PREVIOUS_ROTATION = "cnpg-rotator-previous-rotation";
export const ROTATION_ID = "cnpg-rotator-rotation-id";
/** Label on the sibling, so `gcloud secrets list --filter=labels.cnpg-rotator-role=pending` shows rotations in flight. */
export const ROLE_LABEL = "cnpg-rotator-role";

const SECRET_ID = /^[A-Za-z0-9_-]+$/;
const MAX_SECRET_ID = 255;
const MAX_KEY = MAX_SECRET_ID - PENDING_SUFFIX.length;
const OWNED = { [MANAGED_BY_KEY]: MANAGED_BY_VALUE };
/** How often a step that lost a race re-reads and tries again before giving up. */
const ATTEMPTS = 5;

// gRPC status codes the store handles.
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const FAILED_PRECONDITION = 9; // Secret Manager's answer to a stale etag (and to a disabled version)
const ABORTED = 10; // the emulator's answer to a stale etag

type Secret = protos.google.cloud.secretmanager.v1.ISecret;
interface Names {
  readonly key: string;
  readonly pending: string;
}
interface Mark {
  readonly rotationId: string;
  readonly version: string;
}

export async function createGcpStore(config: GcpProvider, _deps: StoreDeps = {}): Promise<SecretStoreClient> {
  // Both end up in resource paths and a host name: refuse anything that could reshape them.
  if (!/^[a-z0-9][a-z0-9.:-]*$/.test(config.projectID)) {
    throw new InputError(
      `spec.provider.gcpsm.projectID: expected a project id or number (lower-case letters, digits, "-", ".", ":"), found "${config.projectID}"`,
    );
  }
  const location = config.location || undefined;
  if (location !== undefined && !/^[a-z0-9-]+$/.test(location)) {
    throw new InputError(
      `spec.provider.gcpsm.location: expected a Secret Manager location such as "europe-west1", found "${location}"`,
    );
  }
  const parent = `projects/${config.projectID}${location ? `/locations/${location}` : ""}`;
  const endpoint = process.env[ENDPOINT_ENV];
  let options: ConstructorParameters<typeof SecretManagerServiceClient>[0];
  let via = "";
  if (endpoint) {
    const { host, port } = parseHostPort(endpoint);
    // universeDomain given, google-auth-library never goes looking for credentials.
    options = { apiEndpoint: host, port, sslCreds: grpc.credentials.createInsecure(), universeDomain: "googleapis.com" };
    via = ` via ${endpoint} (plaintext, ${ENDPOINT_ENV})`;
  } else if (location) {
    options = { apiEndpoint: `secretmanager.${location}.rep.googleapis.com` };
  }
  const client = new SecretManagerServiceClient(options);
  return new GcpStore(client, parent, location !== undefined, `gcp secretmanager ${parent}${via}`);
}

function parseHostPort(endpoint: string): { host: string; port: number } {
  const match = /^\[?([^\]/]+?)\]?:(\d{1,5})$/.exec(endpoint);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) {
    throw new InputError(`${ENDPOINT_ENV}: expected host:port of a Secret Manager emulator, found "${endpoint}"`);
  }
  return { host: match[1]!, port };
}

class GcpStore implements SecretStoreClient {
  readonly provider = "gcpsm";
  readonly description: string;
  readonly #client: SecretManagerServiceClient;
  readonly #parent: string;
  readonly #regional: boolean;

  constructor(client: SecretManagerServiceClient, parent: string, regional: boolean, description: string) {
    this.#client = client;
    this.#parent = parent;
    this.#regional = regional;
    this.description = description;
  }

  async stagePending(key: string, value: string, rotationId: string): Promise<StoredVersion> {
    const names = this.#names(key);
    const secret = await this.#getOrCreate(names.key);
    this.#assertOwned(names.key, secret, "stage a pending version in");
    const promoted = markOf(secret, CURRENT_ROTATION);
    if (promoted?.rotationId === rotationId) {
      const current = await this.#access(names.key, promoted.version);
      if (current !== undefined) return rotationVersion(rotationId, current);
    }
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      let sibling = await this.#create(names.pending, {
        labels: { ...OWNED, [ROLE_LABEL]: "pending" },
        annotations: { [ROTATION_ID]: rotationId },
      });
      if (!sibling) {
        sibling = await this.#get(names.pending);
        if (!sibling) continue; // Deleted meanwhile: create it again.
        this.#assertOwned(names.pending, sibling, "stage a pending version in");
        if (sibling.annotations?.[ROTATION_ID] !== rotationId) {
          // Another rotation's pending value: replace it (the etag keeps us from deleting a newer one).
          await this.#deleteIfUnchanged(sibling);
          continue;
        }
        // Ours, from an earlier or a concurrent call: its first version is the value staged.
        const staged = await this.#access(names.pending, "1");
        if (staged !== undefined) return rotationVersion(rotationId, staged);
      }
      const added = await this.#addVersion(names.pending, value);
      if (versionNumber(added) === "1") return rotationVersion(rotationId, value);
      // A concurrent call of the same rotation added a version first: its value wins.
      const first = await this.#access(names.pending, "1");
      if (first !== undefined) return rotationVersion(rotationId, first);
      // Version 1 exists but cannot be read (disabled or destroyed by hand): start the sibling afresh.
      await this.#deleteIfUnchanged(sibling);
    }
    throw new StoreError(
      `cannot stage rotation ${rotationId} in "${names.pending}" in ${this.description}: it kept being replaced or deleted (${ATTEMPTS} attempts)`,
    );
  }

  async getPending(key: string): Promise<StoredVersion | undefined> {
    const names = this.#names(key);
    const sibling = await this.#get(names.pending);
    const rotationId = sibling && isOwned(sibling) ? sibling.annotations?.[ROTATION_ID] : undefined;
    if (!rotationId) return undefined;
    const value = await this.#access(names.pending, "1");
    return value === undefined ? undefined : rotationVersion(rotationId, value);
  }

  async promote(key: string, rotationId: string): Promise<StoredVersion> {
    const names = this.#names(key);
    const [secret, sibling] = await Promise.all([this.#get(names.key), this.#get(names.pending)]);
    const refuse = (found: string) =>
      new StoreStateError(
        `cannot promote rotation ${rotationId} of "${names.key}" in ${this.description}: expected it pending, found ${found}`,
      );
    if (!secret) throw refuse("no such secret");
    this.#assertOwned(names.key, secret, "promote a version of");
    const ours = sibling && isOwned(sibling) && sibling.annotations?.[ROTATION_ID] === rotationId ? sibling : undefined;

    const promoted = markOf(secret, CURRENT_ROTATION);
    if (promoted?.rotationId === rotationId) {
      // Promoted before; a promote that stopped before deleting the sibling is finished here.
      if (ours) await this.#deleteIfUnchanged(ours);
      const value = await this.#access(names.key, promoted.version);
      if (value === undefined) throw refuse(`its version ${promoted.version} no longer readable`);
      return rotationVersion(rotationId, value);
    }
    if (!ours) {
      const other = sibling && isOwned(sibling) ? sibling.annotations?.[ROTATION_ID] : undefined;
      throw refuse(other ? `rotation ${other} pending` : "nothing pending");
    }
    const value = await this.#access(names.pending, "1");
    if (value === undefined) throw refuse(`"${names.pending}" without a staged value`);
    // AddSecretVersion has no precondition; the annotation that follows does (etag).
    const version = versionNumber(await this.#addVersion(names.key, value));
    await this.#recordPromotion(names.key, secret, rotationId, version);
    await this.#deleteIfUnchanged(ours);
    return rotationVersion(rotationId, value);
  }

  async discardPending(key: string, rotationId: string): Promise<void> {
    const names = this.#names(key);
    const sibling = await this.#get(names.pending);
    // Nothing of ours can be pending in a foreign sibling, so there is nothing to drop.
    if (!sibling || !isOwned(sibling) || sibling.annotations?.[ROTATION_ID] !== rotationId) return;
    // `<key>` first: should we stop between the two, the sibling still says what to finish.
    const secret = await this.#get(names.key);
    if (secret && isOwned(secret) && !(await this.#hasVersions(names.key))) {
      // Created for this rotation and never given a value: back to no secret.
      await this.#deleteIfUnchanged(secret);
    }
    await this.#deleteIfUnchanged(sibling);
  }

  async getCurrent(key: string): Promise<StoredVersion | undefined> {
    const names = this.#names(key);
    const [secret, latest] = await Promise.all([this.#get(names.key), this.#accessVersion(names.key, "latest")]);
    return secret && latest && toStored(secret, latest.version, latest.value);
  }

  async getPrevious(key: string): Promise<StoredVersion | undefined> {
    const names = this.#names(key);
    const [secret, enabled] = await Promise.all([this.#get(names.key), this.#latestEnabled(names.key, 2)]);
    const previous = enabled[1];
    if (!secret || previous === undefined) return undefined;
    const value = await this.#access(names.key, previous);
    return value === undefined ? undefined : toStored(secret, previous, value);
  }

  async push(key: string, value: string, options: { ifNotExists?: boolean } = {}): Promise<PushResult> {
    const names = this.#names(key);
    let secret = await this.#get(names.key);
    if (!secret) {
      if (await this.#create(names.key, { labels: OWNED })) {
        return { changed: true, versionId: versionNumber(await this.#addVersion(names.key, value)) };
      }
      secret = await this.#get(names.key); // Created meanwhile by someone else: go on as if it had been there.
      if (!secret) throw new StoreError(`cannot push to "${names.key}" in ${this.description}: it exists and is gone`);
    }
    // Like ESO's updatePolicy IfNotExists: an existing secret, ours or not, is left alone (and its value unread).
    if (options.ifNotExists) return { changed: false };
    this.#assertOwned(names.key, secret, "push to");
    const latest = await this.#accessVersion(names.key, "latest");
    if (latest?.value === value) return { changed: false, versionId: toStored(secret, latest.version, value).versionId };
    return { changed: true, versionId: versionNumber(await this.#addVersion(names.key, value)) };
  }

  async exists(key: string): Promise<boolean> {
    return (await this.#get(this.#names(key).key)) !== undefined;
  }

  async delete(key: string): Promise<void> {
    const names = this.#names(key);
    const secret = await this.#get(names.key);
    if (!secret) return;
    this.#assertOwned(names.key, secret, "delete");
    const sibling = await this.#get(names.pending);
    if (sibling && isOwned(sibling)) await this.#deleteIfUnchanged(sibling);
    // Secret Manager deletes at once, versions and all; there is no recovery window.
    await this.#try("DeleteSecret", names.key, () => this.#client.deleteSecret({ name: this.#path(names.key) }), [
      NOT_FOUND,
    ]);
  }

  async close(): Promise<void> {
    await this.#client.close();
  }

  /** Validates a remote key: it and its sibling must be GCP secret ids, and it must not be someone's sibling. */
  #names(key: string): Names {
    if (!SECRET_ID.test(key) || key.length > MAX_KEY) {
      throw new InputError(
        `remote key "${key}" cannot be a Google Secret Manager secret id: expected 1 to ${MAX_KEY} letters, digits, "-" or "_" (${MAX_SECRET_ID} minus the "${PENDING_SUFFIX}" of the staging sibling), found ${key.length} characters${
          SECRET_ID.test(key) || key === "" ? "" : " with others"
        }`,
      );
    }
    if (key.endsWith(PENDING_SUFFIX)) {
      throw new InputError(
        `remote key "${key}" ends in "${PENDING_SUFFIX}", which names the staging sibling of "${key.slice(0, -PENDING_SUFFIX.length)}"; choose another remote key`,
      );
    }
    return { key, pending: key + PENDING_SUFFIX };
  }

  #path(id: string): string {
    return `${this.#parent}/secrets/${id}`;
  }

  #assertOwned(id: string, secret: Secret, action: string): void {
    if (isOwned(secret)) return;
    const found = secret.labels?.[MANAGED_BY_KEY];
    throw new OwnershipError(
      `refusing to ${action} "${id}" in ${this.description}: expected label ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}, found ${
        found === undefined ? "no such label" : `${MANAGED_BY_KEY}=${found}`
      }; it was not created by cnpg-rotator`,
    );
  }

  async #get(id: string): Promise<Secret | undefined> {
    const out = await this.#try("GetSecret", id, () => this.#client.getSecret({ name: this.#path(id) }), [NOT_FOUND]);
    return out?.[0];
  }

  /** Creates a secret without versions; undefined if it exists already. */
  async #create(id: string, fields: Pick<Secret, "labels" | "annotations">): Promise<Secret | undefined> {
    const secret: Secret = { ...fields, ...(this.#regional ? {} : { replication: { automatic: {} } }) };
    const out = await this.#try(
      "CreateSecret",
      id,
      () => this.#client.createSecret({ parent: this.#parent, secretId: id, secret }),
      [ALREADY_EXISTS],
    );
    return out?.[0];
  }

  async #getOrCreate(id: string): Promise<Secret> {
    const secret = (await this.#get(id)) ?? (await this.#create(id, { labels: OWNED })) ?? (await this.#get(id));
    if (!secret) throw new StoreError(`cannot create "${id}" in ${this.description}: it exists and is gone`);
    return secret;
  }

  /** Deletes the secret unless it changed since it was read; false if it had changed or was gone. */
  async #deleteIfUnchanged(secret: Secret): Promise<boolean> {
    const name = secret.name!;
    const out = await this.#try(
      "DeleteSecret",
      idOf(name),
      () => this.#client.deleteSecret({ name, etag: secret.etag ?? "" }),
      [NOT_FOUND, FAILED_PRECONDITION, ABORTED],
    );
    return out !== undefined;
  }

  async #addVersion(id: string, value: string): Promise<string> {
    const [version] = await this.#send("AddSecretVersion", id, () =>
      this.#client.addSecretVersion({ parent: this.#path(id), payload: { data: Buffer.from(value, "utf8") } }),
    );
    return version.name!;
  }

  /** The value of a version; undefined if it does not exist or cannot be read (disabled or destroyed). */
  async #access(id: string, version: string): Promise<string | undefined> {
    return (await this.#accessVersion(id, version))?.value;
  }

  async #accessVersion(id: string, version: string): Promise<{ version: string; value: string } | undefined> {
    const out = await this.#try(
      "AccessSecretVersion",
      id,
      () => this.#client.accessSecretVersion({ name: `${this.#path(id)}/versions/${version}` }),
      [NOT_FOUND, FAILED_PRECONDITION],
    );
    const response = out?.[0];
    if (!response) return undefined;
    const number = versionNumber(response.name!);
    const data = response.payload?.data;
    try {
      return { version: number, value: UTF8.decode(typeof data === "string" ? Buffer.from(data, "base64") : (data ?? new Uint8Array())) };
    } catch {
      throw new StoreStateError(`secret "${id}" version ${number} in ${this.description} holds binary data; expected UTF-8 text`);
    }
  }

  /** Numbers of the newest enabled versions, newest first. */
  async #latestEnabled(id: string, count: number): Promise<string[]> {
    const out = await this.#try(
      "ListSecretVersions",
      id,
      () =>
        this.#client.listSecretVersions(
          { parent: this.#path(id), pageSize: count, filter: "state:ENABLED" },
          { autoPaginate: false },
        ),
      [NOT_FOUND],
    );
    return (out?.[0] ?? []).slice(0, count).map((v) => versionNumber(v.name!));
  }

  async #hasVersions(id: string): Promise<boolean> {
    const out = await this.#try(
      "ListSecretVersions",
      id,
      () => this.#client.listSecretVersions({ parent: this.#path(id), pageSize: 1 }, { autoPaginate: false }),
      [NOT_FOUND],
    );
    return (out?.[0]?.length ?? 0) > 0;
  }

  /**
   * Records on `<key>` that `version` is the current value of `rotationId`, moving the
   * former record to previous. A compare-and-swap on the etag: on a conflict it re-reads
   * and tries again, and if a concurrent promote of the same rotation recorded its own
   * copy, keeps the newer copy as current and disables the older one, so that the version
   * before them stays the previous value. (Disabling never touches the newest version,
   * which is what `latest` resolves to.)
   */
  async #recordPromotion(id: string, read: Secret, rotationId: string, version: string): Promise<void> {
    let secret = read;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const annotations: Record<string, string> = { ...secret.annotations };
      const recorded = markOf(secret, CURRENT_ROTATION);
      if (recorded?.rotationId === rotationId) {
        if (recorded.version === version) return;
        const newer = Number(version) > Number(recorded.version);
        await this.#disable(id, newer ? recorded.version : version);
        if (!newer) return;
        annotations[CURRENT_ROTATION] = mark(rotationId, version); // Previous stays as the other promote set it.
      } else {
        if (annotations[CURRENT_ROTATION] !== undefined) annotations[PREVIOUS_ROTATION] = annotations[CURRENT_ROTATION];
        annotations[CURRENT_ROTATION] = mark(rotationId, version);
      }
      const out = await this.#try(
        "UpdateSecret",
        id,
        () =>
          this.#client.updateSecret({
            secret: { name: secret.name!, annotations, etag: secret.etag ?? "" },
            updateMask: { paths: ["annotations"] },
          }),
        [FAILED_PRECONDITION, ABORTED],
      );
      if (out) return;
      const fresh = await this.#get(id);
      if (!fresh) {
        throw new StoreStateError(
          `cannot record rotation ${rotationId} on "${id}" in ${this.description}: the secret was deleted during promote`,
        );
      }
      secret = fresh;
    }
    throw new StoreError(
      `cannot record rotation ${rotationId} on "${id}" in ${this.description}: its annotations kept changing (${ATTEMPTS} attempts); version ${version} holds the new value`,
    );
  }

  async #disable(id: string, version: string): Promise<void> {
    await this.#try(
      "DisableSecretVersion",
      id,
      () => this.#client.disableSecretVersion({ name: `${this.#path(id)}/versions/${version}` }),
      [NOT_FOUND, FAILED_PRECONDITION],
    );
  }

  /** Sends one call; any error becomes a StoreError naming the call and the secret. */
  async #send<T>(call: string, id: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      throw this.#failed(call, id, error);
    }
  }

  /** Like #send, but the gRPC status codes in `expected` give undefined. */
  async #try<T>(call: string, id: string, send: () => Promise<T>, expected: readonly number[]): Promise<T | undefined> {
    try {
      return await send();
    } catch (error) {
      const code = (error as { code?: unknown } | undefined)?.code;
      if (typeof code === "number" && expected.includes(code)) return undefined;
      throw this.#failed(call, id, error);
    }
  }

  /** Secret Manager's messages name resources and never echo payloads, so they are quoted as they are. */
  #failed(call: string, id: string, error: unknown): Error {
    if (error instanceof RotatorError) return error;
    const message = error instanceof Error ? error.message : String(error);
    return new StoreError(`${call} of "${id}" in ${this.description} failed: ${message}`, { cause: error });
  }
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function isOwned(secret: Secret): boolean {
  return secret.labels?.[MANAGED_BY_KEY] === MANAGED_BY_VALUE;
}

function mark(rotationId: string, version: string): string {
  return `${rotationId}@${version}`;
}

function markOf(secret: Secret, annotation: string): Mark | undefined {
  const text = secret.annotations?.[annotation];
  const at = text?.lastIndexOf("@") ?? -1;
  if (!text || at < 1 || !/^\d+$/.test(text.slice(at + 1))) return undefined;
  return { rotationId: text.slice(0, at), version: text.slice(at + 1) };
}

function rotationVersion(rotationId: string, value: string): StoredVersion {
  return { versionId: rotationId, value, rotationId };
}

/** A version of `<key>`: a rotation's if the annotations record one promoted as that version. */
function toStored(secret: Secret, version: string, value: string): StoredVersion {
  for (const annotation of [CURRENT_ROTATION, PREVIOUS_ROTATION]) {
    const recorded = markOf(secret, annotation);
    if (recorded?.version === version) return rotationVersion(recorded.rotationId, value);
  }
  return { versionId: version, value };
}

/** "projects/p/secrets/k/versions/3" → "3". */
function versionNumber(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}

/** "projects/p/secrets/k" → "k". */
function idOf(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}
