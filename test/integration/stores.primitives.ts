// What every provider's primitives must do on its real server or emulator (lib/stores/types.ts),
// below the protocol: the protocol suite (stores.conformance.ts) relies on exactly this.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StoreConflictError } from "../../lib/errors.ts";
import { CURRENT, OURS, PENDING, PREVIOUS } from "../../lib/stores/primitives.ts";
import type { NativePrimitives, SiblingPrimitives, StorePrimitives } from "../../lib/stores/types.ts";

export interface PrimitivesTarget {
  readonly primitives: StorePrimitives;
  /** A fresh remote key no other test uses. */
  key(): string;
}

export function describePrimitives(name: string, setup: () => Promise<PrimitivesTarget>): void {
  describe(`${name} primitives`, () => {
    let t: PrimitivesTarget;
    beforeAll(async () => {
      t = await setup();
    });
    afterAll(async () => {
      await t?.primitives.close();
    });
    const name = () => t.primitives.names(t.key()).key;

    it("declare what they are", () => {
      expect(t.primitives.provider).toMatch(/^(file|aws|gcpsm|azurekv|vault)$/);
      expect(t.primitives.markKind).not.toBe("");
      expect(t.primitives.names("some-key").key).toContain("some-key");
    });

    it("native or sibling: the calls of their kind", async () => {
      const p = t.primitives;
      if (p.staging === "native") await nativeCalls(p, name());
      else await siblingCalls(p, name(), name());
    });
  });
}

async function nativeCalls(p: NativePrimitives, name: string): Promise<void> {
  expect(await p.describe(name)).toBeUndefined();
  expect(await p.read(name, { label: CURRENT })).toBeUndefined();

  const created = await p.create(name, { value: "one" });
  expect(created).toEqual({ versionId: expect.any(String) });
  expect(await p.create(name)).toBe(false);
  const one = (created as { versionId: string }).versionId;
  expect(await p.read(name, { label: CURRENT })).toMatchObject({ versionId: one, value: "one" });
  expect(await p.describe(name)).toEqual({ deleted: false, marks: expect.objectContaining(OURS), versions: [{ versionId: one, labels: [CURRENT] }] });

  // A version of a rotation, labelled as asked; the same rotation id again writes nothing.
  const rid = randomUUID();
  const staged = await p.put(name, "two", { rotationId: rid, labels: [PENDING] });
  expect(staged).toMatchObject({ rotationId: rid, value: "two", labels: [PENDING] });
  expect(await p.put(name, "other", { rotationId: rid, labels: [PENDING] })).toMatchObject({ versionId: staged.versionId, value: "two" });
  expect(await p.read(name, { versionId: staged.versionId })).toMatchObject({ rotationId: rid, value: "two" });

  // Moving a label off a version that does not hold it is refused and changes nothing: the compare-and-swap.
  const before = await p.describe(name);
  await expect(p.move(name, CURRENT, { to: staged.versionId, from: staged.versionId })).rejects.toBeInstanceOf(StoreConflictError);
  expect(await p.describe(name)).toEqual(before);
  await p.move(name, CURRENT, { to: staged.versionId, from: one });
  await p.move(name, PENDING, { from: staged.versionId });
  const after = await p.describe(name);
  expect(Object.fromEntries(after!.versions.filter((v) => v.labels.length).map((v) => [v.versionId, v.labels]))).toEqual({
    [one]: [PREVIOUS],
    [staged.versionId]: [CURRENT],
  });

  // A plain write becomes current by default.
  const pushed = await p.put(name, "three", { replaces: staged.versionId });
  expect(pushed).toMatchObject({ value: "three", labels: [CURRENT] });
  expect(await p.read(name, { label: CURRENT })).toMatchObject({ versionId: pushed.versionId, value: "three" });
  expect(await p.read(name, { label: PREVIOUS })).toMatchObject({ versionId: staged.versionId, value: "two" });

  await p.remove(name, "now");
  expect(await p.describe(name)).toBeUndefined();
  await p.remove(name, "now"); // Already gone: fine.
}

async function siblingCalls(p: SiblingPrimitives, name: string, empty: string): Promise<void> {
  expect(await p.head(name)).toBeUndefined();
  expect(await p.read(name, "latest")).toBeUndefined();

  // Create-only when no head is given.
  const one = await p.write(name, "one", { head: undefined, marks: OURS });
  await expect(p.write(name, "again", { head: undefined, marks: OURS })).rejects.toBeInstanceOf(StoreConflictError);
  const h1 = (await p.head(name))!;
  expect(h1).toMatchObject({ deleted: false, marks: expect.objectContaining(OURS), latest: { versionId: one } });
  expect(await p.read(name, "latest")).toEqual({ versionId: one, value: "one" });

  // A rotation's version is recorded as its own; the one before it is previous.
  const rid = randomUUID();
  const two = await p.write(name, "two", { head: h1, marks: h1.marks, rotationId: rid });
  expect((await p.head(name))?.latest).toEqual({ versionId: two, rotationId: rid });
  expect(await p.read(name, "latest")).toEqual({ versionId: two, rotationId: rid, value: "two" });
  expect(await p.read(name, "previous")).toEqual({ versionId: one, value: "one" });

  // Decided on a stale head: refused where the service has compare-and-swap, and nothing changes.
  const stale = p.write(name, "three", { head: h1, marks: h1.marks, rotationId: randomUUID() });
  if (p.compareAndSwap) {
    await expect(stale).rejects.toBeInstanceOf(StoreConflictError);
    expect((await p.head(name))?.latest).toEqual({ versionId: two, rotationId: rid });
  } else {
    await expect(stale).resolves.toEqual(expect.any(String));
  }

  // A version written but not recorded (a promote that stopped) is recorded afterwards.
  const h2 = (await p.head(name))!;
  const plain = await p.write(name, "four", { head: h2, marks: h2.marks });
  const unrecorded = (await p.head(name))!;
  expect(unrecorded.latest).toEqual({ versionId: plain });
  const adopted = randomUUID();
  await p.adopt(name, unrecorded, adopted);
  expect((await p.head(name))?.latest).toEqual({ versionId: plain, rotationId: adopted });

  const h3 = (await p.head(name))!;
  await p.remove(name, { head: h3, purge: true });
  const gone = await p.head(name);
  expect(gone === undefined || gone.deleted).toBe(true);
  expect(await p.read(name, "latest")).toBeUndefined();

  if (p.createEmpty) {
    expect(await p.createEmpty(empty, OURS)).toBe(true);
    expect(await p.createEmpty(empty, OURS)).toBe(false);
    expect(await p.head(empty)).toMatchObject({ deleted: false, marks: expect.objectContaining(OURS) });
    expect((await p.head(empty))?.latest).toBeUndefined();
    await p.remove(empty, { head: (await p.head(empty))!, purge: true });
  }
}
