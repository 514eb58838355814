// In-memory models of a store and of a cluster (Secrets, Leases, a CNPG Cluster's status) that
// keep the contracts' fences exactly, for the protocol tests that explore thousands of
// interleavings without servers. The real servers are exercised by the integration suite.
import { SecretConflictError, StoreConflictError, StoreStateError } from "../../lib/errors.ts";
import type { CnpgCluster, LeaseHandle, SecretChange, SecretObject } from "../../lib/kubernetes/index.ts";
import { ANNOTATIONS } from "../../lib/rotation/names.ts";
import type { PushResult, RemoteState, SecretStoreClient, StoredVersion } from "../../lib/stores/types.ts";

/** A store with AWS's semantics (versions with labels), every write fenced on `seen`. */
export class MemoryStore implements SecretStoreClient {
  readonly provider = "memory";
  readonly description = "memory";
  versions = new Map<string, string>();
  current?: string;
  pending?: string;
  previous?: string;
  pushes = 0;
  /** Every value made current, in order: what a consumer of the store may have read. */
  readonly currentHistory: string[] = [];
  /** Called at the start of every write: a test may stall one there. */
  beforeWrite: () => Promise<void> = async () => {};

  async observe(): Promise<RemoteState> {
    if (this.versions.size === 0) return { exists: false, owned: false };
    return { exists: true, owned: true, ...(this.current ? { current: this.ref(this.current) } : {}), ...(this.pending ? { pending: this.ref(this.pending) } : {}) };
  }
  ref(id: string) {
    return id.startsWith("push-") ? { versionId: id } : { versionId: id, rotationId: id };
  }
  get(id: string | undefined): StoredVersion | undefined {
    return id ? { ...this.ref(id), value: this.versions.get(id)! } : undefined;
  }
  async getCurrent() {
    return this.get(this.current);
  }
  async getPending() {
    return this.get(this.pending);
  }
  async getPrevious() {
    return this.get(this.previous);
  }
  fence(seen: RemoteState, done: boolean): void {
    if (done) return;
    if (seen.current?.versionId !== this.current || seen.pending?.versionId !== this.pending) {
      throw new StoreConflictError("moved since observed");
    }
  }
  async stage(_key: string, value: string, rotationId: string, seen: RemoteState): Promise<StoredVersion> {
    await this.beforeWrite();
    const existing = this.versions.get(rotationId);
    if (existing !== undefined) return { versionId: rotationId, rotationId, value: existing }; // the first value staged
    this.fence(seen, false);
    this.versions.set(rotationId, value);
    this.pending = rotationId;
    return { versionId: rotationId, rotationId, value };
  }
  async promote(_key: string, rotationId: string, seen: RemoteState): Promise<StoredVersion> {
    await this.beforeWrite();
    if (this.current === rotationId) return this.get(rotationId)!;
    if (this.pending !== rotationId) throw new StoreStateError(`${rotationId} is not pending`);
    if (seen.current?.versionId !== this.current) throw new StoreConflictError("current moved");
    this.previous = this.current;
    this.current = rotationId;
    this.pending = undefined;
    this.currentHistory.push(this.versions.get(rotationId)!);
    return this.get(rotationId)!;
  }
  async discard(_key: string, rotationId: string): Promise<void> {
    await this.beforeWrite();
    if (this.pending === rotationId) this.pending = undefined;
  }
  async push(_key: string, value: string, options: { seen?: RemoteState } = {}): Promise<PushResult> {
    await this.beforeWrite();
    if (options.seen && options.seen.current?.versionId !== this.current) throw new StoreConflictError("current moved");
    if (this.current && this.versions.get(this.current) === value) return { changed: false, versionId: this.current };
    const id = `push-${++this.pushes}`;
    this.versions.set(id, value);
    this.previous = this.current;
    this.current = id;
    this.currentHistory.push(value);
    return { changed: true, versionId: id };
  }
  async exists() {
    return this.versions.size > 0;
  }
  async delete() {}
  async close() {}
}

/**
 * Secrets and Leases with the API server's resourceVersion and holder semantics, plus a CNPG
 * Cluster whose status reports a role's passwordSecret applied (`apply: "instant"`) or never.
 */
export class MemoryCluster {
  readonly secrets = new Map<string, SecretObject>();
  rv = 1;
  holder: string | undefined;
  expires = 0;
  /** Every (Secret, rotation id, password) a Secret ever held. */
  readonly writes: [string, string | undefined, string][] = [];
  apply: "instant" | "never" = "instant";
  readonly applied = new Map<string, string>();
  roles: { name: string; passwordSecret: string }[] = [];

  constructor(password: string, name = "app") {
    this.put(name, { password, uri: `postgresql://app:${encodeURIComponent(password)}@app-rw:5432/app`, username: "app" });
  }
  /** The target Secret (the consumer Secret, for the alternating strategy). */
  get secret(): SecretObject {
    return this.secrets.get("app")!;
  }
  get history(): [string | undefined, string][] {
    return this.writes.filter(([n]) => n === "app").map(([, id, p]) => [id, p]);
  }
  put(name: string, data: Record<string, string>, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): void {
    this.rv++;
    const s: SecretObject = { name, namespace: "default", uid: name, resourceVersion: String(this.rv), type: "Opaque", labels, annotations, data, binaryKeys: [] };
    this.secrets.set(name, s);
    this.writes.push([name, annotations[ANNOTATIONS.rotationId], data.password ?? ""]);
    const role = this.roles.find((r) => r.passwordSecret === name);
    if (role && this.apply === "instant") this.applied.set(role.name, s.resourceVersion);
  }
  async readSecret(_ns: string, name: string): Promise<SecretObject | undefined> {
    const s = this.secrets.get(name);
    return s && structuredClone(s);
  }
  async patchSecret(observed: SecretObject, change: SecretChange): Promise<SecretObject> {
    if (observed.resourceVersion !== this.secrets.get(observed.name)?.resourceVersion) throw new SecretConflictError("409");
    this.write(change, observed.name);
    return structuredClone(this.secrets.get(observed.name)!);
  }
  /** Someone else's write of `change` (no fence: it re-reads first, like kubectl apply). */
  write(change: SecretChange, name = "app") {
    const s = this.secrets.get(name)!;
    const annotations = { ...s.annotations };
    for (const [k, v] of Object.entries(change.annotations ?? {})) {
      if (v === null) delete annotations[k];
      else annotations[k] = v;
    }
    this.put(name, { ...s.data, ...change.data }, { ...s.labels, ...change.labels }, annotations);
  }
  async createSecretIfMissing(): Promise<SecretObject> {
    throw new SecretConflictError("exists");
  }
  async readCluster(namespace: string, name: string): Promise<CnpgCluster> {
    return {
      name,
      namespace,
      spec: { managed: { roles: this.roles.map((r) => ({ name: r.name, login: true, inherit: true, inRoles: ["app"], passwordSecret: { name: r.passwordSecret } })) } },
      status: { managedRolesStatus: { passwordStatus: Object.fromEntries([...this.applied].map(([role, rv]) => [role, { resourceVersion: rv }])) } },
    };
  }
  async acquireLease(_ns: string, _name: string, holder: string, ttl: number, beforeTake?: () => Promise<void>): Promise<LeaseHandle | undefined> {
    if (this.holder && this.holder !== holder && this.expires > Date.now()) return undefined;
    // As the real Lease: what runs between the look and the write, before anything is written.
    await beforeTake?.();
    if (this.holder && this.holder !== holder && this.expires > Date.now()) return undefined;
    this.holder = holder;
    this.expires = Date.now() + ttl * 1000;
    const cluster = this;
    const handle: LeaseHandle = {
      namespace: "default",
      name: "cnpg-rotator-app",
      holder,
      ttlSeconds: ttl,
      get expiresAt() {
        return new Date(cluster.holder === holder ? cluster.expires : 0);
      },
      async renew() {
        if (cluster.holder !== holder) return false;
        cluster.expires = Date.now() + ttl * 1000;
        return true;
      },
      async release() {
        if (cluster.holder === holder) cluster.holder = undefined;
      },
      async restore() {
        if (cluster.holder === holder) cluster.holder = undefined;
      },
    };
    return handle;
  }
}
