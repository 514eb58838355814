// The cluster client the engine uses: read and merge-write one Secret with optimistic
// concurrency, hold a Lease per target, check RBAC up front. Create one per run.
import type { KubeConfig } from "@kubernetes/client-node/dist/config.js";
import type { V1Secret } from "@kubernetes/client-node/dist/gen/models/V1Secret.js";
import { KubernetesError, SecretConflictError, SecretMissingError } from "../errors.ts";
import { isNetworkError, isTransientStatus, withRetry } from "../retry.ts";
import { describeAccess } from "./access.ts";
import { type ApiOperation, apiConfiguration, apiError, httpStatus, RequestLog, unless } from "./api.ts";
import { ApiCalls } from "./calls.ts";
import { type AcquireLeaseArgs, acquireLease, type LeaseCall } from "./leases.ts";
import type { HttpsTransport } from "./transport.ts";
import { emptySecret, encodeData, mergePatchFor, presentAnnotations, toSecretObject } from "./secrets.ts";
import type {
  AccessCheck,
  CnpgCluster,
  LeaseHandle,
  NewSecret,
  RequestRecord,
  SecretChange,
  SecretMetadata,
  SecretObject,
  UpdateSecretOptions,
  UpdateSecretResult,
} from "./types.ts";

const FIELD_MANAGER = "cnpg-rotator";
/** Conflicting writes tolerated per updateSecret before giving up. */
const MAX_CONFLICTS = 5;
const DEFAULT_TIMEOUT_MS = 30_000;

export interface KubernetesClientOptions {
  /** Per HTTP request. Default 30 s. */
  readonly requestTimeoutMs?: number;
}

export class KubernetesClient {
  /** The API server URL (for messages; never carries a credential). */
  readonly server: string;
  readonly #api: ApiCalls;
  readonly #log = new RequestLog();
  readonly #transport: HttpsTransport;

  constructor(kubeConfig: KubeConfig, options: KubernetesClientOptions = {}) {
    const { configuration: config, transport } = apiConfiguration(
      kubeConfig,
      this.#log,
      options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    );
    this.#transport = transport;
    this.server = kubeConfig.getCurrentCluster()?.server ?? "";
    this.#api = new ApiCalls(config, FIELD_MANAGER);
  }

  /** HTTP requests sent so far. */
  get requestCount(): number {
    return this.#log.count;
  }

  /** The last requests sent (method, path, status), oldest first. */
  get requests(): readonly RequestRecord[] {
    return [...this.#log.records];
  }

  /** Closes the pooled connections; later calls open new ones. */
  async close(): Promise<void> {
    this.#transport.close();
  }

  /** One GET; undefined when the Secret does not exist. */
  async readSecret(namespace: string, name: string): Promise<SecretObject | undefined> {
    const raw = await this.#readRawSecret(namespace, name);
    return raw && this.#remember(raw, namespace, name);
  }

  /** What readSecret read, so updateSecret can start from it without another GET. */
  #read = new WeakMap<SecretObject, V1Secret>();

  /**
   * Reads the Secret, asks `change` what to write and merge-patches only that, carrying
   * the resourceVersion read. A 409 means someone wrote in between: read again, call
   * `change` again on the fresh Secret, retry. Nothing differs → nothing is written.
   * Missing Secret: created when `options.create` says so, else SecretMissingError.
   */
  async updateSecret(
    namespace: string,
    name: string,
    change: (current: SecretObject) => SecretChange | undefined,
    options: UpdateSecretOptions = {},
  ): Promise<UpdateSecretResult> {
    let conflicts = 0;
    let known = options.initial && this.#read.get(options.initial);
    for (;;) {
      // The first attempt may start from a Secret read earlier: its resourceVersion still guards the write.
      const raw = known ?? (await this.#readRawSecret(namespace, name));
      known = undefined;
      if (!raw) {
        const { create } = options;
        if (!create) {
          throw new SecretMissingError(
            `Secret ${namespace}/${name} does not exist; nothing was written (it is created only when asked to, ` +
              `as with creationPolicy CreateOrMerge)`,
          );
        }
        const empty = emptySecret(namespace, name, create.type, create.labels);
        const wanted = change(empty);
        if (!wanted) return { secret: empty, conflicts, written: false, created: false };
        const created = await this.#createRawSecret(namespace, name, {
          type: create.type,
          data: wanted.data ?? {},
          labels: { ...create.labels, ...wanted.labels },
          annotations: presentAnnotations(wanted.annotations),
        });
        if (created) return { secret: toSecretObject(created, namespace, name), conflicts, written: true, created: true };
      } else {
        const current = toSecretObject(raw, namespace, name);
        const wanted = change(current);
        const patch = wanted && mergePatchFor(raw, wanted);
        if (!patch) return { secret: current, conflicts, written: false, created: false };
        if (raw.immutable) {
          throw new KubernetesError(
            `cannot patch secrets "${name}" in namespace "${namespace}": the Secret is immutable; nothing was written`,
          );
        }
        const patched = await this.#call({ verb: "patch", ...SECRET, namespace, name }, () =>
          unless([404, 409], this.#api.patchSecret(namespace, name, patch, "merge")),
        );
        if (patched) return { secret: toSecretObject(patched, namespace, name), conflicts, written: true, created: false };
      }
      // 409 (changed, or created meanwhile) or 404 (deleted meanwhile): start over from a fresh read.
      conflicts++;
      if (conflicts > MAX_CONFLICTS) {
        throw new KubernetesError(
          `gave up writing Secret "${name}" in namespace "${namespace}": ${conflicts} attempts in a row were refused ` +
            `with 409 Conflict because another writer changed it in between; nothing was written`,
        );
      }
      await sleep(backoffMs(conflicts));
    }
  }

  /**
   * One PATCH of `change` onto the Secret exactly as `observed` saw it: the patch carries its
   * resourceVersion, so a write by anyone since is refused (SecretConflictError, nothing
   * written) instead of being merged over. `observed` must come from this client (readSecret or
   * an earlier write). Nothing differs → no request, `observed` is returned.
   */
  async patchSecret(observed: SecretObject, change: SecretChange): Promise<SecretObject> {
    const { namespace, name } = observed;
    const raw = this.#read.get(observed);
    if (!raw) throw new KubernetesError(`Secret ${namespace}/${name}: patchSecret needs a Secret this client read`);
    const patch = mergePatchFor(raw, change);
    if (!patch) return observed;
    if (raw.immutable) {
      throw new KubernetesError(`cannot patch secrets "${name}" in namespace "${namespace}": the Secret is immutable; nothing was written`);
    }
    const patched = await this.#call({ verb: "patch", ...SECRET, namespace, name }, () =>
      unless([404, 409], this.#api.patchSecret(namespace, name, patch, "merge")),
    );
    if (!patched) {
      throw new SecretConflictError(
        `Secret ${namespace}/${name} changed since resourceVersion ${observed.resourceVersion} was read (or was deleted); nothing was written`,
      );
    }
    return this.#remember(patched, namespace, name);
  }

  /** One POST of a new Secret; SecretConflictError (nothing written) when it exists already. */
  async createSecretIfMissing(namespace: string, name: string, init: NewSecret): Promise<SecretObject> {
    const created = await this.#createRawSecret(namespace, name, init);
    if (!created) throw new SecretConflictError(`Secret ${namespace}/${name} was created by someone else meanwhile; nothing was written`);
    return this.#remember(created, namespace, name);
  }

  #remember(raw: V1Secret, namespace: string, name: string): SecretObject {
    const secret = toSecretObject(raw, namespace, name);
    this.#read.set(secret, raw);
    return secret;
  }

  /** One GET of a CNPG Cluster (`postgresql.cnpg.io/v1`); undefined when it does not exist. */
  async readCluster(namespace: string, name: string): Promise<CnpgCluster | undefined> {
    const raw = (await this.#call({ verb: "get", group: "postgresql.cnpg.io", resource: "clusters", namespace, name }, () =>
      unless([404], this.#api.readNamespacedCustomObject("postgresql.cnpg.io", "v1", namespace, "clusters", name)),
    )) as { spec?: CnpgCluster["spec"]; status?: CnpgCluster["status"] } | undefined;
    return raw && { name, namespace, spec: raw.spec ?? {}, status: raw.status ?? {} };
  }

  /**
   * The metadata of the Secrets in `namespace` matching `labelSelector`, as the API's
   * PartialObjectMetadataList (no Secret's data is sent), `pageSize` per request
   * (limit/continue). For a planner that must see many Secrets' annotations cheaply.
   */
  async listSecretMetadata(namespace: string, labelSelector: string, pageSize = 500): Promise<SecretMetadata[]> {
    const out: SecretMetadata[] = [];
    let cont: string | undefined;
    do {
      const page = await this.#call({ verb: "list", ...SECRET, namespace }, () =>
        this.#api.listSecretMetadata(namespace, { labelSelector, limit: pageSize, continue: cont }),
      );
      for (const item of page.items ?? []) { // an empty PartialObjectMetadataList may carry no items
        const m = item.metadata ?? {};
        if (item.data !== undefined) throw new KubernetesError(`list secrets in namespace "${namespace}": the API server sent Secret data for a metadata-only list`);
        out.push({ name: m.name ?? "", uid: m.uid ?? "", labels: { ...m.labels }, annotations: { ...m.annotations } });
      }
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return out;
  }

  /** One POST. */
  async createSecret(namespace: string, name: string, init: NewSecret): Promise<SecretObject> {
    const created = await this.#createRawSecret(namespace, name, init, false);
    return toSecretObject(created!, namespace, name);
  }

  /** One DELETE; a missing Secret is fine. */
  async deleteSecret(namespace: string, name: string): Promise<void> {
    await this.#call({ verb: "delete", ...SECRET, namespace, name }, () =>
      unless([404], this.#api.deleteSecret(namespace, name)),
    );
  }

  /** GET, then POST if missing. */
  async ensureNamespace(name: string): Promise<void> {
    const op = { verb: "get", group: "", resource: "namespaces", name };
    const found = await this.#call(op, () => unless([404], this.#api.readNamespace(name)));
    if (found) return;
    await this.#call({ ...op, verb: "create" }, () =>
      unless([409], this.#api.createNamespace(name)),
    );
  }

  /**
   * Takes the Lease `cnpg-rotator-<secretName>` for `ttlSeconds` (1 GET + 1 POST or PUT).
   * Undefined when another run holds it; `holder` must be unique per run. `beforeTake` runs
   * between the GET and the write when the Lease is free: what it reads no other holder can
   * have changed before the Lease is taken (leases.ts); if it throws, nothing is written.
   */
  async acquireLease(...args: AcquireLeaseArgs): Promise<LeaseHandle | undefined> {
    const [namespace, , holder, ttlSeconds] = args;
    if (!holder) throw new KubernetesError("a Lease needs a non-empty holder identity");
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
      throw new KubernetesError(`a Lease TTL must be a whole number of seconds >= 1, got ${ttlSeconds}`);
    }
    const call: LeaseCall = (verb, name, fn) =>
      this.#call({ verb, group: "coordination.k8s.io", resource: "leases", namespace, name }, fn);
    return acquireLease({ api: this.#api, call }, ...args);
  }

  /**
   * Asks the API server (one SelfSubjectAccessReview each, in parallel) whether the
   * kubeconfig's identity may do each check in `namespace`. Returns the missing ones,
   * described as `kubectl auth can-i` takes them (`patch secrets/cluster-example-app`).
   */
  async checkAccess(namespace: string, checks: readonly AccessCheck[]): Promise<string[]> {
    const allowed = await Promise.all(
      checks.map(async (c) => {
        const review = await this.#call(
          { verb: "create", group: "authorization.k8s.io", resource: "selfsubjectaccessreviews" },
          () =>
            this.#api.createSelfSubjectAccessReview({
              spec: {
                resourceAttributes: {
                  namespace,
                  verb: c.verb,
                  group: c.group,
                  resource: c.resource,
                  ...(c.name ? { name: c.name } : {}),
                },
              },
            }),
        );
        return review.status?.allowed === true;
      }),
    );
    return checks.filter((_, i) => !allowed[i]).map(describeAccess);
  }

  async #readRawSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    return this.#call({ verb: "get", ...SECRET, namespace, name }, () =>
      unless([404], this.#api.readSecret(namespace, name)),
    );
  }

  /** POST; undefined on 409 AlreadyExists when `tolerateExisting`. */
  async #createRawSecret(
    namespace: string,
    name: string,
    init: NewSecret,
    tolerateExisting = true,
  ): Promise<V1Secret | undefined> {
    const body: V1Secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name, namespace, labels: { ...init.labels }, annotations: { ...init.annotations } },
      type: init.type,
      data: encodeData(init.data),
    };
    return this.#call({ verb: "create", ...SECRET, namespace, name }, () =>
      unless(tolerateExisting ? [409] : [], this.#api.createSecret(namespace, body)),
    );
  }

  /**
   * One API call, sent again after a transient failure (reset, timeout, 429, 5xx). Safe for
   * writes too: each carries a resourceVersion or creates by name, so a repeat of a write that
   * did apply is refused with 409, which the caller reads as "observe again".
   */
  async #call<T>(op: ApiOperation, fn: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(fn, {
        what: `${op.verb} ${op.resource}${op.name ? `/${op.name}` : ""}`,
        isTransient: (e) => isNetworkError(e) || isTransientStatus(httpStatus(e)),
      });
    } catch (e) {
      throw apiError(e, op, this.server);
    }
  }
}

const SECRET = { group: "", resource: "secrets" } as const;

/** 25, 50, 100, 200, 400 ms (capped at 1 s), each ±50 % so racing writers spread out. */
function backoffMs(attempt: number): number {
  return Math.min(1000, 25 * 2 ** (attempt - 1)) * (0.5 + Math.random());
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
