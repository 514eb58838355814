// How JavaScript values stand in for Go values inside the template engine.
// strings, booleans, integers (integral numbers, bigints), float64 (non-integral
// numbers and GoFloat), slices (arrays), []byte (Uint8Array), maps (Map or plain
// objects) and nil (undefined, null). Go's printing and comparison rules depend on
// the kind, so every function asks kindOf() first.

/**
 * A float64 whose value happens to be integral (the literal `1.0`, a number from
 * fromJson): Go prints and compares it as a float, not as an int.
 */
export class GoFloat {
  readonly value: number;
  constructor(value: number) {
    this.value = value;
  }
}

export type Kind = "nil" | "string" | "bool" | "int" | "float" | "slice" | "bytes" | "map" | "other";

export type GoMap = Map<unknown, unknown> | Record<string, unknown>;

export function kindOf(v: unknown): Kind {
  switch (typeof v) {
    case "string":
      return "string";
    case "boolean":
      return "bool";
    case "number":
      return Number.isInteger(v) ? "int" : "float";
    case "bigint":
      return "int";
    case "undefined":
      return "nil";
    case "object":
      if (v === null) return "nil";
      if (v instanceof GoFloat) return "float";
      if (Array.isArray(v)) return "slice";
      if (v instanceof Uint8Array) return "bytes";
      return "map";
    default:
      return "other";
  }
}

export function isNil(v: unknown): v is null | undefined {
  return v === undefined || v === null;
}

/** The numeric value of an int or float kind. */
export function numberOf(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (v instanceof GoFloat) return v.value;
  return Number.NaN;
}

/** Go's name for the type of a value, as its error messages print it. */
export function typeName(v: unknown): string {
  switch (kindOf(v)) {
    case "nil":
      return "<nil>";
    case "string":
      return "string";
    case "bool":
      return "bool";
    case "int":
      return "int";
    case "float":
      return "float64";
    case "slice":
      return "[]interface {}";
    case "bytes":
      return "[]uint8";
    case "map":
      return "map[string]interface {}";
    default:
      return typeof v;
  }
}

export function mapKeys(m: GoMap): string[] {
  if (m instanceof Map) {
    const keys: string[] = [];
    for (const k of m.keys()) if (typeof k === "string") keys.push(k);
    return keys;
  }
  return Object.keys(m);
}

export function mapHas(m: GoMap, key: string): boolean {
  return m instanceof Map ? m.has(key) : Object.hasOwn(m, key);
}

export function mapGet(m: GoMap, key: string): unknown {
  if (m instanceof Map) return m.get(key);
  return Object.hasOwn(m, key) ? m[key] : undefined;
}

export function mapSize(m: GoMap): number {
  return mapKeys(m).length;
}

/** Orders strings by Unicode code point, which is Go's byte order on UTF-8. */
export function compareStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let ca = a.charCodeAt(i);
    let cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // Surrogates (astral code points) sort after U+E000..U+FFFF in code point order.
    if (ca >= 0xd800 && cb >= 0xd800) {
      ca = ca >= 0xe000 ? ca - 0x800 : ca + 0x2000;
      cb = cb >= 0xe000 ? cb - 0x800 : cb + 0x2000;
    }
    return ca - cb;
  }
  return a.length - b.length;
}

/** Map keys in the order Go's fmt and range visit them. */
export function sortedKeys(m: GoMap): string[] {
  return mapKeys(m).sort(compareStrings);
}

/** Go's template truth: false, 0, nil and empty strings, slices and maps are false. */
export function truth(v: unknown): boolean {
  switch (kindOf(v)) {
    case "nil":
      return false;
    case "bool":
      return v as boolean;
    case "string":
      return (v as string).length > 0;
    case "int":
    case "float":
      return numberOf(v) !== 0;
    case "slice":
    case "bytes":
      return (v as ArrayLike<unknown>).length > 0;
    case "map":
      return mapSize(v as GoMap) > 0;
    default:
      return true;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function utf8Bytes(s: string): Uint8Array {
  return encoder.encode(s);
}

/** Decodes UTF-8; invalid sequences become U+FFFD, as when Go bytes reach a JS string. */
export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

const ASCII_ONLY = /^[\x00-\x7f]*$/;

export function isAscii(s: string): boolean {
  return ASCII_ONLY.test(s);
}

/** len() of a Go string: its UTF-8 byte count. */
export function byteLength(s: string): number {
  return isAscii(s) ? s.length : encoder.encode(s).length;
}

/** s[start:end] on the UTF-8 bytes of s, as Go slices strings. */
export function byteSlice(s: string, start: number, end: number): string {
  if (isAscii(s)) return s.slice(start, end);
  return fromUtf8(encoder.encode(s).subarray(start, end));
}
