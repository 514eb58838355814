// The file store against a real file system: the conformance suite, then what
// only a file has (modes, atomic replacement, locking across processes).
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, OwnershipError, StoreError } from "../../lib/errors.ts";
import type { FileProvider } from "../../lib/manifests/schema.ts";
import type { ProviderConfig } from "../../lib/manifests/types.ts";
import { type FileStoreOptions, filePrimitives } from "../../lib/stores/file.ts";
import { createClient, createStore } from "../../lib/protocol/index.ts";
import type { StoreDeps } from "../../lib/stores/types.ts";
import { describeStoreConformance } from "./stores.conformance.ts";
import { describePrimitives } from "./stores.primitives.ts";

/** The engine's client over the file store's primitives, as the registry builds it. */
const createFileStore = (config: FileProvider, deps: StoreDeps = {}, options: FileStoreOptions = {}) => createClient(filePrimitives(config, deps, options));

const ROOT = join(import.meta.dirname, "../..");
const NODE = join(ROOT, "node_modules/.bin/node");
const FILE_STORE = join(ROOT, "lib/stores/file.ts");
const PROTOCOL = join(ROOT, "lib/protocol/index.ts");

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "cnpg-rotator-file-store-"));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

interface RawFile {
  format: number;
  lastVersionId: number;
  secrets: Record<string, { tags: Record<string, string>; current?: { value: string } }>;
}

async function readRaw(path: string): Promise<RawFile | undefined> {
  if (!existsSync(path)) return undefined;
  return JSON.parse(await readFile(path, "utf8"));
}

describePrimitives("file", async () => ({
  primitives: filePrimitives({ path: "primitives/secrets.json" }, { baseDir: base }),
  key: () => `primitives/${randomUUID()}`,
}));

describeStoreConformance("file", async () => {
  const dir = join(base, "conformance");
  const path = join(dir, "secrets.json");
  return {
    store: createFileStore({ path: "conformance/secrets.json" }, { baseDir: base }),
    key: () => `conformance/${randomUUID()}`,
    // The file store's "own API" is the file: write an entry as someone else's tool would.
    async foreign(key, value) {
      const raw = (await readRaw(path)) ?? { format: 1, lastVersionId: 0, secrets: {} };
      const now = new Date().toISOString();
      raw.secrets[key] = {
        tags: { owner: "someone-else" },
        createdAt: now,
        updatedAt: now,
        current: { versionId: "f1", value, createdAt: now },
      } as RawFile["secrets"][string];
      await mkdir(dir, { recursive: true });
      await writeFile(path, JSON.stringify(raw));
    },
    async inspect(key) {
      const entry = (await readRaw(path))?.secrets[key];
      return entry && { current: entry.current?.value, owned: entry.tags["managed-by"] === "cnpg-rotator" };
    },
  };
});

describe("file store", () => {
  it("resolves a relative path against the base dir and creates it private (dir 0700, file 0600)", async () => {
    const store = createFileStore({ path: "private/deeper/store.json" }, { baseDir: base });
    const path = join(base, "private/deeper/store.json");
    expect(store.provider).toBe("file");
    expect(store.description).toBe(`file ${path}`);
    await store.push("k", "v");
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(base, "private/deeper"))).mode & 0o777).toBe(0o700);
    expect((await stat(join(base, "private"))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(base, "private/deeper"))).toEqual(["store.json"]); // No temp or lock file left.
  });

  it("uses an absolute path as it is", async () => {
    const path = join(base, "absolute.json");
    const store = createFileStore({ path }, { baseDir: "/nonexistent" });
    await store.push("k", "v");
    expect((await readRaw(path))?.secrets.k?.current?.value).toBe("v");
  });

  it("is created by the registry", async () => {
    const store = await createStore({ name: "file", config: { path: "registry.json" } }, { baseDir: base });
    expect(store.provider).toBe("file");
    expect(store.description).toBe(`file ${join(base, "registry.json")}`);
    const unknown = { name: "keepass", config: {} } as unknown as ProviderConfig;
    await expect(createStore(unknown)).rejects.toThrow(InputError);
    await expect(createStore(unknown)).rejects.toThrow(/spec\.provider\.keepass: .*available: file, aws/);
  });

  it("writes nothing when nothing changes", async () => {
    const path = join(base, "unchanged.json");
    const store = createFileStore({ path }, {});
    await store.push("k", "v");
    const before = await stat(path);
    await store.push("k", "v");
    await store.discard("k", randomUUID(), await store.observe("k"));
    await store.delete("missing");
    expect((await stat(path)).ino).toBe(before.ino); // A write replaces the file, so a new inode.
  });

  it("keeps a key named __proto__ like any other", async () => {
    const path = join(base, "proto.json");
    const store = createFileStore({ path }, {});
    await store.push("__proto__", "v1");
    await store.push("constructor", "v2");
    const reopened = createFileStore({ path }, {});
    expect((await reopened.getCurrent("__proto__"))?.value).toBe("v1");
    expect((await reopened.getCurrent("constructor"))?.value).toBe("v2");
    expect(await reopened.exists("toString")).toBe(false);
  });

  it("reports a damaged file without echoing its content", async () => {
    const path = join(base, "damaged.json");
    const store = createFileStore({ path }, {});
    await writeFile(path, '{"format":1,"lastVersionId":1,"secrets":{"k":{"tags":{},"current":"hunter2"');
    await expect(store.getCurrent("k")).rejects.toThrow(StoreError);
    await expect(store.getCurrent("k")).rejects.not.toThrow(/hunter2/);
    await writeFile(path, JSON.stringify({ format: 1, lastVersionId: 1, secrets: { k: { tags: {}, current: "hunter2" } } }));
    const error: Error = await store.push("k", "x").catch((e) => e);
    expect(error).toBeInstanceOf(StoreError);
    expect(error.message).toContain("secrets.k");
    expect(error.message).not.toContain("hunter2");
    expect(existsSync(`${path}.lock`)).toBe(false);
  });

  it("releases the lock when an operation fails", async () => {
    const path = join(base, "refused.json");
    await writeFile(
      path,
      JSON.stringify({
        format: 1,
        lastVersionId: 1,
        secrets: { theirs: { tags: {}, createdAt: "x", updatedAt: "x", current: { versionId: "1", value: "v", createdAt: "x" } } },
      }),
    );
    const store = createFileStore({ path }, {});
    await expect(store.push("theirs", "w")).rejects.toBeInstanceOf(OwnershipError);
    expect(existsSync(`${path}.lock`)).toBe(false);
    await store.push("ours", "w"); // Would time out if the lock had been left behind.
  });

  describe("lock", () => {
    it("takes over a lock whose owner died", async () => {
      const path = join(base, "dead-owner.json");
      // A pid above the kernel's pid_max cannot be alive.
      await writeFile(`${path}.lock`, JSON.stringify({ pid: 2 ** 22 + 1, host: hostname(), id: "x" }));
      const store = createFileStore({ path }, {}, { staleLockMs: 60_000, lockTimeoutMs: 2_000 });
      await store.push("k", "v");
      expect(existsSync(`${path}.lock`)).toBe(false);
    });

    it("takes over a lock older than staleLockMs", async () => {
      const path = join(base, "old-lock.json");
      await writeFile(`${path}.lock`, JSON.stringify({ pid: process.pid, host: "another-host", id: "x" }));
      const old = new Date(Date.now() - 60_000);
      await utimes(`${path}.lock`, old, old);
      const store = createFileStore({ path }, {}, { staleLockMs: 30_000, lockTimeoutMs: 2_000 });
      await store.push("k", "v");
      expect((await store.getCurrent("k"))?.value).toBe("v");
    });

    it("waits for a live lock and then fails with a StoreError naming the lock file", async () => {
      const path = join(base, "live-lock.json");
      await writeFile(`${path}.lock`, JSON.stringify({ pid: process.pid, host: hostname(), id: "x" }));
      const store = createFileStore({ path }, {}, { staleLockMs: 60_000, lockTimeoutMs: 300 });
      const error: Error = await store.push("k", "v").catch((e) => e);
      expect(error).toBeInstanceOf(StoreError);
      expect(error.message).toContain(`${path}.lock`);
      expect(existsSync(`${path}.lock`)).toBe(true); // Not ours: left alone.
      expect(existsSync(path)).toBe(false);
    });
  });

  it("loses no update when several processes write at once", async () => {
    const path = join(base, "processes.json");
    const rid = randomUUID();
    const writer = `
      import { filePrimitives } from ${JSON.stringify(FILE_STORE)};
      import { createClient } from ${JSON.stringify(PROTOCOL)};
      const [path, rid, worker] = process.argv.slice(1);
      const store = createClient(filePrimitives({ path }, {}));
      // Without a Lease the writers race: a lost fence means observe again and decide again, as the engine does.
      let staged;
      for (;;) {
        try {
          staged = await store.stage("shared", "from-" + worker, rid, await store.observe("shared"));
          break;
        } catch (e) {
          if (e.name !== "StoreConflictError") throw e;
        }
      }
      await Promise.all(Array.from({ length: 10 }, (_, i) => store.push(worker + "/" + i, "value-" + i)));
      process.stdout.write(JSON.stringify(staged));
    `;
    const run = promisify(execFile);
    const workers = ["w0", "w1", "w2", "w3"];
    const outputs = await Promise.all(
      workers.map((w) => run(NODE, ["--input-type=module", "-e", writer, path, rid, w], { cwd: ROOT })),
    );
    const staged = outputs.map((o) => JSON.parse(o.stdout));
    for (const s of staged) expect(s).toEqual(staged[0]);

    const store = createFileStore({ path }, {});
    expect(await store.getPending("shared")).toEqual(staged[0]);
    for (const w of workers) {
      for (let i = 0; i < 10; i++) expect((await store.getCurrent(`${w}/${i}`))?.value).toBe(`value-${i}`);
    }
    const raw = await readRaw(path);
    expect(Object.keys(raw!.secrets)).toHaveLength(41);
    // One version per push (the staged one is named by its rotation id): no write was lost or doubled.
    expect(raw!.lastVersionId).toBe(40);
    expect(raw!.secrets.shared).toMatchObject({ pending: { versionId: rid, rotationId: rid } });
  });

  it("serialises 5 concurrent writers in one process", async () => {
    const path = join(base, "in-process.json");
    const stores = Array.from({ length: 5 }, () => createFileStore({ path }, {}));
    await Promise.all(stores.flatMap((s, w) => Array.from({ length: 8 }, (_, i) => s.push(`w${w}/${i}`, `v${i}`))));
    expect(Object.keys((await readRaw(path))!.secrets)).toHaveLength(40);
  });
});
