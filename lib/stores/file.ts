// The embedded default store, for local runs: one JSON file holding, per remote
// key, the current, pending and previous versions and our ownership marker.
// Every change is a locked read-modify-write ending in an atomic rename, so
// readers never see half a file and concurrent writers (in this process or in
// others) never lose each other's updates.
import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { OwnershipError, RotatorError, StoreError, StoreStateError } from "../errors.ts";
import type { FileProvider } from "../manifests/schema.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE, type StoreDeps } from "./types.ts";
import type { PushResult, SecretStoreClient, StoredVersion } from "./legacy.ts";

export interface FileStoreOptions {
  /** A lock file older than this is taken to be left by a crashed writer. Default 10 s. */
  readonly staleLockMs?: number;
  /** How long to wait for the lock before failing. Default 30 s. */
  readonly lockTimeoutMs?: number;
}

const FORMAT = 1;

const versionSchema = z.strictObject({
  versionId: z.string(),
  value: z.string(),
  rotationId: z.string().optional(),
  createdAt: z.string(),
});

const secretSchema = z.strictObject({
  tags: z.record(z.string(), z.string()),
  createdAt: z.string(),
  updatedAt: z.string(),
  current: versionSchema.optional(),
  pending: versionSchema.optional(),
  previous: versionSchema.optional(),
});

const fileSchema = z.strictObject({
  format: z.literal(FORMAT),
  /** Version ids are one counter per file, so an id is never reused, even after a delete. */
  lastVersionId: z.int().nonnegative(),
  // Entries are checked one by one from the raw JSON: copying them into a new object would mishandle a key like "__proto__".
  secrets: z.looseObject({}),
});

type FileVersion = z.infer<typeof versionSchema>;
type FileSecret = z.infer<typeof secretSchema>;

/** The file's content while a transaction holds it. */
interface State {
  lastVersionId: number;
  readonly secrets: Map<string, FileSecret>;
  /** Set by whatever changes the state; a transaction that changes nothing does not write. */
  dirty: boolean;
}

export function createFileStore(
  config: FileProvider,
  deps: StoreDeps = {},
  options: FileStoreOptions = {},
): SecretStoreClient {
  return new FileStore(resolve(deps.baseDir ?? process.cwd(), config.path), options);
}

class FileStore implements SecretStoreClient {
  readonly provider = "file";
  readonly description: string;
  readonly #path: string;
  readonly #lock: FileLock;

  constructor(path: string, options: FileStoreOptions) {
    this.#path = path;
    this.description = `file ${path}`;
    this.#lock = new FileLock(`${path}.lock`, options.staleLockMs ?? 10_000, options.lockTimeoutMs ?? 30_000);
  }

  stagePending(key: string, value: string, rotationId: string): Promise<StoredVersion> {
    return this.#transact("stage a pending version in", key, (state) => {
      let secret = state.secrets.get(key);
      if (secret) this.#assertOwned(key, secret, "stage a pending version in");
      // The first value staged for a rotation is the one kept: a retry must not change the password.
      if (secret?.pending?.rotationId === rotationId) return toStored(secret.pending);
      if (secret?.current?.rotationId === rotationId) return toStored(secret.current);
      const now = new Date().toISOString();
      if (!secret) {
        secret = { tags: { [MANAGED_BY_KEY]: MANAGED_BY_VALUE }, createdAt: now, updatedAt: now };
        state.secrets.set(key, secret);
      }
      secret.pending = newVersion(state, value, now, rotationId);
      secret.updatedAt = now;
      state.dirty = true;
      return toStored(secret.pending);
    });
  }

  async getPending(key: string): Promise<StoredVersion | undefined> {
    return toStoredOrUndefined((await this.#read()).secrets.get(key)?.pending);
  }

  promote(key: string, rotationId: string): Promise<StoredVersion> {
    return this.#transact("promote", key, (state) => {
      const secret = state.secrets.get(key);
      if (secret) this.#assertOwned(key, secret, "promote a version of");
      if (secret?.current?.rotationId === rotationId) return toStored(secret.current);
      const pending = secret?.pending;
      if (!secret || pending?.rotationId !== rotationId) {
        throw new StoreStateError(
          `cannot promote rotation ${rotationId} of "${key}" in ${this.description}: expected it pending, found ${
            !secret ? "no such secret" : pending ? `rotation ${pending.rotationId ?? "(none)"} pending` : "nothing pending"
          }`,
        );
      }
      secret.previous = secret.current;
      secret.current = pending;
      secret.pending = undefined;
      secret.updatedAt = new Date().toISOString();
      state.dirty = true;
      return toStored(pending);
    });
  }

  async discardPending(key: string, rotationId: string): Promise<void> {
    await this.#transact("discard the pending version of", key, (state) => {
      const secret = state.secrets.get(key);
      // Nothing of ours can be pending in a foreign secret, so there is nothing to drop.
      if (!secret || !isOwned(secret) || secret.pending?.rotationId !== rotationId) return;
      secret.pending = undefined;
      secret.updatedAt = new Date().toISOString();
      // Created for a rotation that never completed: back to no secret, as the aws store does.
      if (!secret.current) state.secrets.delete(key);
      state.dirty = true;
    });
  }

  async getCurrent(key: string): Promise<StoredVersion | undefined> {
    return toStoredOrUndefined((await this.#read()).secrets.get(key)?.current);
  }

  async getPrevious(key: string): Promise<StoredVersion | undefined> {
    return toStoredOrUndefined((await this.#read()).secrets.get(key)?.previous);
  }

  push(key: string, value: string, options: { ifNotExists?: boolean } = {}): Promise<PushResult> {
    return this.#transact("push to", key, (state): PushResult => {
      let secret = state.secrets.get(key);
      // Like ESO's updatePolicy IfNotExists: an existing secret, ours or not, is left alone.
      if (secret && options.ifNotExists) return { changed: false, versionId: secret.current?.versionId };
      if (secret) this.#assertOwned(key, secret, "push to");
      if (secret?.current?.value === value) return { changed: false, versionId: secret.current.versionId };
      const now = new Date().toISOString();
      if (!secret) {
        secret = { tags: { [MANAGED_BY_KEY]: MANAGED_BY_VALUE }, createdAt: now, updatedAt: now };
        state.secrets.set(key, secret);
      }
      secret.previous = secret.current;
      secret.current = newVersion(state, value, now);
      secret.updatedAt = now;
      state.dirty = true;
      return { changed: true, versionId: secret.current.versionId };
    });
  }

  async exists(key: string): Promise<boolean> {
    return (await this.#read()).secrets.has(key);
  }

  async delete(key: string): Promise<void> {
    await this.#transact("delete", key, (state) => {
      const secret = state.secrets.get(key);
      if (!secret) return;
      this.#assertOwned(key, secret, "delete");
      state.secrets.delete(key);
      state.dirty = true;
    });
  }

  #assertOwned(key: string, secret: FileSecret, action: string): void {
    if (!isOwned(secret)) {
      throw new OwnershipError(
        `refusing to ${action} "${key}" in ${this.description}: expected tag ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}, found ${
          secret.tags[MANAGED_BY_KEY] === undefined ? "no such tag" : `${MANAGED_BY_KEY}=${secret.tags[MANAGED_BY_KEY]}`
        }; it was not created by cnpg-rotator`,
      );
    }
  }

  /** Runs `change` on the file's content under the lock and writes the result if it changed anything. */
  async #transact<T>(action: string, key: string, change: (state: State) => T): Promise<T> {
    try {
      await fs.mkdir(dirname(this.#path), { recursive: true, mode: 0o700 });
      return await this.#lock.hold(async () => {
        const state = await this.#read();
        const result = change(state);
        if (state.dirty) await this.#write(state);
        return result;
      });
    } catch (error) {
      if (error instanceof RotatorError) throw error;
      throw new StoreError(`cannot ${action} "${key}" in ${this.description}: ${describeIoError(error)}`, {
        cause: error,
      });
    }
  }

  async #read(): Promise<State> {
    let text: string;
    try {
      text = await fs.readFile(this.#path, "utf8");
    } catch (error) {
      if (isErrno(error, "ENOENT")) return { lastVersionId: 0, secrets: new Map(), dirty: false };
      throw new StoreError(`cannot read ${this.description}: ${describeIoError(error)}`, { cause: error });
    }
    // Errors below name the file and the field, never the content: it holds secret values.
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new StoreError(`${this.description} is not valid JSON; expected a cnpg-rotator store file`);
    }
    const file = fileSchema.safeParse(json);
    if (!file.success) throw this.#malformed(file.error);
    const secrets = new Map<string, FileSecret>();
    for (const [key, raw] of Object.entries((json as { secrets: object }).secrets)) {
      const secret = secretSchema.safeParse(raw);
      if (!secret.success) throw this.#malformed(secret.error, key);
      secrets.set(key, secret.data);
    }
    return { lastVersionId: file.data.lastVersionId, secrets, dirty: false };
  }

  #malformed(error: z.ZodError, key?: string): StoreError {
    const issue = error.issues[0];
    const where = [...(key === undefined ? [] : ["secrets", key]), ...(issue?.path ?? []).map(String)].join(".");
    return new StoreError(
      `${this.description} is not a cnpg-rotator store file (format ${FORMAT}): ${where || "(top level)"}: ${
        issue?.code === "invalid_type" ? `expected ${issue.expected}` : (issue?.code ?? "invalid")
      }`,
    );
  }

  async #write(state: State): Promise<void> {
    const file = {
      format: FORMAT,
      lastVersionId: state.lastVersionId,
      secrets: Object.fromEntries(state.secrets),
    };
    await writeAtomically(this.#path, `${JSON.stringify(file, null, 2)}\n`);
  }
}

function newVersion(state: State, value: string, createdAt: string, rotationId?: string): FileVersion {
  state.lastVersionId += 1;
  return { versionId: String(state.lastVersionId), value, ...(rotationId === undefined ? {} : { rotationId }), createdAt };
}

function isOwned(secret: FileSecret): boolean {
  return secret.tags[MANAGED_BY_KEY] === MANAGED_BY_VALUE;
}

function toStored(version: FileVersion): StoredVersion {
  return {
    versionId: version.versionId,
    value: version.value,
    ...(version.rotationId === undefined ? {} : { rotationId: version.rotationId }),
  };
}

function toStoredOrUndefined(version: FileVersion | undefined): StoredVersion | undefined {
  return version && toStored(version);
}

/** Temp file in the same directory, fsync, rename over the target, fsync the directory. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomUUID()}.tmp`);
  try {
    const handle = await fs.open(temp, "wx", 0o600);
    try {
      await handle.writeFile(text, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, path);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  // Without this the rename itself may not survive a power loss; the write is done either way.
  const dirHandle = await fs.open(dir, "r").catch(() => undefined);
  await dirHandle
    ?.sync()
    .catch(() => {})
    .finally(() => dirHandle.close());
}

/**
 * Mutual exclusion between writers: in this process a queue (so concurrent
 * calls do not spin on the file system), across processes a lock file created
 * with O_EXCL. A lock whose owner died on this host, or older than `staleMs`,
 * is removed; the removal re-reads the owner first, so a fresh lock is only
 * taken over in the rare race where two waiters judge the same stale lock.
 */
class FileLock {
  static readonly #queues = new Map<string, Promise<void>>();
  readonly #path: string;
  readonly #staleMs: number;
  readonly #timeoutMs: number;

  constructor(path: string, staleMs: number, timeoutMs: number) {
    this.#path = path;
    this.#staleMs = staleMs;
    this.#timeoutMs = timeoutMs;
  }

  async hold<T>(body: () => Promise<T>): Promise<T> {
    const queues = FileLock.#queues;
    const before = queues.get(this.#path) ?? Promise.resolve();
    let done!: () => void;
    const tail = before.then(() => new Promise<void>((resolve) => (done = resolve)));
    queues.set(this.#path, tail);
    await before;
    try {
      const owner = await this.#acquire();
      try {
        return await body();
      } finally {
        await this.#release(owner);
      }
    } finally {
      done();
      if (queues.get(this.#path) === tail) queues.delete(this.#path);
    }
  }

  async #acquire(): Promise<string> {
    const owner = JSON.stringify({ pid: process.pid, host: hostname(), id: randomUUID() });
    const deadline = Date.now() + this.#timeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.writeFile(this.#path, owner, { flag: "wx", mode: 0o600 });
        return owner;
      } catch (error) {
        if (!isErrno(error, "EEXIST")) throw error;
      }
      if (await this.#removeIfStale()) continue;
      if (Date.now() > deadline) {
        throw new StoreError(
          `timed out after ${this.#timeoutMs} ms waiting for lock ${this.#path}; another writer holds it (remove the file if no writer is running)`,
        );
      }
      await sleep(Math.random() * Math.min(200, 5 * 2 ** attempt));
    }
  }

  async #release(owner: string): Promise<void> {
    // Only remove our own lock: if it was judged stale and taken over, it is someone else's now.
    if ((await readIfExists(this.#path)) === owner) await fs.rm(this.#path, { force: true });
  }

  async #removeIfStale(): Promise<boolean> {
    let stat: Awaited<ReturnType<typeof fs.stat>>;
    try {
      stat = await fs.stat(this.#path);
    } catch (error) {
      if (isErrno(error, "ENOENT")) return true;
      throw error;
    }
    const content = await readIfExists(this.#path);
    if (content === undefined) return true;
    const old = Date.now() - stat.mtimeMs > this.#staleMs;
    if (!old && !ownerIsDead(content)) return false;
    if ((await readIfExists(this.#path)) === content) await fs.rm(this.#path, { force: true });
    return true;
  }
}

function ownerIsDead(content: string): boolean {
  let owner: { pid?: unknown; host?: unknown };
  try {
    owner = JSON.parse(content);
  } catch {
    return false; // Being written right now, or not ours: leave it to the age check.
  }
  if (owner.host !== hostname() || typeof owner.pid !== "number") return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (error) {
    return isErrno(error, "ESRCH");
  }
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, "utf8");
  } catch (error) {
    if (isErrno(error, "ENOENT")) return undefined;
    throw error;
  }
}

function isErrno(error: unknown, code: string): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === code;
}

function describeIoError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
