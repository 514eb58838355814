// HashiCorp Vault / OpenBao KV v2, over its HTTP API with plain fetch (node:https
// when a caBundle must be trusted). Consumers read the latest version of
// `<mount>/<key>`, so a rotation stages its value in a sibling secret
// `<key>-pending` and promote writes it as a new version of `<key>`
// (docs/STORE-DESIGN.md). A consumer reading the latest version sees the old
// value until promote's write, the new one from then on; `-version=N-1` is the
// old one. Every data write carries `options.cas`, so a concurrent write is
// detected and the decision re-made, never overwritten. custom_metadata has no
// compare-and-swap: two rotations of one key must not stage at once (the
// engine's lease sees to that). Before its first write the store checks that
// the mount is KV v2, as `vault kv` does.
//
// Tool state lives in each secret's custom_metadata (never in the data that
// consumers read):
//   <key>          managed-by=cnpg-rotator, and which versions rotations made:
//                  cnpg-rotator-current-rotation/-current-version (the last
//                  promoted rotation; "current" while that version is the latest)
//                  and cnpg-rotator-previous-rotation/-previous-version.
//   <key>-pending  managed-by=cnpg-rotator, cnpg-rotator-rotation-id and
//                  cnpg-rotator-rotation-version: the version holding that
//                  rotation's value. It is claimed before the data is written
//                  (cas = version - 1), so concurrent stagers of one rotation
//                  agree on one value and a half-done stage is recognisable.
//
// Version ids: versions made by a rotation are identified by the rotation id
// (as on AWS), so a staged version keeps its id when promote copies it into
// `<key>`; other versions by their KV version number.
//
// Values: KV v2 keeps a JSON object of fields. See toFields / fromFields.
import { Agent, request as httpsRequest } from "node:https";
import * as z from "zod";
import { InputError, OwnershipError, StoreError, StoreStateError } from "../errors.ts";
import type { VaultProvider } from "../manifests/schema.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE, type StoreDeps } from "./types.ts";
import type { PushResult, SecretStoreClient, StoredVersion } from "./legacy.ts";

export const PENDING_SUFFIX = "-pending";
export const CURRENT_ROTATION = "cnpg-rotator-current-rotation";
export const CURRENT_VERSION = "cnpg-rotator-current-version";
export const PREVIOUS_ROTATION = "cnpg-rotator-previous-rotation";
export const PREVIOUS_VERSION = "cnpg-rotator-previous-version";
export const ROTATION_ID = "cnpg-rotator-rotation-id";
export const ROTATION_VERSION = "cnpg-rotator-rotation-version";
/** The one field a value that is not a canonical JSON object of strings is stored under. */
export const VALUE_FIELD = "value";
/** ESO's default mount when `path` is absent. */
export const DEFAULT_MOUNT = "secret";

const TIMEOUT_MS = 30_000;
/** Vault asks for "create" on a path with no secret yet and "update" on an existing one. */
const CREATE_UPDATE = '"create" and "update"';
/** Rounds of read-decide-write when compare-and-swap keeps losing to concurrent writers. */
const MAX_ATTEMPTS = 5;
/** Vault refuses custom_metadata values longer than this. */
const MAX_METADATA_VALUE = 512;

type Custom = Record<string, string>;

/** One version as a data read returns it; `data` is null when that version is deleted or destroyed. */
interface DataRead {
  readonly version: number;
  readonly data: Record<string, unknown> | null;
  readonly createdMs: number;
  readonly custom: Custom;
}

/** A secret's metadata: its latest version number (0: none yet), which versions are readable, custom_metadata. */
interface MetaRead {
  readonly currentVersion: number;
  readonly alive: ReadonlySet<number>;
  readonly custom: Custom;
}

const customSchema = z
  .record(z.string(), z.string())
  .nullish()
  .transform((c) => c ?? {});

const versionInfoSchema = z.looseObject({
  created_time: z.string(),
  deletion_time: z.string(),
  destroyed: z.boolean(),
});

// `data.data` stays z.unknown: zod would copy it key by key, mishandling a field named "__proto__".
const dataReplySchema = z.looseObject({
  data: z.looseObject({
    data: z.unknown(),
    metadata: versionInfoSchema.extend({ version: z.int().positive(), custom_metadata: customSchema }),
  }),
});

const metaReplySchema = z.looseObject({
  data: z.looseObject({
    current_version: z.int().nonnegative(),
    versions: z.record(z.string(), versionInfoSchema),
    custom_metadata: customSchema,
  }),
});

const writeReplySchema = z.looseObject({ data: z.looseObject({ version: z.int().positive() }) });

/** One HTTP exchange; the transport never sees anything but what this store sends. */
type Send = (
  method: string,
  url: string,
  headers: Record<string, string>,
  body: string | undefined,
) => Promise<{ status: number; text: string }>;

interface Transport {
  readonly send: Send;
  close(): void;
}

/** A request: which API path, what for (error messages) and which capability a policy must grant for it. */
interface Call {
  readonly method: "GET" | "POST" | "DELETE";
  /** Path under /v1, unencoded, as a policy names it: `secrets/data/app`. */
  readonly path: string;
  readonly query?: string;
  readonly body?: unknown;
  /** The policy capabilities the call needs, quoted for the message: `"read"`. */
  readonly capability: string;
  /** Statuses besides 2xx handed back to the caller instead of raised. */
  readonly expected?: readonly number[];
}

export async function createVaultStore(config: VaultProvider, deps: StoreDeps = {}): Promise<SecretStoreClient> {
  if ((config.version ?? "v2") !== "v2") {
    throw new InputError(
      `spec.provider.vault.version: expected "v2" (the rotation needs KV v2's versions, check-and-set and custom_metadata), found "${config.version}"`,
    );
  }
  if (!deps.token) throw new InputError("vault store needs auth.tokenSecretRef's token");
  const server = new URL(config.server);
  if (server.protocol !== "http:" && server.protocol !== "https:") {
    throw new InputError(`spec.provider.vault.server: expected an http(s) URL, found ${server.protocol}`);
  }
  if (server.username || server.password || server.search || server.hash) {
    throw new InputError("spec.provider.vault.server: expected a plain address, found credentials, a query or a fragment");
  }
  const mount = (config.path ?? DEFAULT_MOUNT).replace(/^\/+|\/+$/g, "");
  if (!isVaultPath(mount)) {
    throw new InputError(`spec.provider.vault.path: expected a KV v2 mount path, found "${config.path}"`);
  }
  let transport: Transport = fetchTransport();
  if (config.caBundle !== undefined && server.protocol === "https:") transport = httpsTransport(decodeCaBundle(config.caBundle));
  return new VaultStore({
    base: `${server.origin}${server.pathname.replace(/\/+$/, "")}/v1/`,
    mount,
    token: deps.token,
    namespace: config.namespace,
    transport,
    description: `vault ${server.origin}${server.pathname.replace(/\/+$/, "")} kv-v2 mount ${mount}${
      config.namespace ? ` namespace ${config.namespace}` : ""
    }`,
  });
}

class VaultStore implements SecretStoreClient {
  readonly provider = "vault";
  readonly description: string;
  readonly #base: string;
  readonly #mount: string;
  readonly #headers: Record<string, string>;
  readonly #transport: Transport;
  /** The mount check, made once before the first write. */
  #mountChecked: Promise<void> | undefined;

  constructor(o: {
    base: string;
    mount: string;
    token: string;
    namespace: string | undefined;
    transport: Transport;
    description: string;
  }) {
    this.#base = o.base;
    this.#mount = o.mount;
    this.#transport = o.transport;
    this.description = o.description;
    this.#headers = { "X-Vault-Token": o.token, ...(o.namespace ? { "X-Vault-Namespace": o.namespace } : {}) };
  }

  async stagePending(key: string, value: string, rotationId: string): Promise<StoredVersion> {
    assertVaultKey(key);
    const sibling = this.#siblingOf(key);
    if (rotationId.length === 0 || rotationId.length > MAX_METADATA_VALUE) {
      throw new StoreError(
        `cannot stage into "${this.#show(key)}" in ${this.description}: expected a rotation id of 1 to ${MAX_METADATA_VALUE} characters, found ${rotationId.length}`,
      );
    }
    return this.#retry("stage a pending version in", key, async () => {
      const [meta, pending] = await Promise.all([this.#readMeta(key), this.#readMeta(sibling)]);
      if (meta) this.#assertOwnSecret(key, meta.custom, "stage a pending version in");
      if (meta && currentRotation(meta) === rotationId) {
        // Already promoted: hand back the current version, stage nothing.
        const current = await this.#readData(key, meta.currentVersion);
        return current?.data ? toStored(rotationId, current.data) : RETRY;
      }
      if (pending) this.#assertOwnSibling(sibling, key, pending.custom);
      if (pending && pendingRotation(pending.custom, pending.currentVersion, pending.alive) === rotationId) {
        // The first value staged for a rotation is the one kept: a retry must not change the password.
        const staged = await this.#readData(sibling, pending.currentVersion);
        return staged?.data ? toStored(rotationId, staged.data) : RETRY;
      }
      if (!meta) await this.#writeMeta(key, { [MANAGED_BY_KEY]: MANAGED_BY_VALUE });
      const latest = pending?.currentVersion ?? 0;
      const claim = String(latest + 1);
      if (pending?.custom[ROTATION_ID] !== rotationId || pending.custom[ROTATION_VERSION] !== claim) {
        await this.#writeMeta(sibling, {
          ...pending?.custom,
          [MANAGED_BY_KEY]: MANAGED_BY_VALUE,
          [ROTATION_ID]: rotationId,
          [ROTATION_VERSION]: claim,
        });
      }
      const fields = toFields(value);
      // Losing the cas means another stager wrote the sibling first: read again and take what it holds.
      return (await this.#writeData(sibling, fields, latest)) === undefined ? RETRY : toStored(rotationId, fields);
    });
  }

  async getPending(key: string): Promise<StoredVersion | undefined> {
    assertVaultKey(key);
    const pending = await this.#readData(this.#siblingOf(key));
    if (!pending?.data || pending.custom[MANAGED_BY_KEY] !== MANAGED_BY_VALUE) return undefined;
    const rotationId = pendingRotation(pending.custom, pending.version, new Set([pending.version]));
    return rotationId === undefined ? undefined : toStored(rotationId, pending.data);
  }

  async promote(key: string, rotationId: string): Promise<StoredVersion> {
    assertVaultKey(key);
    const sibling = this.#siblingOf(key);
    return this.#retry("promote", key, async () => {
      const [latest, staged] = await Promise.all([this.#readData(key), this.#readData(sibling)]);
      // No readable version: either a secret of metadata only (the first rotation) or none at all.
      const meta = latest ? undefined : await this.#readMeta(key);
      const custom = latest?.custom ?? meta?.custom;
      if (!custom) {
        throw new StoreStateError(
          `cannot promote rotation ${rotationId} of "${this.#show(key)}" in ${this.description}: expected it pending, found no such secret`,
        );
      }
      this.#assertOwnSecret(key, custom, "promote a version of");
      const version = latest?.version ?? meta?.currentVersion ?? 0;
      if (latest?.data && custom[CURRENT_VERSION] === String(version) && custom[CURRENT_ROTATION] === rotationId) {
        // Promoted before (perhaps by a call that stopped before dropping the sibling).
        if (staged?.custom[ROTATION_ID] === rotationId && staged.custom[MANAGED_BY_KEY] === MANAGED_BY_VALUE) {
          await this.#deleteMeta(sibling);
        }
        return toStored(rotationId, latest.data);
      }
      const ours = staged?.custom[MANAGED_BY_KEY] === MANAGED_BY_VALUE;
      const pendingId =
        staged?.data && ours ? pendingRotation(staged.custom, staged.version, new Set([staged.version])) : undefined;
      if (!staged?.data || pendingId !== rotationId) {
        throw new StoreStateError(
          `cannot promote rotation ${rotationId} of "${this.#show(key)}" in ${this.description}: expected it pending, found ${
            pendingId === undefined ? "nothing pending" : `rotation ${pendingId} pending`
          }`,
        );
      }
      let promoted: number | undefined;
      // A promote that stopped after writing the value left it as the latest version, written after staging: adopt it.
      if (latest?.data && latest.createdMs >= staged.createdMs && fromFields(latest.data) === fromFields(staged.data)) {
        promoted = version;
      } else {
        promoted = await this.#writeData(key, staged.data, version);
        if (promoted === undefined) return RETRY; // Someone wrote meanwhile: read again and decide again.
      }
      const before = rotationOf(custom, promoted - 1);
      const next: Custom = { ...custom, [CURRENT_ROTATION]: rotationId, [CURRENT_VERSION]: String(promoted) };
      delete next[PREVIOUS_ROTATION];
      delete next[PREVIOUS_VERSION];
      if (before !== undefined) Object.assign(next, { [PREVIOUS_ROTATION]: before, [PREVIOUS_VERSION]: String(promoted - 1) });
      await this.#writeMeta(key, next);
      await this.#deleteMeta(sibling);
      return toStored(rotationId, staged.data);
    });
  }

  async discardPending(key: string, rotationId: string): Promise<void> {
    assertVaultKey(key);
    const sibling = this.#siblingOf(key);
    const [meta, pending] = await Promise.all([this.#readMeta(key), this.#readMeta(sibling)]);
    // Nothing of ours can be pending in a foreign sibling: nothing to drop.
    if (pending?.custom[MANAGED_BY_KEY] !== MANAGED_BY_VALUE || pending.custom[ROTATION_ID] !== rotationId) return;
    await this.#deleteMeta(sibling);
    // Created for a rotation that never completed: back to no secret, so no consumer finds an empty one.
    if (meta && meta.currentVersion === 0 && meta.custom[MANAGED_BY_KEY] === MANAGED_BY_VALUE) await this.#deleteMeta(key);
  }

  async getCurrent(key: string): Promise<StoredVersion | undefined> {
    assertVaultKey(key);
    const latest = await this.#readData(key);
    return latest?.data ? this.#stored(latest.custom, latest.version, latest.data) : undefined;
  }

  async getPrevious(key: string): Promise<StoredVersion | undefined> {
    assertVaultKey(key);
    const latest = await this.#readData(key);
    if (!latest?.data || latest.version <= 1) return undefined;
    // Gone when max_versions trimmed it or someone deleted it.
    const previous = await this.#readData(key, latest.version - 1);
    return previous?.data ? this.#stored(previous.custom, previous.version, previous.data) : undefined;
  }

  async push(key: string, value: string, options: { ifNotExists?: boolean } = {}): Promise<PushResult> {
    assertVaultKey(key);
    return this.#retry("push to", key, async () => {
      const latest = await this.#readData(key);
      const meta = latest ? undefined : await this.#readMeta(key);
      const custom = latest?.custom ?? meta?.custom;
      const version = latest?.version ?? meta?.currentVersion ?? 0;
      const current = latest?.data ? this.#stored(latest.custom, latest.version, latest.data) : undefined;
      // Like ESO's updatePolicy IfNotExists: an existing secret, ours or not, is left alone.
      if (custom && options.ifNotExists) return { changed: false, versionId: current?.versionId };
      if (custom) this.#assertOwnSecret(key, custom, "push to");
      if (current?.value === value) return { changed: false, versionId: current.versionId };
      if (!custom) await this.#writeMeta(key, { [MANAGED_BY_KEY]: MANAGED_BY_VALUE });
      const written = await this.#writeData(key, toFields(value), version);
      return written === undefined ? RETRY : { changed: true, versionId: String(written) };
    });
  }

  async exists(key: string): Promise<boolean> {
    assertVaultKey(key);
    return (await this.#readMeta(key)) !== undefined;
  }

  async delete(key: string): Promise<void> {
    assertVaultKey(key);
    const sibling = this.#siblingOf(key);
    const [meta, pending] = await Promise.all([this.#readMeta(key), this.#readMeta(sibling)]);
    if (meta) {
      this.#assertOwned(key, meta.custom, "delete");
      await this.#deleteMeta(key);
    }
    // A rotation in flight goes with it; a foreign secret of that name stays.
    if (pending?.custom[MANAGED_BY_KEY] === MANAGED_BY_VALUE && pending.custom[ROTATION_ID] !== undefined) {
      await this.#deleteMeta(sibling);
    }
  }

  async close(): Promise<void> {
    this.#transport.close();
  }

  // ---- state ------------------------------------------------------------------------------

  #stored(custom: Custom, version: number, data: Record<string, unknown>): StoredVersion {
    const rotationId = rotationOf(custom, version);
    return rotationId === undefined
      ? { versionId: String(version), value: fromFields(data) }
      : toStored(rotationId, data);
  }

  #siblingOf(key: string): string {
    return `${key}${PENDING_SUFFIX}`;
  }

  /** The key as `vault kv get` names it: `secrets/cluster-example-app`. */
  #show(key: string): string {
    return `${this.#mount}/${key}`;
  }

  #assertOwned(key: string, custom: Custom, action: string): void {
    if (custom[MANAGED_BY_KEY] === MANAGED_BY_VALUE) return;
    const found = custom[MANAGED_BY_KEY];
    throw new OwnershipError(
      `refusing to ${action} "${this.#show(key)}" in ${this.description}: expected custom_metadata ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}, found ${
        found === undefined ? "no such entry" : `${MANAGED_BY_KEY}=${found}`
      }; it was not created by cnpg-rotator`,
    );
  }

  /** Ours, and a secret in its own right rather than some key's staging sibling. */
  #assertOwnSecret(key: string, custom: Custom, action: string): void {
    this.#assertOwned(key, custom, action);
    if (custom[ROTATION_ID] !== undefined) {
      throw new StoreStateError(
        `refusing to ${action} "${this.#show(key)}" in ${this.description}: it is the staging sibling of another key (custom_metadata ${ROTATION_ID}), not a secret of its own`,
      );
    }
  }

  #assertOwnSibling(sibling: string, key: string, custom: Custom): void {
    this.#assertOwned(sibling, custom, `stage the pending value of "${this.#show(key)}" in`);
    if (custom[ROTATION_ID] === undefined) {
      throw new StoreStateError(
        `refusing to stage the pending value of "${this.#show(key)}" in "${this.#show(sibling)}" (${this.description}): that secret is managed in its own right, not a staging sibling (no custom_metadata ${ROTATION_ID})`,
      );
    }
  }

  /** Runs `attempt` until it returns something other than RETRY (a lost compare-and-swap), a few times at most. */
  async #retry<T>(action: string, key: string, attempt: () => Promise<T | typeof RETRY>): Promise<T> {
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const out = await attempt();
      if (out !== RETRY) return out;
    }
    throw new StoreError(
      `cannot ${action} "${this.#show(key)}" in ${this.description}: concurrent writers changed it on each of ${MAX_ATTEMPTS} attempts`,
    );
  }

  // ---- KV v2 API --------------------------------------------------------------------------

  /** GET <mount>/data/<key>[?version=N]; undefined when there is no such secret or version. */
  async #readData(key: string, version?: number): Promise<DataRead | undefined> {
    const path = `${this.#mount}/data/${key}`;
    const reply = await this.#call({
      method: "GET",
      path,
      query: version === undefined ? undefined : `version=${version}`,
      capability: '"read"',
      expected: [404],
    });
    // A 404 with metadata: that version is deleted or destroyed, the secret is there.
    if (reply.status === 404 && !(reply.json as { data?: unknown } | undefined)?.data) return undefined;
    const parsed = this.#parse(dataReplySchema, reply.json, "GET", path);
    const m = parsed.data.metadata;
    const data = parsed.data.data;
    if (reply.status === 200 && (typeof data !== "object" || data === null || Array.isArray(data))) {
      throw new StoreError(`GET ${path} in ${this.description}: expected the version's data to be a JSON object`);
    }
    return {
      version: m.version,
      data: reply.status === 200 ? (data as Record<string, unknown>) : null,
      createdMs: Date.parse(m.created_time),
      custom: m.custom_metadata,
    };
  }

  /** GET <mount>/metadata/<key>; undefined when there is no such secret. */
  async #readMeta(key: string): Promise<MetaRead | undefined> {
    const path = `${this.#mount}/metadata/${key}`;
    const reply = await this.#call({ method: "GET", path, capability: '"read"', expected: [404] });
    if (reply.status === 404) return undefined;
    const m = this.#parse(metaReplySchema, reply.json, "GET", path).data;
    const now = Date.now();
    const alive = new Set<number>();
    for (const [n, v] of Object.entries(m.versions)) {
      if (!v.destroyed && (v.deletion_time === "" || Date.parse(v.deletion_time) > now)) alive.add(Number(n));
    }
    return { currentVersion: m.current_version, alive, custom: m.custom_metadata };
  }

  /** POST <mount>/data/<key> with cas; the new version number, or undefined when `cas` no longer matched. */
  async #writeData(key: string, data: Record<string, unknown>, cas: number): Promise<number | undefined> {
    const path = `${this.#mount}/data/${key}`;
    const reply = await this.#call({
      method: "POST",
      path,
      body: { data, options: { cas } },
      capability: CREATE_UPDATE,
      expected: [400],
    });
    if (reply.status === 400) {
      const errors = vaultErrors(reply.json);
      if (errors.includes("check-and-set")) return undefined;
      throw new StoreError(`POST ${path} in ${this.description} was refused (HTTP 400): ${errors}`);
    }
    return this.#parse(writeReplySchema, reply.json, "POST", path).data.version;
  }

  /** POST <mount>/metadata/<key>: replaces custom_metadata (callers pass what they read, changed). */
  async #writeMeta(key: string, custom: Custom): Promise<void> {
    await this.#call({
      method: "POST",
      path: `${this.#mount}/metadata/${key}`,
      body: { custom_metadata: custom },
      capability: CREATE_UPDATE,
    });
  }

  /** DELETE <mount>/metadata/<key>: the secret with all its versions. */
  async #deleteMeta(key: string): Promise<void> {
    await this.#call({ method: "DELETE", path: `${this.#mount}/metadata/${key}`, capability: '"delete"', expected: [404] });
  }

  /**
   * Before the first write: is `mount` a KV v2 engine? Writing KV v2 requests to a KV v1 mount
   * would create secrets named `metadata/<key>` and `data/<key>` there. The same preflight
   * `vault kv` makes; any token with access to the mount may call it.
   */
  #checkMount(): Promise<void> {
    this.#mountChecked ??= this.#preflight().catch((error: unknown) => {
      this.#mountChecked = undefined;
      throw error;
    });
    return this.#mountChecked;
  }

  async #preflight(): Promise<void> {
    const path = `sys/internal/ui/mounts/${this.#mount}`;
    const reply = await this.#send({ method: "GET", path, capability: '"read"', expected: [403, 404] });
    if (reply.status === 404) return; // A server without the endpoint: nothing to check against.
    if (reply.status === 403) {
      throw new StoreError(
        `permission denied: ${this.description} shows the token no mount "${this.#mount}" (Vault: ${vaultErrors(reply.json) || "no detail"}); ` +
          `either no KV v2 engine is mounted there (spec.provider.vault.path) or the token's policy grants nothing under "${this.#mount}/", or the token is invalid or expired; nothing was written`,
      );
    }
    const mount = (reply.json as { data?: { type?: unknown; path?: unknown; options?: { version?: unknown } | null } })?.data;
    const found = `a "${String(mount?.type)}" engine${mount?.type === "kv" ? ` version ${String(mount.options?.version ?? "1")}` : ""}`;
    if (mount?.type !== "kv" || mount.options?.version !== "2") {
      throw new StoreError(
        `${this.description}: expected a KV v2 engine mounted at "${this.#mount}" (spec.provider.vault.path), found ${found}; nothing was written`,
      );
    }
    if (mount.path !== `${this.#mount}/`) {
      throw new StoreError(
        `${this.description}: spec.provider.vault.path must name the KV v2 mount itself, found "${this.#mount}" inside the mount "${String(mount.path)}"; nothing was written`,
      );
    }
  }

  async #call(call: Call): Promise<{ status: number; json: unknown }> {
    if (call.method !== "GET") await this.#checkMount();
    const reply = await this.#send(call);
    if (reply.status === 404 && vaultErrors(reply.json).includes("no handler for route")) {
      throw new StoreError(
        `${call.method} ${call.path} in ${this.description}: expected a KV v2 engine mounted at "${this.#mount}" (spec.provider.vault.path), found no engine there`,
      );
    }
    return reply;
  }

  async #send(call: Call): Promise<{ status: number; json: unknown }> {
    const url = `${this.#base}${call.path.split("/").map(encodeURIComponent).join("/")}${call.query ? `?${call.query}` : ""}`;
    const body = call.body === undefined ? undefined : JSON.stringify(call.body);
    const headers = body === undefined ? this.#headers : { ...this.#headers, "Content-Type": "application/json" };
    let reply: { status: number; text: string };
    try {
      reply = await this.#transport.send(call.method, url, headers, body);
    } catch (error) {
      throw new StoreError(`${call.method} ${call.path} in ${this.description} failed: ${describeNetworkError(error)}`, {
        cause: error,
      });
    }
    let json: unknown;
    try {
      json = reply.text === "" ? undefined : JSON.parse(reply.text);
    } catch {
      json = undefined;
    }
    if (reply.status === 403 && !call.expected?.includes(403)) {
      throw new StoreError(
        `permission denied: ${call.method} ${call.path} in ${this.description} (Vault: ${vaultErrors(json) || "no detail"}); ` +
          `the token's policy must grant ${call.capability} on path "${call.path}", or the token is invalid or expired`,
      );
    }
    if ((reply.status >= 200 && reply.status < 300) || call.expected?.includes(reply.status)) {
      return { status: reply.status, json };
    }
    throw new StoreError(
      `${call.method} ${call.path} in ${this.description}: expected success, found HTTP ${reply.status}${
        reply.status >= 300 && reply.status < 400 ? " (a redirect: point spec.provider.vault.server at the active node)" : ""
      }: ${vaultErrors(json) || "no detail"}`,
    );
  }

  #parse<S extends z.ZodType>(schema: S, json: unknown, method: string, path: string): z.infer<S> {
    const parsed = schema.safeParse(json);
    if (parsed.success) return parsed.data;
    // Names the field, never its content: replies hold secret values.
    const issue = parsed.error.issues[0];
    throw new StoreError(
      `${method} ${path} in ${this.description}: the reply is not a KV v2 reply (at ${(issue?.path ?? []).join(".") || "top level"}: ${
        issue?.code ?? "invalid"
      }); is the mount a KV v2 engine?`,
    );
  }
}

/** Returned by an attempt that lost a compare-and-swap and must read again. */
const RETRY: unique symbol = Symbol("retry");

function toStored(rotationId: string, data: Record<string, unknown>): StoredVersion {
  return { versionId: rotationId, value: fromFields(data), rotationId };
}

/** The rotation that made version `version` of a secret, as its custom_metadata records it. */
function rotationOf(custom: Custom, version: number): string | undefined {
  if (custom[CURRENT_VERSION] === String(version)) return custom[CURRENT_ROTATION];
  if (custom[PREVIOUS_VERSION] === String(version)) return custom[PREVIOUS_ROTATION];
  return undefined;
}

/** The rotation whose value is the secret's readable latest version, if one is. */
function currentRotation(meta: MetaRead): string | undefined {
  const n = meta.currentVersion;
  return meta.alive.has(n) && meta.custom[CURRENT_VERSION] === String(n) ? meta.custom[CURRENT_ROTATION] : undefined;
}

/** The rotation a sibling holds: the one whose claimed version is its readable latest. */
function pendingRotation(custom: Custom, latest: number, alive: ReadonlySet<number>): string | undefined {
  return latest > 0 && alive.has(latest) && custom[ROTATION_VERSION] === String(latest) ? custom[ROTATION_ID] : undefined;
}

/**
 * The KV v2 fields a value is stored as. A JSON object of string fields in
 * canonical form (compact, keys sorted as the engine writes a whole Secret) is
 * stored as those fields, so `vault kv get` shows username, password, uri…;
 * anything else is stored as one field `value`. Vault returns fields in its own
 * order, so only the canonical text can be rebuilt from them byte for byte;
 * any other text (pretty-printed, nested, unsorted) goes under `value` as is.
 * A one-field object `{"value": "…"}` also goes under `value`, whole, since
 * reading its field back would be taken for a plain text.
 */
export function toFields(value: string): Record<string, string> {
  if (value.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      parsed = undefined;
    }
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
      const fields = parsed as Record<string, unknown>;
      const keys = Object.keys(fields);
      if (
        keys.every((k) => typeof fields[k] === "string") &&
        !(keys.length === 1 && keys[0] === VALUE_FIELD) &&
        canonicalJson(fields) === value
      ) {
        return fields as Record<string, string>;
      }
    }
  }
  return { [VALUE_FIELD]: value };
}

/** The value a version's fields hold: the inverse of toFields (any other object reads as its canonical JSON). */
export function fromFields(data: Record<string, unknown>): string {
  const keys = Object.keys(data);
  const only = data[VALUE_FIELD];
  if (keys.length === 1 && keys[0] === VALUE_FIELD && typeof only === "string") return only;
  return canonicalJson(data);
}

/** Compact JSON with keys in sort order (a prototype-less object, so a key "__proto__" is kept like any other). */
function canonicalJson(fields: Record<string, unknown>): string {
  const sorted: Record<string, unknown> = Object.create(null);
  for (const key of Object.keys(fields).sort()) sorted[key] = fields[key];
  return JSON.stringify(sorted);
}

/** Segments that are neither empty nor `.`/`..`, so a key never escapes its mount into another API path. */
function isVaultPath(path: string): boolean {
  return path !== "" && path.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

function vaultErrors(json: unknown): string {
  const errors = (json as { errors?: unknown } | undefined)?.errors;
  if (!Array.isArray(errors)) return "";
  return errors
    .map((e) => String(e).replace(/\s+/g, " ").trim())
    .join("; ")
    .slice(0, 500);
}

function describeNetworkError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause as { code?: string; message?: string } | undefined;
  return cause?.message ? `${error.message} (${cause.code ?? cause.message})` : error.message;
}

function decodeCaBundle(caBundle: string): string {
  const pem = caBundle.includes("-----BEGIN") ? caBundle : Buffer.from(caBundle, "base64").toString("utf8");
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new InputError("spec.provider.vault.caBundle: expected base64 of PEM certificates, found no certificate in it");
  }
  return pem;
}

function fetchTransport(): Transport {
  return {
    async send(method, url, headers, body) {
      // No redirects: the token header would follow them to wherever they point.
      const res = await fetch(url, { method, headers, body, redirect: "manual", signal: AbortSignal.timeout(TIMEOUT_MS) });
      return { status: res.status, text: await res.text() };
    },
    close() {},
  };
}

/** node:https trusting only the SecretStore's caBundle (as ESO does); verification stays on. */
function httpsTransport(ca: string): Transport {
  const agent = new Agent({ ca, keepAlive: true });
  return {
    send(method, url, headers, body) {
      return new Promise((resolve, reject) => {
        const req = httpsRequest(
          url,
          {
            method,
            agent,
            timeout: TIMEOUT_MS,
            headers: body === undefined ? headers : { ...headers, "Content-Length": String(Buffer.byteLength(body)) },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("error", reject);
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          },
        );
        req.on("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
        req.on("error", reject);
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

/** Refuses a key that is not a plain Vault path, before any request. */
function assertVaultKey(key: string): void {
  if (!isVaultPath(key)) {
    throw new InputError(`remote key "${key}": expected a Vault path of non-empty segments, without "." or ".."`);
  }
}
