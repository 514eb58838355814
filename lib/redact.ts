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

const values = new Set<string>();
/** Every form of every value, indexed by its first PREFIX characters. */
let index = new Map<string, string[]>();
let dirty = false;

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

/** Remembers secret values for `redact`. Empty and very short values are ignored. */
export function rememberSecret(...secrets: (string | undefined)[]): void {
  for (const v of secrets) {
    if (v === undefined || v.length < MIN_LENGTH || values.has(v)) continue;
    values.add(v);
    dirty = true;
    if (values.size > MAX_VALUES) values.delete(values.values().next().value!);
  }
}

function rebuild(): void {
  const next = new Map<string, string[]>();
  for (const v of values) {
    for (const form of encodings(v)) {
      const key = form.slice(0, PREFIX);
      const list = next.get(key);
      if (list) list.push(form);
      else next.set(key, [form]);
    }
  }
  // Longest first, so a form that contains another is masked whole.
  for (const list of next.values()) list.sort((a, b) => b.length - a.length);
  index = next;
  dirty = false;
}

/** `text` with every form of every remembered value masked. */
export function redact(text: string): string {
  if (values.size === 0) return text;
  if (dirty) rebuild();
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
  index = new Map();
  dirty = false;
}
