// One secret boundary. The engine tells this module every secret value it handles (generated,
// read back from a store or a Secret, a credential); every message that leaves the process —
// log lines, results, thrown errors, HTTP bodies, CLI output — passes `redact`, which replaces
// each of those values in every form it can take in text: raw, JSON-escaped, base64, base64url,
// percent-encoded (URI userinfo and query) and .pgpass-escaped. A belt to the braces of
// "never put a value in a message": a slip anywhere is caught here, once.
import { pgpassField, pgQuery, pgUserinfo } from "./cnpg/index.ts";

const MASK = "[redacted]";
/** Shorter values would garble ordinary words; generated passwords and tokens are longer. */
const MIN_LENGTH = 6;
/** Values remembered at most (a warm function instance keeps the most recent). */
const MAX_VALUES = 20_000;
const PREFIX = 4;

/** Each remembered value with its forms, oldest first (a Map keeps insertion order). */
const values = new Map<string, string[]>();
/** Every form of every value, indexed by its first PREFIX characters, longest first in each list. */
const index = new Map<string, string[]>();
/** How many remembered values have each form (two values can share one, e.g. a value and its own base64). */
const formCounts = new Map<string, number>();

/** The forms a value takes in text that leaves the process. */
export function encodings(value: string): string[] {
  const b64 = Buffer.from(value, "utf8").toString("base64");
  return [
    ...new Set([
      value,
      JSON.stringify(value).slice(1, -1),
      b64,
      b64.replace(/=+$/, ""),
      Buffer.from(value, "utf8").toString("base64url"),
      encodeURIComponent(value),
      pgUserinfo(value),
      pgQuery(value),
      pgpassField(value),
      JSON.stringify(pgpassField(value)).slice(1, -1), // a .pgpass line in a JSON log line: its `\` doubled
      JSON.stringify(JSON.stringify(value)).slice(3, -3), // JSON inside JSON (a whole-Secret value logged as JSON)
    ]),
  ].filter((f) => f.length >= MIN_LENGTH);
}

/**
 * Remembers secret values for `redact`. Empty and very short values are ignored. The index
 * changes by the new value's forms only: a rebuild of all of it per new value made a
 * thousand rotations in one invocation cost quadratic time.
 */
export function rememberSecret(...secrets: (string | undefined)[]): void {
  for (const v of secrets) {
    if (v === undefined || v.length < MIN_LENGTH || values.has(v)) continue;
    const forms = encodings(v);
    values.set(v, forms);
    for (const form of forms) addForm(form);
    if (values.size > MAX_VALUES) {
      const [oldest, oldForms] = values.entries().next().value!;
      values.delete(oldest);
      for (const form of oldForms) removeForm(form);
    }
  }
}

function addForm(form: string): void {
  const count = formCounts.get(form) ?? 0;
  formCounts.set(form, count + 1);
  if (count > 0) return;
  const key = form.slice(0, PREFIX);
  const list = index.get(key);
  if (!list) {
    index.set(key, [form]);
    return;
  }
  // Longest first, so a form that contains another is masked whole.
  let at = 0;
  while (at < list.length && list[at]!.length >= form.length) at++;
  list.splice(at, 0, form);
}

function removeForm(form: string): void {
  const count = formCounts.get(form) ?? 0;
  if (count > 1) {
    formCounts.set(form, count - 1);
    return;
  }
  formCounts.delete(form);
  const key = form.slice(0, PREFIX);
  const list = index.get(key);
  if (!list) return;
  const at = list.indexOf(form);
  if (at >= 0) list.splice(at, 1);
  if (list.length === 0) index.delete(key);
}

/** `text` with every form of every remembered value masked. */
export function redact(text: string): string {
  if (values.size === 0) return text;
  let out = "";
  let last = 0;
  for (let i = 0; i + PREFIX <= text.length; ) {
    const candidates = index.get(text.slice(i, i + PREFIX));
    const hit = candidates?.find((form) => text.startsWith(form, i));
    if (hit) {
      out += text.slice(last, i) + MASK;
      i += hit.length;
      last = i;
    } else {
      i++;
    }
  }
  return last === 0 ? text : out + text.slice(last);
}

/** A JSON-shaped value (a result, a response body) with every string redacted. */
export function redactDeep<T>(value: T): T {
  if (values.size === 0) return value;
  return JSON.parse(redact(JSON.stringify(value))) as T;
}

/** An error whose message (and its causes') is redacted, keeping its type. */
export function redactError<E>(error: E): E {
  for (let e: unknown = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    const message = redact(e.message);
    if (message !== e.message) e.message = message;
  }
  return error;
}

/** For tests: forget every value. */
export function forgetSecrets(): void {
  values.clear();
  index.clear();
  formCounts.clear();
}
