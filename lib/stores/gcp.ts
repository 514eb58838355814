// Google Secret Manager primitives (docs/STORE-DESIGN.md): consumers read `versions/latest`, so the
// protocol stages in a sibling `<key>-pending`. AddSecretVersion has no compare-and-swap, patch and
// delete do (etag): a rotation's write first claims `<key>` with an etag-conditional patch, adds the
// version, then records it in the annotations (`<rotation id>@<version>`). A plain push is fenced by
// the protocol's re-read only. Ownership is a label; the sibling's rotation id an annotation.
// `location` makes the secrets regional (`projects/<p>/locations/<l>/…` through
// `secretmanager.<l>.rep.googleapis.com`), as ESO reads them. ESO's `auth` is ESO's own: the
// function uses its runtime's identity (Application Default Credentials).
import { type protos, SecretManagerServiceClient } from "@google-cloud/secret-manager";
import { grpc } from "google-gax";
import { InputError, StoreConflictError, StoreStateError } from "../errors.ts";
import type { GcpProvider } from "../manifests/schema.ts";
import { isNetworkError } from "../retry.ts";
import { CURRENT_ROTATION, errorIs, PENDING_SUFFIX, parseRecord, ROTATION_ID, recordedRef, recordRotation, requestTimeoutMs, siblingNames, storeCalls } from "./primitives.ts";
import { MANAGED_BY_KEY, type Marks, type SecretHead, type SiblingPrimitives, type StoreDeps } from "./types.ts";

/**
 * `host:port` of a Secret Manager emulator: plaintext gRPC and no credentials. For tests and
 * local runs only; unset, the SDK's own endpoint (or the regional one) and ADC are used.
 */
export const ENDPOINT_ENV = "GOOGLE_SECRET_MANAGER_ENDPOINT";
/** Label on the sibling, so `gcloud secrets list --filter=labels.cnpg-rotator-role=pending` shows rotations in flight. */
export const ROLE_LABEL = "cnpg-rotator-role";
/** Annotation: a rotation is adding a version to this secret (the etag-conditional claim before AddSecretVersion). */
export const WRITING = "cnpg-rotator-writing";

const SECRET_ID = /^[A-Za-z0-9_-]+$/;
const MAX_SECRET_ID = 255;
const MAX_KEY = MAX_SECRET_ID - PENDING_SUFFIX.length;

const { NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED } = grpc.status;
const TRANSIENT = [grpc.status.DEADLINE_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED, grpc.status.INTERNAL, grpc.status.UNAVAILABLE];

type Secret = protos.google.cloud.secretmanager.v1.ISecret;
/** The head the protocol hands back to write / adopt / remove: with the secret as read. */
interface GcpHead extends SecretHead {
  readonly secret: Secret;
}

const is = errorIs((e) => (e as { code?: number } | undefined)?.code);

export function gcpPrimitives(config: GcpProvider, _deps: StoreDeps = {}): SiblingPrimitives {
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
  return primitivesOf(client, parent, location !== undefined, `gcp secretmanager ${parent}${via}`);
}

function parseHostPort(endpoint: string): { host: string; port: number } {
  const match = /^\[?([^\]/]+?)\]?:(\d{1,5})$/.exec(endpoint);
  const port = Number(match?.[2]);
  if (!match || port < 1 || port > 65535) {
    throw new InputError(`${ENDPOINT_ENV}: expected host:port of a Secret Manager emulator, found "${endpoint}"`);
  }
  return { host: match[1]!, port };
}

function primitivesOf(client: SecretManagerServiceClient, parent: string, regional: boolean, description: string): SiblingPrimitives {
  // One attempt per call with a deadline: storeCalls retries, so retries never multiply.
  const options = { timeout: requestTimeoutMs(), retry: { retryCodes: [] } };
  const send = storeCalls(description, { transient: (e) => isNetworkError(e) || is(...TRANSIENT)(e) });
  const path = (id: string) => `${parent}/secrets/${id}`;
  /** Every request: `absent` codes answer undefined; with `etag`, a stale etag (FAILED_PRECONDITION; the emulator: ABORTED) is a StoreConflictError. */
  const rpc = <T>(call: string, id: string, fn: (o: typeof options) => Promise<[T, ...unknown[]]>, absent: number[], etag?: string) => {
    const conflict = (e: unknown): never => {
      if (etag === undefined || !is(FAILED_PRECONDITION, ABORTED)(e)) throw e;
      throw new StoreConflictError(`${etag} "${id}" in ${description}: it changed since observed (etag); ${etag === "record" ? "the version added stays" : "nothing was written"}`, { cause: e });
    };
    return send(call, id, () => fn(options).then(([reply]) => reply, conflict), is(...absent));
  };
  const getSecret = (id: string) => rpc("GetSecret", id, (o) => client.getSecret({ name: path(id) }, o), [NOT_FOUND]);
  const updateAnnotations = async (id: string, secret: Secret, annotations: Record<string, string>, what: string) => {
    const request = { secret: { name: secret.name!, annotations, etag: secret.etag ?? "" }, updateMask: { paths: ["annotations"] } };
    return (await rpc("UpdateSecret", id, (o) => client.updateSecret(request, o), [], what))!;
  };
  /** Numbers of the newest enabled versions, newest first. */
  const enabled = async (id: string, count: number) => {
    const request = { parent: path(id), pageSize: count, filter: "state:ENABLED" };
    const list = await rpc("ListSecretVersions", id, (o) => client.listSecretVersions(request, { ...o, autoPaginate: false }), [NOT_FOUND]);
    return (list ?? []).slice(0, count).map((v) => versionNumber(v.name!));
  };
  const access = async (id: string, version: string) => {
    const name = `${path(id)}/versions/${version}`;
    const out = await rpc("AccessSecretVersion", id, (o) => client.accessSecretVersion({ name }, o), [NOT_FOUND, FAILED_PRECONDITION]);
    if (!out) return undefined;
    const number = versionNumber(out.name!);
    const data = out.payload?.data;
    try {
      return { versionId: number, value: UTF8.decode(typeof data === "string" ? Buffer.from(data, "base64") : (data ?? new Uint8Array())) };
    } catch {
      throw new StoreStateError(`secret "${id}" version ${number} in ${description} holds binary data; expected UTF-8 text`);
    }
  };
  const create = (id: string, marks: Marks) => {
    const { [MANAGED_BY_KEY]: owner, ...annotations } = marks;
    const labels = { ...(owner ? { [MANAGED_BY_KEY]: owner } : {}), ...(marks[ROTATION_ID] ? { [ROLE_LABEL]: "pending" } : {}) };
    const secret: Secret = { labels, ...(Object.keys(annotations).length ? { annotations } : {}), ...(regional ? {} : { replication: { automatic: {} } }) };
    return rpc("CreateSecret", id, (o) => client.createSecret({ parent, secretId: id, secret }, o), [ALREADY_EXISTS]);
  };
  /**
   * Records `version` as `rotationId`'s, etag-conditional. Lost to a concurrent promote of the same
   * rotation (it recorded its own copy): the newer copy stays current and the older is disabled,
   * so the version before them stays the previous value (never the newest, which `latest` reads).
   */
  const record = async (id: string, secret: Secret, version: string, rotationId: string): Promise<void> => {
    const { [WRITING]: _claim, ...annotations } = secret.annotations ?? {};
    try {
      await updateAnnotations(id, secret, recordRotation(annotations, version, rotationId), "record");
    } catch (error) {
      const fresh = error instanceof StoreConflictError ? await getSecret(id) : undefined;
      const current = parseRecord(fresh?.annotations?.[CURRENT_ROTATION]);
      if (current?.rotationId !== rotationId) throw error;
      const other = current.versionId;
      // This very record, applied with its answer lost (the retry's etag was stale): nothing to undo.
      if (other === version) return;
      const newer = Number(version) > Number(other);
      const name = `${path(id)}/versions/${newer ? other : version}`;
      await rpc("DisableSecretVersion", id, (o) => client.disableSecretVersion({ name }, o), [NOT_FOUND, FAILED_PRECONDITION]);
      if (newer) await record(id, fresh!, version, rotationId);
    }
  };

  return {
    staging: "sibling",
    provider: "gcpsm",
    description,
    markKind: "label",
    compareAndSwap: true,

    names(key) {
      if (!SECRET_ID.test(key) || key.length > MAX_KEY) {
        throw new InputError(
          `remote key "${key}" cannot be a Google Secret Manager secret id: expected 1 to ${MAX_KEY} letters, digits, "-" or "_" (${MAX_SECRET_ID} minus the "${PENDING_SUFFIX}" of the staging sibling), found ${key.length} characters${
            SECRET_ID.test(key) || key === "" ? "" : " with others"
          }`,
        );
      }
      return siblingNames(key);
    },

    async head(id): Promise<GcpHead | undefined> {
      const secret = await getSecret(id);
      if (!secret) return undefined;
      const [latest] = await enabled(id, 1);
      const marks = { ...secret.labels, ...secret.annotations };
      return { deleted: false, marks, ...(latest ? { latest: recordedRef(marks, latest) } : {}), revision: secret.etag ?? "", secret };
    },

    async read(id, which) {
      const [secret, version] = await Promise.all([
        getSecret(id),
        which !== "previous"
          ? access(id, which === "latest" ? "latest" : which.versionId)
          : enabled(id, 2).then((v) => (v[1] === undefined ? undefined : access(id, v[1]))),
      ]);
      return secret && version && { ...version, ...recordedRef(secret.annotations ?? {}, version.versionId) };
    },

    createEmpty: async (id, marks) => (await create(id, marks)) !== undefined,

    async write(id, value, { head, marks, rotationId }) {
      let secret = (head as GcpHead | undefined)?.secret;
      if (!secret) {
        secret = await create(id, marks);
        if (!secret) throw new StoreConflictError(`cannot create "${id}" in ${description}: it exists; nothing was written`);
      } else if (rotationId !== undefined) {
        // The claim: conditional on the etag observed, so a write decided on a stale head writes nothing.
        secret = await updateAnnotations(id, secret, { ...secret.annotations, [WRITING]: rotationId }, "claim");
      }
      const payload = { data: Buffer.from(value, "utf8") };
      const added = await rpc("AddSecretVersion", id, (o) => client.addSecretVersion({ parent: path(id), payload }, o), []);
      const version = versionNumber(added!.name!);
      if (rotationId !== undefined) await record(id, secret, version, rotationId);
      return version;
    },

    async adopt(id, head, rotationId) {
      await record(id, (head as GcpHead).secret, head.latest!.versionId, rotationId);
    },

    async remove(id, { head }) {
      // Secret Manager deletes at once, versions and all; there is no recovery window.
      const etag = (head as GcpHead | undefined)?.secret.etag ?? "";
      await rpc("DeleteSecret", id, (o) => client.deleteSecret({ name: path(id), etag }, o), [NOT_FOUND], "delete");
    },

    async close() {
      await client.close();
    },
  };
}

const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** "projects/p/secrets/k/versions/3" → "3". */
function versionNumber(name: string): string {
  return name.slice(name.lastIndexOf("/") + 1);
}
