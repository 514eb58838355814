// The embedded default store, for local runs: one JSON file holding, per remote key, our marker and
// the current, pending and previous versions, which are its native staging labels (moved by the
// protocol as AWS's are). Every change is a locked read-modify-write ending in an atomic rename, so
// readers never see half a file and concurrent writers never lose each other's updates; a label
// move is checked inside that transaction, which makes it a compare-and-swap.
import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { StoreConflictError, StoreError, StoreStateError } from "../errors.ts";
import type { FileProvider } from "../manifests/schema.ts";
import { CURRENT, noop, OURS, PENDING, PREVIOUS, parseJson, serialize, storeCalls, unless } from "./primitives.ts";
import type { LabelledVersion, NativePrimitives, StoreDeps } from "./types.ts";

/** staleLockMs: a lock file older than this was left by a crashed writer (default 10 s); lockTimeoutMs: how long to wait for it (30 s). */
export interface FileStoreOptions {
  readonly staleLockMs?: number;
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
}
const fileText = (state: State) =>
  `${JSON.stringify({ format: FORMAT, lastVersionId: state.lastVersionId, secrets: Object.fromEntries(state.secrets) }, null, 2)}\n`;

/** Each label is a slot of the secret. */
const SLOTS = { [CURRENT]: "current", [PENDING]: "pending", [PREVIOUS]: "previous" } as const;
type Slot = (typeof SLOTS)[keyof typeof SLOTS];
const slotOf = (label: string): Slot | undefined => SLOTS[label as keyof typeof SLOTS];

export function filePrimitives(config: FileProvider, deps: StoreDeps = {}, options: FileStoreOptions = {}): NativePrimitives {
  const path = resolve(deps.baseDir ?? process.cwd(), config.path);
  const description = `file ${path}`;
  const locked = lockFile(`${path}.lock`, options.staleLockMs ?? 10_000, options.lockTimeoutMs ?? 30_000);
  // A local file: nothing is transient, a failed read or write fails the call.
  const send = storeCalls(description, { transient: () => false });

  /** Runs `change` on the file's content under the lock, and writes the result if it changed anything. */
  const transact = <T>(call: string, key: string, change: (state: State) => T): Promise<T> =>
    send(call, key, async () => {
      await fs.mkdir(dirname(path), { recursive: true, mode: 0o700 });
      return locked(async () => {
        const state = await read();
        const before = fileText(state);
        const result = change(state);
        const after = fileText(state);
        if (after !== before) await writeAtomically(path, after);
        return result;
      });
    });
  const look = <T>(call: string, key: string, view: (secret: FileSecret | undefined) => T): Promise<T> =>
    send(call, key, async () => view((await read()).secrets.get(key)));

  const read = async (): Promise<State> => {
    const text = await readIfExists(path);
    if (text === undefined) return { lastVersionId: 0, secrets: new Map() };
    // Errors below name the file and the field, never the content: it holds secret values.
    const json = parseJson(text);
    if (json === undefined) throw new StoreError(`${description} is not valid JSON; expected a cnpg-rotator store file`);
    const file = fileSchema.safeParse(json);
    if (!file.success) throw malformed(file.error);
    const secrets = new Map<string, FileSecret>();
    for (const [key, raw] of Object.entries((json as { secrets: object }).secrets)) {
      const secret = secretSchema.safeParse(raw);
      if (!secret.success) throw malformed(secret.error, key);
      secrets.set(key, secret.data);
    }
    return { lastVersionId: file.data.lastVersionId, secrets };
  };

  const malformed = (error: z.ZodError, key?: string): StoreError => {
    const issue = error.issues[0];
    const where = [...(key === undefined ? [] : ["secrets", key]), ...(issue?.path ?? []).map(String)].join(".");
    const what = issue?.code === "invalid_type" ? `expected ${issue.expected}` : (issue?.code ?? "invalid");
    return new StoreError(`${description} is not a cnpg-rotator store file (format ${FORMAT}): ${where || "(top level)"}: ${what}`);
  };

  /** Changes one secret, which must exist. */
  const change = (state: State, key: string, edit: (secret: FileSecret) => void): void => {
    const secret = state.secrets.get(key);
    if (!secret) throw new StoreStateError(`"${key}" in ${description} is gone`);
    edit(secret);
    secret.updatedAt = new Date().toISOString();
  };

  return {
    staging: "native",
    provider: "file",
    description,
    markKind: "tag",
    compareAndSwap: true,
    names: (key) => ({ key }),

    describe: (key) => look("read", key, (secret) => secret && { deleted: false, marks: secret.tags, versions: labelled(secret) }),

    read: (key, which) =>
      look("read", key, (secret) => {
        const version = labelled(secret).find((v) => ("label" in which ? v.labels.includes(which.label) : v.versionId === which.versionId));
        return version && { ...version, value: versionOf(secret, version.versionId)!.value };
      }),

    create: (key, first) =>
      transact("create", key, (state) => {
        if (state.secrets.has(key)) return false;
        const now = new Date().toISOString();
        const secret: FileSecret = { tags: { ...OURS }, createdAt: now, updatedAt: now };
        if (first) secret.current = newVersion(state, first.value);
        state.secrets.set(key, secret);
        return secret.current ? { versionId: secret.current.versionId } : {};
      }),

    put: (key, value, options) =>
      transact("write a version of", key, (state) => {
        const mine = labelled(state.secrets.get(key)).find((v) => options.rotationId !== undefined && v.rotationId === options.rotationId);
        if (mine) return { ...mine, value: versionOf(state.secrets.get(key), mine.versionId)!.value };
        const version = newVersion(state, value, options.rotationId);
        change(state, key, (secret) => {
          for (const label of options.labels ?? [CURRENT]) {
            if (label === CURRENT) secret.previous = secret.current;
            const slot = slotOf(label);
            if (slot) secret[slot] = version; // Other labels (UNPROMOTED) have no slot: the file never promotes by itself.
          }
        });
        return { ...labelled(state.secrets.get(key)).find((v) => v.versionId === version.versionId)!, value };
      }),

    move: (key, label, moved) =>
      transact("move a label of", key, (state) => {
        const slot = slotOf(label)!;
        const secret = state.secrets.get(key);
        const holding = secret?.[slot]?.versionId;
        if (holding !== moved.from && !(moved.from === undefined && holding === moved.to)) {
          throw new StoreConflictError(`moving ${label} of "${key}" in ${description}: it is on version ${holding}, not ${moved.from ?? "none"}; nothing was written`);
        }
        const to = moved.to === undefined ? undefined : versionOf(secret, moved.to);
        if (moved.to !== undefined && !to) throw new StoreStateError(`version ${moved.to} of "${key}" in ${description} is gone`);
        change(state, key, (s) => {
          if (label === CURRENT && to) s.previous = s.current;
          s[slot] = to;
        });
      }),

    restore: async () => {}, // The file deletes at once: nothing is ever in a recovery window.

    remove: (key) =>
      transact("delete", key, (state) => {
        state.secrets.delete(key);
      }),

    close: async () => {},
  };
}

/** A rotation's version is named by its rotation id (as on AWS); any other by the file's counter. */
function newVersion(state: State, value: string, rotationId?: string): FileVersion {
  if (rotationId === undefined) state.lastVersionId += 1;
  const versionId = rotationId ?? String(state.lastVersionId);
  return { versionId, value, ...(rotationId === undefined ? {} : { rotationId }), createdAt: new Date().toISOString() };
}

/** The secret's versions with the labels their slots give them. */
function labelled(secret: FileSecret | undefined): LabelledVersion[] {
  const versions = new Map<string, { versionId: string; rotationId?: string; labels: string[] }>();
  for (const [label, slot] of Object.entries(SLOTS)) {
    const v = secret?.[slot];
    if (!v) continue;
    const entry = versions.get(v.versionId) ?? { versionId: v.versionId, ...(v.rotationId ? { rotationId: v.rotationId } : {}), labels: [] };
    entry.labels.push(label);
    versions.set(v.versionId, entry);
  }
  return [...versions.values()];
}

const versionOf = (secret: FileSecret | undefined, versionId: string) =>
  Object.values(SLOTS).map((s) => secret?.[s]).find((v) => v?.versionId === versionId);

/** Temp file in the same directory, fsync, rename over the target, fsync the directory. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomUUID()}.tmp`);
  try {
    const handle = await fs.open(temp, "wx", 0o600);
    await handle.writeFile(text, "utf8").then(() => handle.sync()).finally(() => handle.close());
    await fs.rename(temp, path);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  // Without this the rename itself may not survive a power loss; the write is done either way.
  const dirHandle = await fs.open(dir, "r").catch(() => undefined);
  await dirHandle?.sync().catch(noop).finally(() => dirHandle.close());
}

/**
 * Mutual exclusion between writers: in this process one call after another (so concurrent calls
 * do not spin on the file system), across processes a lock file created with O_EXCL. A lock whose
 * owner died on this host, or older than `staleMs`, is removed; the removal re-reads the owner
 * first, so a fresh lock is only taken over in the rare race where two waiters judge the same stale lock.
 */
function lockFile(path: string, staleMs: number, timeoutMs: number): <T>(body: () => Promise<T>) => Promise<T> {
  const take = async (owner: string) => {
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; !(await fs.writeFile(path, owner, { flag: "wx", mode: 0o600 }).then(() => true, ifErrno("EEXIST", false))); attempt++) {
      if (await removeIfStale()) continue;
      if (Date.now() > deadline) {
        throw new StoreError(`timed out after ${timeoutMs} ms waiting for lock ${path}; another writer holds it (remove the file if no writer is running)`);
      }
      await sleep(Math.random() * Math.min(200, 5 * 2 ** attempt));
    }
  };
  const removeIfStale = async (): Promise<boolean> => {
    const [stat, content] = await Promise.all([fs.stat(path).catch(ifErrno("ENOENT", undefined)), readIfExists(path)]);
    if (!stat || content === undefined) return true;
    if (Date.now() - stat.mtimeMs <= staleMs && !ownerIsDead(content)) return false;
    if ((await readIfExists(path)) === content) await fs.rm(path, { force: true });
    return true;
  };
  return (body) =>
    serialize(LOCKS, path, async () => {
      const owner = JSON.stringify({ pid: process.pid, host: hostname(), id: randomUUID() });
      await take(owner);
      try {
        return await body();
      } finally {
        // Only remove our own lock: if it was judged stale and taken over, it is someone else's now.
        if ((await readIfExists(path)) === owner) await fs.rm(path, { force: true });
      }
    });
}
const LOCKS = new Map<string, Promise<void>>();

function ownerIsDead(content: string): boolean {
  // Not JSON: being written right now, or not ours; left to the age check.
  const owner = parseJson(content) as { pid?: unknown; host?: unknown } | undefined;
  if (owner?.host !== hostname() || typeof owner.pid !== "number") return false;
  try {
    process.kill(owner.pid, 0);
    return false;
  } catch (error) {
    return isErrno(error, "ESRCH");
  }
}

const readIfExists = (path: string) => fs.readFile(path, "utf8").catch(ifErrno("ENOENT", undefined));
const isErrno = (error: unknown, code: string) => (error as NodeJS.ErrnoException | undefined)?.code === code;
const ifErrno = <T>(code: string, fallback: T) => unless((e) => isErrno(e, code), fallback);
