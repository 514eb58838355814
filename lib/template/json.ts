// sprig's toJson and fromJson, with Go's encoding/json output: map keys sorted,
// <, > and & escaped, []byte as base64, numbers from fromJson as float64.

import { Buffer } from "node:buffer";
import { GoFloat, type GoMap, kindOf, mapGet, numberOf, sortedKeys } from "./values.ts";

// An escaped backslash is matched first so that `\\ud800` (text) is left alone.
const GO_JSON_ESCAPES = /\\\\|[<>&\u2028\u2029]|\\ud[89ab][0-9a-f]{2}/g;

function jsonString(s: string): string {
  return JSON.stringify(s).replace(GO_JSON_ESCAPES, (m) => {
    if (m === "\\\\") return m;
    // A lone surrogate cannot come from Go bytes; Go would have written U+FFFD.
    if (m.startsWith("\\u")) return "\\ufffd";
    return "\\u" + (m.codePointAt(0) as number).toString(16).padStart(4, "0");
  });
}

function jsonFloat(x: number): string {
  if (!Number.isFinite(x)) throw new Error("unsupported value");
  if (Object.is(x, -0)) return "-0";
  return String(x);
}

function encode(v: unknown): string {
  switch (kindOf(v)) {
    case "nil":
      return "null";
    case "string":
      return jsonString(v as string);
    case "bool":
      return v ? "true" : "false";
    case "int":
      return String(v);
    case "float":
      return jsonFloat(numberOf(v));
    case "bytes":
      return '"' + Buffer.from(v as Uint8Array).toString("base64") + '"';
    case "slice":
      return "[" + (v as unknown[]).map(encode).join(",") + "]";
    case "map": {
      const m = v as GoMap;
      return "{" + sortedKeys(m).map((k) => jsonString(k) + ":" + encode(mapGet(m, k))).join(",") + "}";
    }
    default:
      throw new Error("unsupported type");
  }
}

/** sprig toJson: the JSON text, or "" when the value cannot be encoded. */
export function toJson(v: unknown): string {
  try {
    return encode(v);
  } catch {
    return "";
  }
}

function fromParsed(v: unknown): unknown {
  if (typeof v === "number") return new GoFloat(v);
  if (Array.isArray(v)) return v.map(fromParsed);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = Object.create(null);
    for (const [k, e] of Object.entries(v)) out[k] = fromParsed(e);
    return out;
  }
  return v;
}

/** sprig fromJson: the decoded value, or nil when the text is not JSON. */
export function fromJson(s: string): unknown {
  try {
    return fromParsed(JSON.parse(s));
  } catch {
    return undefined;
  }
}
