// The rotation protocol's decide function as a table: every Secret state × store state a run
// (or a crash) can leave, each with the one next step. No servers: decide is pure.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { SecretObject } from "../../lib/kubernetes/index.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { decide, type Intent, newProgress, type Observation, type Progress, type Step } from "../../lib/rotation/decide.ts";
import { ANNOTATIONS, successorId } from "../../lib/rotation/names.ts";
import { planRotations, type RotationTarget, wholeSecretJson } from "../../lib/rotation/plan.ts";
import type { RemoteState, StoredVersion } from "../../lib/stores/types.ts";

const SEED = join(import.meta.dirname, "../../examples/seed");
const seed = (name: string) => readFileSync(join(SEED, name), "utf8");
const store = (name: string) => `apiVersion: external-secrets.io/v1
kind: SecretStore
metadata: {name: ${name}}
spec: {provider: {file: {path: /tmp/${name}.json}}}
`;
const push = (stores: string[], policy = "Merge") => `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: push}
spec:
  secretStoreRefs: [${stores.map((s) => `{name: ${s}, kind: SecretStore}`).join(", ")}]
  selector: {secret: {name: cluster-example-app}}
  data: [{match: {remoteRef: {remoteKey: cluster-example-app}}}]
${policy === "Merge" ? "" : ""}`;

function targetWith(stores: string[], creationPolicy = "Merge"): RotationTarget {
  const es = seed("external-secret.yaml").replace("creationPolicy: Merge", `creationPolicy: ${creationPolicy}`);
  const set = loadManifests([
    { file: "password.yaml", text: seed("password-generator.yaml") },
    { file: "es.yaml", text: es },
    ...stores.map((s) => ({ file: `${s}.yaml`, text: store(s) })),
    { file: "push.yaml", text: push(stores) },
  ]);
  return planRotations(set)[0]!;
}

const ONE = targetWith(["a"]);
const TWO = targetWith(["a", "b"]);
const NS = "default";
const NAME = "cluster-example-app";
const NOW = new Date("2026-12-02T12:00:00Z");
const L = successorId(NS, NAME, "u1", undefined); // the Secret's last rotation
const N = successorId(NS, NAME, "u1", L); // the one after it
// (A never-rotated Secret's first rotation is L too: successorId of no rotation.)
const X = "00000000-0000-0000-0000-00000000000x"; // a stale pending value of some other rotation

const DATA = { username: "app", password: "old-password-value", dbname: "app" };

type SecretState = "missing" | "never-rotated" | "at-L-due" | "at-L-not-due" | "at-L-rolled-back" | "at-N";
function secretIn(state: SecretState, extra: Record<string, string> = {}): SecretObject | undefined {
  if (state === "missing") return undefined;
  const annotations: Record<string, string> = {};
  const at = (id: string, agoHours: number) => {
    annotations[ANNOTATIONS.rotationId] = id;
    annotations[ANNOTATIONS.rotatedAt] = new Date(NOW.getTime() - agoHours * 3600_000).toISOString();
  };
  if (state === "at-L-due") at(L, 48);
  if (state === "at-L-not-due") at(L, 1);
  if (state === "at-L-rolled-back") {
    at(L, 1);
    annotations[ANNOTATIONS.rolledBack] = L;
  }
  if (state === "at-N") at(N, 0);
  return { name: NAME, namespace: NS, uid: "u1", resourceVersion: "7", type: "kubernetes.io/basic-auth", labels: {}, annotations, data: { ...DATA, ...extra }, binaryKeys: [] };
}

type StoreState = "absent" | "foreign" | "empty" | "current-pushed" | "current-L" | "pending-L" | "pending-N" | "pending-X" | "current-N";
const STORE: Record<StoreState, RemoteState> = {
  absent: { exists: false, owned: false },
  foreign: { exists: true, owned: false, current: { versionId: "theirs" } },
  empty: { exists: true, owned: true },
  "current-pushed": { exists: true, owned: true, current: { versionId: "push-1" } },
  "current-L": { exists: true, owned: true, current: { versionId: L, rotationId: L } },
  "pending-L": { exists: true, owned: true, current: { versionId: "push-1" }, pending: { versionId: L, rotationId: L } },
  "pending-N": { exists: true, owned: true, current: { versionId: L, rotationId: L }, pending: { versionId: N, rotationId: N } },
  "pending-X": { exists: true, owned: true, current: { versionId: "push-1" }, pending: { versionId: X, rotationId: X } },
  "current-N": { exists: true, owned: true, current: { versionId: N, rotationId: N } },
};

const ROTATE: Intent = { mode: "rotate", force: false, rollbackOnFailure: false, now: NOW };
const FORCE: Intent = { ...ROTATE, force: true };
const ROLLBACK: Intent = { mode: "rollback", force: false, rollbackOnFailure: true, now: NOW };

function obs(secret: SecretState, ...stores: StoreState[]): Observation {
  return { secret: secretIn(secret), stores: stores.map((s) => STORE[s]) };
}

/** What a step looks like for the table: kind, store, rotation id, outcome, error. */
function brief(step: Step): string {
  switch (step.kind) {
    case "done":
      return `done ${step.outcome}${step.reason ? ` (${step.reason})` : ""}`;
    case "refuse":
      return `refuse ${step.error}`;
    default: {
      const s = "store" in step ? `(${step.store})` : "role" in step && step.role !== undefined ? `(role ${step.role})` : "";
      const id = "rotationId" in step ? ` ${name(step.rotationId)}` : "";
      return `${step.kind}${s}${id}`;
    }
  }
}
const name = (id: string) => (id === L ? "L" : id === N ? "N" : id === X ? "X" : id);
const version = (id: string, value: string): StoredVersion => ({ versionId: id, rotationId: id, value });

// A fresh run, one store: every Secret state × every store state.
const FRESH: [SecretState, StoreState, string][] = [
  // No Secret under creationPolicy Merge: nothing may be written anywhere.
  ...(["absent", "foreign", "empty", "current-pushed", "current-L", "pending-L", "pending-N", "pending-X"] as const).map(
    (s) => ["missing", s, "refuse SecretMissingError"] as [SecretState, StoreState, string],
  ),
  // Never rotated (its first rotation is N0 = L).
  ["never-rotated", "absent", "seed(0)"],
  ["never-rotated", "foreign", "refuse OwnershipError"],
  ["never-rotated", "empty", "seed(0)"],
  ["never-rotated", "current-pushed", "stage(0) L"],
  ["never-rotated", "pending-L", "recover L"], // staged, crash before the merge: same password
  ["never-rotated", "pending-X", "stage(0) L"], // a stale pending value is replaced
  // Rotated as L, due again.
  ["at-L-due", "absent", "seed(0)"],
  ["at-L-due", "foreign", "refuse OwnershipError"],
  ["at-L-due", "empty", "seed(0)"],
  ["at-L-due", "current-pushed", "stage(0) N"],
  ["at-L-due", "current-L", "stage(0) N"],
  ["at-L-due", "pending-L", "test L"], // merged, crash before promote: test then promote
  ["at-L-due", "pending-N", "recover N"],
  ["at-L-due", "pending-X", "stage(0) N"],
  ["at-L-due", "current-N", "merge N"], // already current there (a promote elsewhere): only the merge is left
  // Rotated as L, not due: a rotation in flight is finished whatever the schedule says.
  ["at-L-not-due", "absent", "done not-due (not due yet)"],
  ["at-L-not-due", "foreign", "done not-due (not due yet)"],
  ["at-L-not-due", "empty", "done not-due (not due yet)"],
  ["at-L-not-due", "current-pushed", "done not-due (not due yet)"],
  ["at-L-not-due", "current-L", "done not-due (not due yet)"],
  ["at-L-not-due", "pending-L", "test L"],
  ["at-L-not-due", "pending-N", "recover N"],
  ["at-L-not-due", "pending-X", "done not-due (not due yet)"],
  // Merged as N, but the store's current is still L and nothing is pending (a promote undone after
  // AWS had applied it): the store catches up with the Secret instead of staying behind as "not due".
  ["at-N", "current-L", "publish(0)"],
  ["at-N", "current-N", "done not-due (not due yet)"],
  ["at-N", "current-pushed", "done not-due (not due yet)"],
  // L was rolled back: its leftover pending value is never promoted; the target is due.
  ["at-L-rolled-back", "pending-L", "stage(0) N"],
  ["at-L-rolled-back", "current-pushed", "stage(0) N"],
  ["at-L-rolled-back", "pending-N", "recover N"],
  ["at-L-rolled-back", "absent", "seed(0)"],
];

describe("decide: a fresh run, one store", () => {
  for (const [secret, store, expected] of FRESH) {
    it(`Secret ${secret} × store ${store} → ${expected}`, () => {
      expect(brief(decide(ONE, obs(secret, store), newProgress(1), ROTATE))).toBe(expected);
    });
  }
  it("forced, not due: rotates anyway", () => {
    expect(brief(decide(ONE, obs("at-L-not-due", "current-L"), newProgress(1), FORCE))).toBe("stage(0) N");
  });
  it("CreateOrMerge, no Secret: stages, then creates it by the merge", () => {
    const target = targetWith(["a"], "CreateOrMerge");
    // No Secret yet, so no uid: the id of its first rotation derives from "".
    const first = successorId(NS, NAME, "", undefined);
    expect(brief(decide(target, obs("missing", "absent"), newProgress(1), ROTATE))).toBe(`stage(0) ${first}`);
    const p = { ...newProgress(1), values: { password: "p" }, started: true, rotationId: first };
    const staged = { exists: true, owned: true, pending: { versionId: first, rotationId: first } };
    expect(brief(decide(target, { secret: undefined, stores: [staged] }, p, ROTATE))).toBe(`merge ${first}`);
  });
});

// Within one run: what the acts so far have done (progress), one store.
describe("decide: within a run, one store", () => {
  const started = (extra: Partial<Progress> = {}): Progress => ({ ...newProgress(1), values: { password: "new" }, started: true, rotationId: N, ...extra });
  const rows: [string, Observation, Progress, Intent, string][] = [
    ["staged this run → merge", obs("at-L-due", "pending-N"), started(), ROTATE, "merge N"],
    ["recovered (resuming) → merge", obs("at-L-due", "pending-N"), { ...newProgress(1), values: { password: "x" }, rotationId: N }, ROTATE, "merge N"],
    ["merged → test", obs("at-N", "pending-N"), started(), ROTATE, "test N"],
    ["tested → promote", obs("at-N", "pending-N"), started({ tested: N }), ROTATE, "promote(0) N"],
    [
      "promoted, store carries the Secret → done rotated",
      obs("at-N", "current-N"),
      started({ tested: N, promoted: [version(N, wholeSecretJson(DATA))] }),
      ROTATE,
      "done rotated",
    ],
    [
      "promoted, resumed → done resumed",
      obs("at-N", "current-N"),
      { ...newProgress(1), tested: N, rotationId: N, promoted: [version(N, wholeSecretJson(DATA))] },
      ROTATE,
      "done resumed",
    ],
    [
      "promoted, another key written meanwhile → publish",
      { secret: secretIn("at-N", { note: "meanwhile" }), stores: [STORE["current-N"]] },
      started({ tested: N, promoted: [version(N, wholeSecretJson(DATA))] }),
      ROTATE,
      "publish(0)",
    ],
    [
      "a store left behind, published → done resumed",
      obs("at-N", "current-L"),
      { ...newProgress(1), published: [true] },
      ROTATE,
      "done resumed",
    ],
    [
      "published → done rotated",
      { secret: secretIn("at-N", { note: "meanwhile" }), stores: [STORE["current-N"]] },
      { ...started({ tested: N, promoted: [version(N, wholeSecretJson(DATA))] }), published: [true] },
      ROTATE,
      "done rotated",
    ],
    ["test failed, no rollback → done, left merged", obs("at-N", "pending-N"), started({ failedTest: N }), ROTATE, "done verification-failed"],
    [
      "test failed, rollback → read the stores' current values",
      obs("at-N", "pending-N"),
      started({ failedTest: N }),
      { ...ROTATE, rollbackOnFailure: true },
      "read-current",
    ],
    [
      "… then restore the Secret",
      obs("at-N", "pending-N"),
      started({ failedTest: N, currentValues: [version(L, wholeSecretJson(DATA))] }),
      { ...ROTATE, rollbackOnFailure: true },
      "restore N",
    ],
    [
      "… then discard the pending value",
      { secret: { ...secretIn("at-N")!, annotations: { ...secretIn("at-N")!.annotations, [ANNOTATIONS.rolledBack]: N } }, stores: [STORE["pending-N"]] },
      started({ failedTest: N, currentValues: [version(L, wholeSecretJson(DATA))] }),
      { ...ROTATE, rollbackOnFailure: true },
      "discard(0) N",
    ],
    [
      "… then done (failed, rolled back)",
      { secret: { ...secretIn("at-N")!, annotations: { ...secretIn("at-N")!.annotations, [ANNOTATIONS.rolledBack]: N } }, stores: [STORE["current-L"]] },
      started({ failedTest: N, currentValues: [version(L, wholeSecretJson(DATA))] }),
      { ...ROTATE, rollbackOnFailure: true },
      "done verification-failed",
    ],
  ];
  for (const [what, o, p, intent, expected] of rows) {
    it(`${what}: ${expected}`, () => expect(brief(decide(ONE, o, p, intent))).toBe(expected));
  }
});

describe("decide: two stores", () => {
  const rows: [string, Observation, Progress, string][] = [
    ["both never written → seed the first", obs("at-L-due", "absent", "absent"), newProgress(2), "seed(0)"],
    ["the first seeded → seed the second", obs("at-L-due", "current-pushed", "absent"), newProgress(2), "seed(1)"],
    ["both seeded → stage the first", obs("at-L-due", "current-pushed", "current-pushed"), newProgress(2), "stage(0) N"],
    ["one staged (crash), values unknown → recover", obs("at-L-due", "pending-N", "current-L"), newProgress(2), "recover N"],
    [
      "one staged, values known → stage the other",
      obs("at-L-due", "pending-N", "current-L"),
      { ...newProgress(2), values: { password: "x" }, rotationId: N },
      "stage(1) N",
    ],
    ["both staged → merge", obs("at-L-due", "pending-N", "pending-N"), { ...newProgress(2), values: { password: "x" }, rotationId: N }, "merge N"],
    ["merged, tested → promote the first", obs("at-N", "pending-N", "pending-N"), { ...newProgress(2), tested: N, rotationId: N }, "promote(0) N"],
    ["one promoted (crash) → test again, then the other", obs("at-N", "current-N", "pending-N"), newProgress(2), "test N"],
    ["one promoted, tested → promote the other", obs("at-N", "current-N", "pending-N"), { ...newProgress(2), tested: N }, "promote(1) N"],
    ["a foreign second store → refused before anything is written", obs("at-L-due", "current-L", "foreign"), newProgress(2), "refuse OwnershipError"],
    ["… but a target not due writes nothing and is not refused", obs("at-L-not-due", "current-L", "foreign"), newProgress(2), "done not-due (not due yet)"],
  ];
  for (const [what, o, p, expected] of rows) {
    it(`${what}: ${expected}`, () => expect(brief(decide(TWO, o, p, ROTATE))).toBe(expected));
  }
});

describe("decide: rollback", () => {
  const restoredAt = (id: string): SecretObject => {
    const s = secretIn(id === L ? "at-L-due" : "at-N")!;
    return { ...s, annotations: { ...s.annotations, [ANNOTATIONS.rolledBack]: id } };
  };
  const read = (p: Progress): Progress => ({ ...p, rotationId: L, currentValues: [version("push-1", wholeSecretJson(DATA))] });
  const rows: [string, RotationTarget, Observation, Progress, Intent, string][] = [
    ["no Secret", ONE, obs("missing", "current-pushed"), newProgress(1), ROLLBACK, "refuse SecretMissingError"],
    ["never rotated", ONE, obs("never-rotated", "current-pushed"), newProgress(1), ROLLBACK, "done nothing-to-roll-back (the Secret was never rotated)"],
    [
      "another rotation than expected",
      ONE,
      obs("at-L-due", "pending-L"),
      newProgress(1),
      { ...ROLLBACK, expectRotationId: N },
      `done nothing-to-roll-back (the Secret has moved on to rotation ${L})`,
    ],
    ["merged, not promoted → read the current values", ONE, obs("at-L-due", "pending-L"), newProgress(1), ROLLBACK, "read-current"],
    ["… then restore", ONE, obs("at-L-due", "pending-L"), read(newProgress(1)), ROLLBACK, "restore L"],
    ["… restored → discard", ONE, { secret: restoredAt(L), stores: [STORE["pending-L"]] }, read(newProgress(1)), ROLLBACK, "discard(0) L"],
    ["… discarded → done", ONE, { secret: restoredAt(L), stores: [STORE["current-pushed"]] }, read(newProgress(1)), ROLLBACK, "done rolled-back"],
    [
      "… another key written meanwhile → publish",
      ONE,
      { secret: { ...restoredAt(L), data: { ...DATA, note: "x" } }, stores: [STORE["current-pushed"]] },
      read(newProgress(1)),
      ROLLBACK,
      "publish(0)",
    ],
    ["restored by a run that stopped → discard what is left", ONE, { secret: restoredAt(L), stores: [STORE["pending-L"]] }, newProgress(1), ROLLBACK, "read-current"],
    [
      "already rolled back",
      ONE,
      { secret: restoredAt(L), stores: [STORE["current-pushed"]] },
      newProgress(1),
      ROLLBACK,
      `done nothing-to-roll-back (rotation ${L} was already rolled back)`,
    ],
    [
      "staged but not merged",
      ONE,
      obs("at-L-due", "pending-N"),
      newProgress(1),
      ROLLBACK,
      `done nothing-to-roll-back (rotation ${N} is staged but not merged: the Secret still holds the current password, and the next rotation finishes it)`,
    ],
    [
      "promoted",
      ONE,
      obs("at-L-due", "current-L"),
      newProgress(1),
      ROLLBACK,
      `done nothing-to-roll-back (rotation ${L} is promoted: no store holds it pending (rotate again to change the password))`,
    ],
    ["promoted in one store, pending in the other → refused", TWO, obs("at-L-due", "current-L", "pending-L"), newProgress(2), ROLLBACK, "refuse StoreStateError"],
  ];
  for (const [what, target, o, p, intent, expected] of rows) {
    it(`${what}: ${expected}`, () => expect(brief(decide(target, o, p, intent))).toBe(expected));
  }
});

describe("decide: alternating roles", () => {
  const es = seed("external-secret.yaml").replace(
    "  name: cluster-example-app-secret\n",
    "  name: cluster-example-app-secret\n  annotations:\n    cnpg-rotator.io/strategy: alternating\n    cnpg-rotator.io/cluster: cluster-example\n    cnpg-rotator.io/roles: app_blue=app-blue, app_green=app-green\n",
  );
  const target = planRotations(
    loadManifests([
      { file: "password.yaml", text: seed("password-generator.yaml") },
      { file: "es.yaml", text: es.replace(/ {8}pgpass: .*\n {8}jdbc-uri: .*\n {8}uri: .*\n/, '        uri: "postgresql://{{ .username }}:{{ .password }}@cluster-example-rw.default:5432/app"\n') },
      { file: "a.yaml", text: store("a") },
      { file: "push.yaml", text: push(["a"]) },
    ]),
  )[0]!;
  const AN = successorId(NS, NAME, "u1", L, "alternating"); // the alternating rotation after L
  const SN = N; // the single-user one after L
  const role = (name: string, rotationId?: string): SecretObject => ({
    name,
    namespace: NS,
    uid: name,
    resourceVersion: "3",
    type: "kubernetes.io/basic-auth",
    labels: {},
    annotations: rotationId ? { [ANNOTATIONS.rotationId]: rotationId } : {},
    data: { username: name.replace("-", "_"), password: "x" },
    binaryKeys: [],
  });
  /** The consumer Secret, naming `user`, at rotation L (due) unless said otherwise. */
  const consumer = (user: string, annotations: Record<string, string> = {}): SecretObject => {
    const s = secretIn("at-L-due")!;
    return { ...s, data: { ...s.data, username: user }, annotations: { ...s.annotations, [ANNOTATIONS.strategy]: "alternating", ...annotations } };
  };
  const o = (secret: SecretObject, stores: RemoteState[], roles: (SecretObject | undefined)[] = [role("app-blue"), role("app-green")]): Observation => ({ secret, stores, roles });
  const pendingAN: RemoteState = { exists: true, owned: true, current: { versionId: L, rotationId: L }, pending: { versionId: AN, rotationId: AN } };
  const known = (extra: Partial<Progress> = {}): Progress => ({ ...newProgress(1), values: { password: "p" }, rotationId: AN, ...extra });
  const rows: [string, Observation, Progress, Intent, string][] = [
    ["a role's passwordSecret missing → refused before any write", o(consumer("app_blue"), [STORE["current-L"]], [role("app-blue"), undefined]), newProgress(1), ROTATE, "refuse InputError"],
    ["not due → nothing", o({ ...consumer("app_blue"), annotations: { ...secretIn("at-L-not-due")!.annotations, [ANNOTATIONS.strategy]: "alternating" } }, [STORE["current-L"]]), newProgress(1), ROTATE, "done not-due (not due yet)"],
    ["due, consumer on blue → stage for green", o(consumer("app_blue"), [STORE["current-L"]]), newProgress(1), ROTATE, `stage(0) ${AN}`],
    ["staged → the idle role (green) gets it", o(consumer("app_blue"), [pendingAN]), known(), ROTATE, `merge-role(role 1) ${AN}`],
    ["consumer on green → blue is idle", o(consumer("app_green"), [pendingAN]), known(), ROTATE, `merge-role(role 0) ${AN}`],
    ["consumer on the owner (first rotation) → the first role", o(consumer("app"), [pendingAN]), known(), ROTATE, `merge-role(role 0) ${AN}`],
    ["idle role merged → test (wait for CNPG, log in)", o(consumer("app_blue"), [pendingAN], [role("app-blue"), role("app-green", AN)]), known(), ROTATE, `test(role 1) ${AN}`],
    ["crash between role applied and consumer switched → resume: recover, test again", o(consumer("app_blue"), [pendingAN], [role("app-blue"), role("app-green", AN)]), newProgress(1), ROTATE, `recover ${AN}`],
    ["tested → switch the consumer", o(consumer("app_blue"), [pendingAN], [role("app-blue"), role("app-green", AN)]), known({ tested: AN }), ROTATE, `switch(role 1) ${AN}`],
    [
      "switched → promote",
      o({ ...consumer("app_green"), annotations: { ...consumer("app_green").annotations, [ANNOTATIONS.rotationId]: AN } }, [pendingAN], [role("app-blue"), role("app-green", AN)]),
      newProgress(1),
      ROTATE,
      `promote(0) ${AN}`,
    ],
    ["test failed, rollback off → done, consumer untouched", o(consumer("app_blue"), [pendingAN]), known({ failedTest: AN }), ROTATE, "done verification-failed"],
    ["test failed → read the previous values", o(consumer("app_blue"), [pendingAN]), known({ failedTest: AN }), { ...ROTATE, rollbackOnFailure: true }, "read-previous"],
    ["… discard the pending value", o(consumer("app_blue"), [pendingAN]), known({ failedTest: AN, previousValues: [undefined] }), { ...ROTATE, rollbackOnFailure: true }, `discard(0) ${AN}`],
    [
      "… the idle role back to its old password (a store still has it)",
      o(consumer("app_blue"), [STORE["current-L"]], [role("app-blue"), role("app-green", AN)]),
      known({ failedTest: AN, previousValues: [version("v0", JSON.stringify({ username: "app_green", password: "older" }))] }),
      { ...ROTATE, rollbackOnFailure: true },
      `restore-role(role 1) ${AN}`,
    ],
    [
      "… the consumer records the rollback, nothing else",
      o(consumer("app_blue"), [STORE["current-L"]], [role("app-blue"), role("app-green", AN)]),
      known({ failedTest: AN, previousValues: [undefined] }),
      { ...ROTATE, rollbackOnFailure: true },
      `mark-rolled-back ${AN}`,
    ],
    [
      "rolled back → the next rotation has a new id",
      o(consumer("app_blue", { [ANNOTATIONS.rolledBack]: AN }), [STORE["current-L"]]),
      newProgress(1),
      ROTATE,
      `stage(0) ${successorId(NS, NAME, "u1", AN, "alternating")}`,
    ],
    ["a single-user rotation staged → refused: finish it first", o(consumer("app"), [{ ...pendingAN, pending: { versionId: SN, rotationId: SN } }]), newProgress(1), ROTATE, "refuse InputError"],
    ["a manual rollback → refused (nothing is left merged)", o(consumer("app_blue"), [pendingAN]), newProgress(1), ROLLBACK, "refuse InputError"],
  ];
  for (const [what, observation, p, intent, expected] of rows) {
    it(`${what}: ${expected.replaceAll(AN, "AN")}`, () => expect(brief(decide(target, observation, p, intent))).toBe(expected));
  }
  it("a single-user ExternalSecret on an alternating consumer Secret → refused", () => {
    expect(brief(decide(ONE, o(consumer("app_blue"), [STORE["current-L"]]), newProgress(1), ROTATE))).toBe("refuse InputError");
  });
});
