// What every provider's primitives share, below the protocol (lib/protocol/, which they never
// import): storeCalls, the one place a provider error becomes a StoreError and a transient one is
// retried; the names of our marks and labels; the rotation records of GCP and Vault.
import { InputError, RotatorError, StoreError } from "../errors.ts";
import { parseDuration } from "../manifests/duration.ts";
import { withRetry } from "../retry.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE, type Marks, type VersionRef } from "./types.ts";

// ---- Calls.

export const TIMEOUT_ENV = "CNPG_ROTATOR_STORE_TIMEOUT";
const DEFAULT_TIMEOUT_MS = 10_000;

/** How long one store request may take (connect to last byte; past it: transient): CNPG_ROTATOR_STORE_TIMEOUT, default 10 s. */
export function requestTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[TIMEOUT_ENV]?.trim();
  if (!raw) return DEFAULT_TIMEOUT_MS;
  const ms = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) * 1000 : parseDuration(raw);
  if (ms === undefined || !(ms > 0)) {
    throw new InputError(`${TIMEOUT_ENV}: expected a positive duration such as "10s" or "1m", found "${raw}"`);
  }
  return ms;
}

/** A provider's request: `absent`, an error the caller expects (not found, exists), answers undefined. */
export interface StoreCall {
  <T>(call: string, name: string, fn: () => Promise<T>): Promise<T>;
  <T>(call: string, name: string, fn: () => Promise<T>, absent: (error: unknown) => boolean): Promise<T | undefined>;
}

/**
 * What a provider sends every request through: a transient failure (`rules.transient`) retried with
 * lib/retry.ts, any other wrapped in a StoreError naming the call, the secret, the store and
 * `rules.detail` (default: the error's name and message; services' messages never echo values).
 */
export function storeCalls(description: string, rules: { transient(error: unknown): boolean; detail?(error: unknown): string }): StoreCall {
  return async <T>(call: string, name: string, fn: () => Promise<T>, absent?: (error: unknown) => boolean): Promise<T | undefined> => {
    try {
      const attempt = absent ? () => fn().catch(unless(absent, undefined)) : fn;
      return await withRetry(attempt, { what: `${call} "${name}" in ${description}`, isTransient: rules.transient });
    } catch (error) {
      if (error instanceof RotatorError) throw error;
      const e = error as Error;
      const detail = rules.detail?.(error) ?? `${e.name && e.name !== "Error" ? `${e.name}: ` : ""}${String(e.message).split("\n")[0]}`;
      throw new StoreError(`${call} of "${name}" in ${description} failed: ${detail}`, { cause: error });
    }
  };
}

/** Resolves to `fallback` when `error` is one the caller expects (e.g. not found); rethrows anything else. */
export function unless<T>(expected: (error: unknown) => boolean, fallback: T): (error: unknown) => T {
  return (error) => {
    if (expected(error)) return fallback;
    throw error;
  };
}

/** A test of an error against the codes a service answers with (`codeOf`: where the error carries its code). */
export const errorIs =
  <C>(codeOf: (error: unknown) => C) =>
  (...codes: C[]) =>
  (error: unknown) =>
    codes.includes(codeOf(error));

/** The JSON value `text` holds; undefined when it holds none. */
export function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Runs `body` after every earlier call queued under `key` has settled: one at a time per key. */
export async function serialize<T>(queues: Map<string, Promise<void>>, key: string, body: () => Promise<T>): Promise<T> {
  const run = (queues.get(key) ?? Promise.resolve()).then(body);
  const tail = run.then(noop, noop);
  queues.set(key, tail);
  try {
    return await run;
  } finally {
    if (queues.get(key) === tail) queues.delete(key);
  }
}

export const noop = () => {};

// ---- Names and records.

export const OURS: Marks = { [MANAGED_BY_KEY]: MANAGED_BY_VALUE };
/** `<key>` + this names the sibling that holds a staged value (stores without native staging). */
export const PENDING_SUFFIX = "-pending";
/** A key's name and its sibling's where `maxLength` fits it (else: pushed, not rotated). InputError for a sibling's name. */
export function siblingNames(key: string, maxLength = Number.POSITIVE_INFINITY): { key: string; pending?: string } {
  if (key.endsWith(PENDING_SUFFIX)) {
    throw new InputError(
      `remote key "${key}" ends in "${PENDING_SUFFIX}", which names the staging sibling of "${key.slice(0, -PENDING_SUFFIX.length)}"; choose another remote key`,
    );
  }
  return { key, ...(key.length + PENDING_SUFFIX.length <= maxLength ? { pending: key + PENDING_SUFFIX } : {}) };
}
/** On the sibling: the rotation whose value it holds. */
export const ROTATION_ID = "cnpg-rotator-rotation-id";
/** Native staging labels: AWS's own, and the file store's. */
export const PENDING = "AWSPENDING";
export const CURRENT = "AWSCURRENT";
export const PREVIOUS = "AWSPREVIOUS";
/** Ours: on a first version that the service made current although it was only staged (AWS does). */
export const UNPROMOTED = "CNPG_ROTATOR_UNPROMOTED";

/** Where a service keeps no metadata per version (GCP, Vault), the secret's records of the rotations' versions: `<rotation id>@<version>`. */
export const CURRENT_ROTATION = "cnpg-rotator-current-rotation";
export const PREVIOUS_ROTATION = "cnpg-rotator-previous-rotation";

/** The marks recording `versionId` as `rotationId`'s; the record of another rotation it replaces becomes the previous one. */
export function recordRotation(marks: Marks, versionId: string, rotationId: string): Record<string, string> {
  const next: Record<string, string> = { ...marks, [CURRENT_ROTATION]: `${rotationId}@${versionId}` };
  const before = marks[CURRENT_ROTATION];
  if (before !== undefined && !before.startsWith(`${rotationId}@`)) next[PREVIOUS_ROTATION] = before;
  return next;
}

/** A record's rotation and version (`<rotation id>@<version>`); undefined for none. */
export function parseRecord(record: string | undefined): { rotationId: string; versionId: string } | undefined {
  const at = record?.lastIndexOf("@") ?? -1;
  return at > 0 ? { rotationId: record!.slice(0, at), versionId: record!.slice(at + 1) } : undefined;
}

/** The records of the current rotation and the one before it, parsed. */
export const records = (marks: Marks) => [marks[CURRENT_ROTATION], marks[PREVIOUS_ROTATION]].map(parseRecord);

/** Version `versionId`, with the rotation the marks record as having written it, if any. */
export function recordedRef(marks: Marks, versionId: string): VersionRef {
  const rotationId = records(marks).find((r) => r?.versionId === versionId)?.rotationId;
  return { versionId, ...(rotationId ? { rotationId } : {}) };
}

