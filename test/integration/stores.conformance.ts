// The one behaviour every secret store must show, run by each store's test
// file against its real server or emulator. A store passes this suite or is
// not a store: the rotation engine relies on nothing else.
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OwnershipError, StoreConflictError, StoreStateError } from "../../lib/errors.ts";
import type { SecretStoreClient, StoredVersion } from "../../lib/stores/types.ts";

export interface ConformanceTarget {
  readonly store: SecretStoreClient;
  /** A fresh remote key no other test uses. */
  key(): string;
  /** Creates a remote secret WITHOUT our ownership marker, through the provider's own API. */
  foreign(key: string, value: string): Promise<void>;
  /**
   * Reads a remote secret through the provider's own API, bypassing the store:
   * the value consumers read and whether it carries our marker; undefined when
   * it does not exist (or is deleted and only recoverable).
   */
  inspect(key: string): Promise<{ current: string | undefined; owned: boolean } | undefined>;
  /** Known departures of the emulator the suite runs against from its cloud; each weakens one check, and says why. */
  readonly emulatorGaps?: {
    /**
     * A whitespace-only value is refused (lowkey-vault 7.1.13: HTTP 400, its request model's
     * @NotBlank), where Key Vault stores any non-empty value; such values leave the text property.
     */
    readonly blankValuesRefused?: boolean;
  };
}

/** Blank as Java's String.isBlank sees it (Character.isWhitespace also counts U+001C–U+001F). */
const JAVA_BLANK = /^[\s\u001c-\u001f]*$/;

/** Values whose bytes must survive a round trip unchanged. */
export const AWKWARD_VALUES: readonly string[] = [
  "pässwörd-ÄÖÜ-ß-日本語-🔑👩‍💻",
  JSON.stringify({
    username: "app",
    password: 'p"w\\d/\u00e9\u{1f511}',
    uri: "postgresql://app:p%40ss@cluster-rw.default:5432/app?sslmode=require",
    nested: { list: [1, 2.5, true, null], empty: "" },
  }),
  '{\n  "pretty": "printed",\n  "keys": ["kept", "as", "written"]\n}\n',
  "  leading and trailing spaces, a tab\tand CRLF\r\n",
  "x".repeat(10_000),
  "\u0000\u0001 control characters \u007f",
];

const rotationId = () => randomUUID();

export function describeStoreConformance(name: string, setup: () => Promise<ConformanceTarget>): void {
  describe(`${name} store conformance`, () => {
    let t: ConformanceTarget;
    let store: SecretStoreClient;

    beforeAll(async () => {
      t = await setup();
      store = t.store;
    });
    afterAll(async () => {
      await store?.close();
    });
    // Each write decided on what an observation just before it saw, as the engine does.
    const stage = async (key: string, value: string, rid: string) => store.stage(key, value, rid, await store.observe(key));
    const promote = async (key: string, rid: string) => store.promote(key, rid, await store.observe(key));
    const discard = async (key: string, rid: string) => store.discard(key, rid, await store.observe(key));

    describe("stage", () => {
      it("makes the value pending, creates the secret with our marker and leaves no current", async () => {
        const key = t.key();
        const rid = rotationId();
        const staged = await stage(key, "first", rid);
        expect(staged).toEqual({ versionId: expect.any(String), value: "first", rotationId: rid });
        expect(await store.getPending(key)).toEqual(staged);
        expect(await store.getCurrent(key)).toBeUndefined();
        expect(await store.exists(key)).toBe(true);
        expect((await t.inspect(key))?.owned).toBe(true);
      });

      it("leaves the current version as it was", async () => {
        const key = t.key();
        await store.push(key, "old");
        const before = await store.getCurrent(key);
        await stage(key, "new", rotationId());
        expect(await store.getCurrent(key)).toEqual(before);
        expect((await t.inspect(key))?.current).toBe("old");
      });

      it("is idempotent per rotation id: the first staged value is kept and returned", async () => {
        const key = t.key();
        const rid = rotationId();
        const first = await stage(key, "first", rid);
        const again = await stage(key, "first", rid);
        const other = await stage(key, "a different value", rid);
        expect(again).toEqual(first);
        expect(other).toEqual(first);
        expect(await store.getPending(key)).toEqual(first);
      });

      it("replaces the pending version of another rotation", async () => {
        const key = t.key();
        await store.push(key, "old");
        const one = await stage(key, "one", rotationId());
        const rid = rotationId();
        const two = await stage(key, "two", rid);
        expect(two.versionId).not.toBe(one.versionId);
        expect(await store.getPending(key)).toEqual({ versionId: two.versionId, value: "two", rotationId: rid });
        expect((await store.getCurrent(key))?.value).toBe("old");
      });

      it("of a rotation promoted and pushed over since never stages other values under its id", async () => {
        // A run that observed the target before another run promoted this rotation and
        // published the Secret over it (a key changed meanwhile) stages it again with its own values.
        const key = t.key();
        await store.push(key, "old");
        const rid = rotationId();
        await stage(key, "one", rid);
        await promote(key, rid);
        await store.push(key, "one, published");
        const again = await stage(key, "two", rid).catch((e: unknown) => e);
        if (!(again instanceof StoreConflictError)) expect(again).toMatchObject({ value: "one", rotationId: rid });
        expect((await store.getPending(key))?.value).not.toBe("two");
        expect((await store.getCurrent(key))?.value).toBe("one, published");
      });

      it("of the same rotation from 5 concurrent calls makes one version", async () => {
        for (const prepare of [async () => {}, (key: string) => store.push(key, "old")]) {
          const key = t.key();
          await prepare(key);
          const rid = rotationId();
          const values = ["v0", "v1", "v2", "v3", "v4"];
          const seen = await store.observe(key);
          const results = await Promise.all(values.map((v) => store.stage(key, v, rid, seen)));
          const pending = await store.getPending(key);
          expect(pending?.rotationId).toBe(rid);
          expect(values).toContain(pending?.value);
          for (const r of results) expect(r).toEqual(pending);
        }
      });
    });

    describe("promote", () => {
      it("makes the pending version current and the old current previous", async () => {
        const key = t.key();
        await store.push(key, "old");
        const old = await store.getCurrent(key);
        const rid = rotationId();
        const staged = await stage(key, "new", rid);
        const promoted = await promote(key, rid);
        expect(promoted).toEqual(staged);
        expect(await store.getCurrent(key)).toEqual(staged);
        expect(await store.getPrevious(key)).toEqual(old);
        expect(await store.getPending(key)).toBeUndefined();
        expect(await t.inspect(key)).toEqual({ current: "new", owned: true });
      });

      it("is idempotent: promoting again returns the current version and keeps the previous one", async () => {
        const key = t.key();
        await store.push(key, "old");
        const rid = rotationId();
        await stage(key, "new", rid);
        const first = await promote(key, rid);
        const previous = await store.getPrevious(key);
        expect(await promote(key, rid)).toEqual(first);
        expect(await store.getCurrent(key)).toEqual(first);
        expect(await store.getPrevious(key)).toEqual(previous);
        // Staging a rotation that is already current returns it and stages nothing.
        expect(await stage(key, "late retry", rid)).toEqual(first);
        expect(await store.getPending(key)).toBeUndefined();
        // A later rotation still stages and promotes normally.
        const next = rotationId();
        await stage(key, "newer", next);
        await promote(key, next);
        expect((await store.getCurrent(key))?.value).toBe("newer");
        expect((await store.getPrevious(key))?.value).toBe("new");
      });

      it("of the first rotation of a new secret leaves no previous", async () => {
        const key = t.key();
        const rid = rotationId();
        const staged = await stage(key, "first", rid);
        await promote(key, rid);
        expect(await store.getCurrent(key)).toEqual(staged);
        expect(await store.getPrevious(key)).toBeUndefined();
        expect(await store.getPending(key)).toBeUndefined();
        expect(await t.inspect(key)).toEqual({ current: "first", owned: true });
      });

      it("of a rotation that is not pending is a StoreStateError and changes nothing", async () => {
        const missing = t.key();
        await expect(promote(missing, rotationId())).rejects.toBeInstanceOf(StoreStateError);
        expect(await store.exists(missing)).toBe(false);

        const key = t.key();
        await store.push(key, "old");
        const staged = await stage(key, "new", rotationId());
        await expect(promote(key, rotationId())).rejects.toBeInstanceOf(StoreStateError);
        expect(await store.getPending(key)).toEqual(staged);
        expect((await store.getCurrent(key))?.value).toBe("old");
      });
    });

    describe("discard", () => {
      it("drops the pending version of that rotation only", async () => {
        const key = t.key();
        await store.push(key, "old");
        const current = await store.getCurrent(key);
        const rid = rotationId();
        const staged = await stage(key, "new", rid);
        await discard(key, rotationId());
        expect(await store.getPending(key)).toEqual(staged);
        await discard(key, rid);
        expect(await store.getPending(key)).toBeUndefined();
        expect(await store.getCurrent(key)).toEqual(current);
        await discard(key, rid); // Nothing left to drop: fine.
        expect(await t.inspect(key)).toEqual({ current: "old", owned: true });
      });

      it("of a secret that never had a current value leaves no secret behind", async () => {
        const key = t.key();
        const rid = rotationId();
        await stage(key, "never promoted", rid);
        await discard(key, rid);
        expect(await store.getPending(key)).toBeUndefined();
        expect(await store.getCurrent(key)).toBeUndefined();
        expect(await store.exists(key)).toBe(false);
        expect(await t.inspect(key)).toBeUndefined();
      });

      it("of a missing secret is fine", async () => {
        await expect(discard(t.key(), rotationId())).resolves.toBeUndefined();
      });
    });

    describe("push", () => {
      it("writes a new current version, keeps the old one as previous and skips an equal value", async () => {
        const key = t.key();
        const first = await store.push(key, "one");
        expect(first).toEqual({ changed: true, versionId: expect.any(String) });
        const current = await store.getCurrent(key);
        expect(current).toEqual({ versionId: first.versionId, value: "one" });
        expect(await store.push(key, "one")).toEqual({ changed: false, versionId: first.versionId });
        expect(await store.getCurrent(key)).toEqual(current);
        expect(await store.getPrevious(key)).toBeUndefined();

        const second = await store.push(key, "two");
        expect(second.changed).toBe(true);
        expect(second.versionId).not.toBe(first.versionId);
        expect(await store.getCurrent(key)).toEqual({ versionId: second.versionId, value: "two" });
        expect(await store.getPrevious(key)).toEqual(current);
        expect(await t.inspect(key)).toEqual({ current: "two", owned: true });
      });

      it("writes a value again after another one (A, B, A)", async () => {
        const key = t.key();
        const a = await store.push(key, "A");
        const b = await store.push(key, "B");
        const again = await store.push(key, "A");
        expect(again.changed).toBe(true);
        expect(new Set([a.versionId, b.versionId, again.versionId]).size).toBe(3);
        expect((await store.getCurrent(key))?.value).toBe("A");
        expect((await store.getPrevious(key))?.value).toBe("B");
      });

      it("with ifNotExists writes a missing secret and never overwrites", async () => {
        const key = t.key();
        const created = await store.push(key, "first", { ifNotExists: true });
        expect(created.changed).toBe(true);
        const again = await store.push(key, "second", { ifNotExists: true });
        expect(again.changed).toBe(false);
        expect(await store.getCurrent(key)).toEqual({ versionId: created.versionId, value: "first" });
        expect((await t.inspect(key))?.current).toBe("first");
      });

      it("leaves a pending rotation pending", async () => {
        const key = t.key();
        await store.push(key, "old");
        const rid = rotationId();
        const staged = await stage(key, "staged", rid);
        await store.push(key, "pushed");
        expect(await store.getPending(key)).toEqual(staged);
        expect((await store.getCurrent(key))?.value).toBe("pushed");
        await promote(key, rid);
        expect((await store.getCurrent(key))?.value).toBe("staged");
        expect((await store.getPrevious(key))?.value).toBe("pushed");
      });
    });

    describe("fences", () => {
      it("a stage decided on a stale observation is a StoreConflictError and changes nothing", async () => {
        const key = t.key();
        await store.push(key, "old");
        const stale = await store.observe(key);
        await store.push(key, "pushed meanwhile");
        await expect(store.stage(key, "new", rotationId(), stale)).rejects.toBeInstanceOf(StoreConflictError);
        expect(await store.getPending(key)).toBeUndefined();
        expect((await store.getCurrent(key))?.value).toBe("pushed meanwhile");

        // Another rotation staged since the observation: its pending value stays.
        const before = await store.observe(key);
        const other = await stage(key, "other", rotationId());
        await expect(store.stage(key, "mine", rotationId(), before)).rejects.toBeInstanceOf(StoreConflictError);
        expect(await store.getPending(key)).toEqual(other);

        // A secret created since an observation that found none.
        const fresh = t.key();
        const none = await store.observe(fresh);
        await store.push(fresh, "created meanwhile");
        await expect(store.stage(fresh, "new", rotationId(), none)).rejects.toBeInstanceOf(StoreConflictError);
        expect(await store.getPending(fresh)).toBeUndefined();
      });

      it("a promote decided before current moved is a StoreConflictError and changes nothing; observed again, it goes ahead", async () => {
        const key = t.key();
        await store.push(key, "old");
        const rid = rotationId();
        const staged = await stage(key, "new", rid);
        const stale = await store.observe(key);
        await store.push(key, "pushed meanwhile");
        await expect(store.promote(key, rid, stale)).rejects.toBeInstanceOf(StoreConflictError);
        expect((await store.getCurrent(key))?.value).toBe("pushed meanwhile");
        expect(await store.getPending(key)).toEqual(staged);
        expect(await promote(key, rid)).toEqual(staged);
        expect((await store.getPrevious(key))?.value).toBe("pushed meanwhile");
      });

      it("a promote of a rotation discarded since the observation is refused and leaves current as it was", async () => {
        const key = t.key();
        await store.push(key, "old");
        const current = await store.getCurrent(key);
        const rid = rotationId();
        await stage(key, "never accepted", rid);
        const stale = await store.observe(key);
        await discard(key, rid);
        await expect(store.promote(key, rid, stale)).rejects.toSatisfy(
          (e) => e instanceof StoreStateError || e instanceof StoreConflictError,
        );
        expect(await store.getCurrent(key)).toEqual(current);
        expect(await store.getPending(key)).toBeUndefined();
        expect((await t.inspect(key))?.current).toBe("old");
      });

      it("a push decided before current moved is a StoreConflictError, unless it already holds the value", async () => {
        const key = t.key();
        await store.push(key, "old");
        const stale = await store.observe(key);
        await store.push(key, "pushed meanwhile");
        await expect(store.push(key, "mine", { seen: stale })).rejects.toBeInstanceOf(StoreConflictError);
        expect((await store.getCurrent(key))?.value).toBe("pushed meanwhile");
        expect(await store.push(key, "pushed meanwhile", { seen: stale })).toMatchObject({ changed: false });
        expect((await store.push(key, "mine", { seen: await store.observe(key) })).changed).toBe(true);
      });

      it("a stale run staging again under a rotation id gets the value first staged, pending or already current", async () => {
        const key = t.key();
        await store.push(key, "old");
        const rid = rotationId();
        const stale = await store.observe(key);
        const first = await store.stage(key, "first", rid, stale);
        // The zombie wakes with its old observation and another password for the same rotation.
        expect(await store.stage(key, "zombie", rid, stale)).toEqual(first);
        await promote(key, rid);
        expect(await store.stage(key, "zombie", rid, stale)).toEqual(first);
        expect(await store.getCurrent(key)).toEqual(first);
        expect(await store.getPending(key)).toBeUndefined();
      });

      it("observe names current and pending as getCurrent and getPending do, without values", async () => {
        const key = t.key();
        expect(await store.observe(key)).toEqual({ exists: false, owned: false });
        const pushed = await store.push(key, "old");
        const rid = rotationId();
        await stage(key, "new", rid);
        expect(await store.observe(key)).toEqual({
          exists: true,
          owned: true,
          current: { versionId: pushed.versionId },
          pending: { versionId: rid, rotationId: rid },
        });
        await promote(key, rid);
        expect(await store.observe(key)).toEqual({ exists: true, owned: true, current: { versionId: rid, rotationId: rid } });
        const fresh = t.key();
        await stage(fresh, "first", rid);
        expect(await store.observe(fresh)).toEqual({ exists: true, owned: true, pending: { versionId: rid, rotationId: rid } });
      });
    });

    describe("ownership", () => {
      it("refuses to write or delete a secret without our marker and leaves it untouched", async () => {
        const key = t.key();
        const theirs = "their-value-9f2c";
        await t.foreign(key, theirs);
        expect(await store.exists(key)).toBe(true);

        const ours = "our-value-51e7";
        const refusals = [
          () => stage(key, ours, rotationId()),
          () => store.push(key, ours),
          () => store.delete(key),
        ];
        for (const attempt of refusals) {
          const error = await attempt().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(OwnershipError);
          expect((error as Error).message).toContain(key);
          expect((error as Error).message).not.toContain(theirs);
          expect((error as Error).message).not.toContain(ours);
        }
        // Nothing of ours can be pending there: promote refuses (as foreign or as not pending), discard does nothing.
        await expect(promote(key, rotationId())).rejects.toSatisfy(
          (e) => e instanceof OwnershipError || e instanceof StoreStateError,
        );
        await discard(key, rotationId());
        // IfNotExists leaves any existing secret alone, as ESO does.
        expect(await store.push(key, ours, { ifNotExists: true })).toMatchObject({ changed: false });

        expect(await t.inspect(key)).toEqual({ current: theirs, owned: false });
      });
    });

    describe("exists and delete", () => {
      it("delete removes our secret; a later push creates it again", async () => {
        const key = t.key();
        expect(await store.exists(key)).toBe(false);
        await store.push(key, "v1");
        expect(await store.exists(key)).toBe(true);
        await store.delete(key);
        expect(await store.exists(key)).toBe(false);
        expect(await store.getCurrent(key)).toBeUndefined();
        expect(await store.getPending(key)).toBeUndefined();
        expect(await t.inspect(key)).toBeUndefined();
        await store.delete(key); // Already gone: fine.

        expect((await store.push(key, "v2")).changed).toBe(true);
        expect((await store.getCurrent(key))?.value).toBe("v2");
        expect(await t.inspect(key)).toEqual({ current: "v2", owned: true });
      });

      it("deleting a missing secret is fine", async () => {
        await expect(store.delete(t.key())).resolves.toBeUndefined();
      });
    });

    describe("values", () => {
      it("round-trip byte for byte through stage, promote and push", async () => {
        for (const value of AWKWARD_VALUES) {
          const key = t.key();
          const rid = rotationId();
          const staged: StoredVersion = await stage(key, value, rid);
          expect(Buffer.from(staged.value)).toEqual(Buffer.from(value));
          expect((await store.getPending(key))?.value).toBe(value);
          expect((await promote(key, rid)).value).toBe(value);
          expect((await store.getCurrent(key))?.value).toBe(value);
          expect((await t.inspect(key))?.current).toBe(value);
          // The same value pushed again is recognised as equal, so no new version.
          expect((await store.push(key, value)).changed).toBe(false);
        }
      });

      it("round-trip arbitrary text (property)", async () => {
        const key = t.key();
        await fc.assert(
          fc.asyncProperty(
            fc
              .string({ unit: "grapheme", minLength: 1, maxLength: 200 })
              .filter((v) => !t.emulatorGaps?.blankValuesRefused || !JAVA_BLANK.test(v)),
            async (value) => {
              await store.push(key, value);
              expect((await store.getCurrent(key))?.value).toBe(value);
              expect((await t.inspect(key))?.current).toBe(value);
            },
          ),
          { numRuns: 25 },
        );
      });
    });
  });
}
