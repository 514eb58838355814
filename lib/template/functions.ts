// The functions a template may call: Go's builtins, the sprig functions that make
// sense for connection strings and passwords, and our CNPG escapers. Each has a
// Go-like signature so the engine can check argument counts and types as Go's
// reflection would. `env` and `expandenv` do not exist, as in ESO.

import { createHash } from "node:crypto";
import { pgpassField, pgQuery, pgUserinfo } from "../cnpg/escape.ts";
import {
  base32Decode,
  base32Encode,
  base64Decode,
  base64Encode,
  htmlEscape,
  jsEscape,
  urlQueryEscape,
} from "./encoding.ts";
import { formatValue, goQuote, sprint, sprintf, sprintln } from "./format.ts";
import { toJson, fromJson } from "./json.ts";
import {
  byteLength,
  byteSlice,
  compareStrings,
  fromUtf8,
  type GoMap,
  isAscii,
  isNil,
  kindOf,
  mapGet,
  mapHas,
  mapKeys,
  mapSize,
  numberOf,
  truth,
  typeName,
  utf8Bytes,
} from "./values.ts";

/** The Go type of a parameter, as far as the engine checks it. */
export type ParamType = "any" | "string" | "int" | "float64" | "bool" | "map";

export interface FuncDef {
  readonly name: string;
  readonly params: readonly ParamType[];
  /** Element type of a trailing ...parameter. */
  readonly variadic?: ParamType;
  readonly fn: (args: unknown[]) => unknown;
  /** Its output is safe to paste into some context as is; contextual escaping leaves it alone. */
  readonly escaper?: boolean;
  /** and/or evaluate their arguments lazily; the engine handles them itself. */
  readonly lazy?: boolean;
}

/** A map lookup by `index` found no entry; the engine decides whether the key may be shown. */
export class MissingKeyError extends Error {
  readonly key: string;
  readonly keys: readonly string[];
  /** Which of index's keys failed (0 is the first after the collection). */
  readonly position: number;
  constructor(key: string, keys: readonly string[], position: number) {
    super("map has no entry for key");
    this.key = key;
    this.keys = keys;
    this.position = position;
  }
}

// ---------------------------------------------------------------- helpers

const str = (v: unknown) => v as string;
const int = (v: unknown) => v as number;

/** sprig's strval: strings as they are, []byte as text, anything else as %v. */
function strval(v: unknown): string {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return fromUtf8(v);
  return formatValue(v);
}

/** text/template's evalArgs: one string as is, otherwise Sprint with nil as <no value>. */
function evalArgs(args: unknown[]): string {
  if (args.length === 1 && typeof args[0] === "string") return args[0];
  return sprint(args.map((a) => (isNil(a) ? "<no value>" : a)));
}

// unicode.IsSpace
const GO_SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
const GO_SPACE_ALL = new RegExp(GO_SPACE.source, "g");
const GO_SPACE_EDGES = new RegExp(`^${GO_SPACE.source}+|${GO_SPACE.source}+$`, "g");
const LETTER_OR_DIGIT = /[\p{L}\p{Nd}]/u;

function isSeparator(ch: string): boolean {
  const c = ch.charCodeAt(0);
  if (c < 0x80) return !/[0-9A-Za-z_]/.test(ch);
  if (LETTER_OR_DIGIT.test(ch)) return false;
  return GO_SPACE.test(ch);
}

/** Go's simple case mapping: a rune maps to one rune or stays as it is. */
function mapCase(s: string, upper: boolean): string {
  if (isAscii(s)) return upper ? s.toUpperCase() : s.toLowerCase();
  let out = "";
  for (const ch of s) {
    const m = upper ? ch.toUpperCase() : ch.toLowerCase();
    out += [...m].length === 1 ? m : ch;
  }
  return out;
}

/** strings.Title: upper-case the first letter of each word. */
function title(s: string): string {
  let out = "";
  let prev = " ";
  for (const ch of s) {
    out += isSeparator(prev) ? mapCase(ch, true) : ch;
    prev = ch;
  }
  return out;
}

/** strings.Trim(s, cutset): drop leading and trailing runes found in cutset. */
function trimCutset(s: string, cutset: string): string {
  if (s === "" || cutset === "") return s;
  const set = new Set(cutset);
  const chars = [...s];
  let start = 0;
  let end = chars.length;
  while (start < end && set.has(chars[start] as string)) start++;
  while (end > start && set.has(chars[end - 1] as string)) end--;
  return chars.slice(start, end).join("");
}

/** strings.Split: an empty separator splits into runes. */
function goSplit(s: string, sep: string): string[] {
  return sep === "" ? [...s] : s.split(sep);
}

/** sprig's strslice: the elements of a list as strings, nils left out. */
function strslice(v: unknown): string[] {
  switch (kindOf(v)) {
    case "nil":
      return [];
    case "slice":
      return (v as unknown[]).filter((e) => !isNil(e)).map(strval);
    case "bytes":
      return Array.from(v as Uint8Array, (b) => String(b));
    default:
      return [strval(v)];
  }
}

const MAX_OUTPUT = 16 * 1024 * 1024;

function checkedRepeat(s: string, count: number): string {
  if (count < 0) throw new Error("strings: negative Repeat count");
  if (s.length * count > MAX_OUTPUT) throw new Error("strings: Repeat output length is too large");
  return s.repeat(count);
}

// ---------------------------------------------------------------- comparisons

type BasicKind = "bool" | "int" | "float" | "string" | "other";

function basicKind(v: unknown): BasicKind {
  const k = kindOf(v);
  return k === "bool" || k === "int" || k === "float" || k === "string" ? k : "other";
}

function basicEqual(a: unknown, b: unknown, kind: BasicKind): boolean {
  return kind === "int" || kind === "float" ? numberOf(a) === numberOf(b) : a === b;
}

function incompatible(a: unknown, b: unknown): Error {
  return new Error(`incompatible types for comparison: ${typeName(a)} and ${typeName(b)}`);
}

function eq(args: unknown[]): boolean {
  const [a, ...others] = args;
  if (others.length === 0) throw new Error("missing argument for comparison");
  const k1 = basicKind(a);
  for (const b of others) {
    const k2 = basicKind(b);
    let same: boolean;
    if (k1 !== k2) {
      if (!isNil(a) && !isNil(b)) throw incompatible(a, b);
      same = false;
    } else if (k1 !== "other") {
      same = basicEqual(a, b, k1);
    } else if (isNil(a) || isNil(b)) {
      same = isNil(a) && isNil(b);
    } else {
      throw new Error(`non-comparable type ${typeName(b)}`);
    }
    if (same) return true;
  }
  return false;
}

function lt(a: unknown, b: unknown): boolean {
  const k1 = basicKind(a);
  const k2 = basicKind(b);
  if (k1 === "other" || k2 === "other") throw new Error("invalid type for comparison");
  if (k1 !== k2) throw incompatible(a, b);
  switch (k1) {
    case "bool":
      throw new Error("invalid type for comparison");
    case "string":
      return compareStrings(a as string, b as string) < 0;
    default:
      return numberOf(a) < numberOf(b);
  }
}

// ---------------------------------------------------------------- index and len

function indexOf(args: unknown[]): unknown {
  let item = args[0];
  if (isNil(item)) throw new Error("index of untyped nil");
  for (let i = 1; i < args.length; i++) {
    const idx = args[i];
    if (isNil(item)) throw new Error("index of nil pointer");
    const kind = kindOf(item);
    switch (kind) {
      case "slice":
      case "bytes":
      case "string": {
        if (kindOf(idx) !== "int") {
          throw new Error(isNil(idx) ? "cannot index slice/array with nil" : `cannot index slice/array with type ${typeName(idx)}`);
        }
        const x = numberOf(idx);
        if (kind === "string") {
          const bytes = utf8Bytes(item as string);
          if (x < 0 || x >= bytes.length) throw new Error("index out of range");
          item = bytes[x];
        } else {
          const list = item as ArrayLike<unknown>;
          if (x < 0 || x >= list.length) throw new Error("index out of range");
          item = list[x];
        }
        break;
      }
      case "map": {
        if (typeof idx !== "string") throw new Error(`value has type ${typeName(idx)}; should be string`);
        const m = item as GoMap;
        // Go returns the zero value here; we follow missingkey=error like field access,
        // so that a typo in a key fails instead of writing "<no value>".
        if (!mapHas(m, idx)) throw new MissingKeyError(idx, mapKeys(m), i - 1);
        item = mapGet(m, idx);
        break;
      }
      default:
        throw new Error(`can't index item of type ${typeName(item)}`);
    }
  }
  return item;
}

function length(v: unknown): number {
  switch (kindOf(v)) {
    case "string":
      return byteLength(v as string);
    case "slice":
    case "bytes":
      return (v as ArrayLike<unknown>).length;
    case "map":
      return mapSize(v as GoMap);
    case "nil":
      throw new Error("len of nil pointer");
    default:
      throw new Error(`len of type ${typeName(v)}`);
  }
}

// ---------------------------------------------------------------- the table

const defs: FuncDef[] = [];

function def(
  name: string,
  params: readonly ParamType[],
  fn: (args: unknown[]) => unknown,
  extra: { variadic?: ParamType; escaper?: boolean; lazy?: boolean } = {},
): void {
  defs.push({ name, params, fn, ...extra });
}

// Go's text/template builtins.
def("and", ["any"], () => undefined, { variadic: "any", lazy: true });
def("or", ["any"], () => undefined, { variadic: "any", lazy: true });
def("not", ["any"], ([v]) => !truth(v));
def("len", ["any"], ([v]) => length(v));
def("index", ["any"], indexOf, { variadic: "any" });
def("print", [], (args) => sprint(args), { variadic: "any" });
def("println", [], (args) => sprintln(args), { variadic: "any" });
def("printf", ["string"], ([format, ...args]) => sprintf(str(format), args), { variadic: "any" });
def("urlquery", [], (args) => urlQueryEscape(evalArgs(args)), { variadic: "any", escaper: true });
def("html", [], (args) => htmlEscape(evalArgs(args)), { variadic: "any" });
def("js", [], (args) => jsEscape(evalArgs(args)), { variadic: "any" });
def("eq", ["any"], eq, { variadic: "any" });
def("ne", ["any", "any"], ([a, b]) => !eq([a, b]));
def("lt", ["any", "any"], ([a, b]) => lt(a, b));
def("le", ["any", "any"], ([a, b]) => lt(a, b) || eq([a, b]));
def("gt", ["any", "any"], ([a, b]) => !(lt(a, b) || eq([a, b])));
def("ge", ["any", "any"], ([a, b]) => !lt(a, b));

// sprig: encodings.
def("b64enc", ["string"], ([s]) => base64Encode(str(s)));
def("b64dec", ["string"], ([s]) => {
  // sprig returns the decoder's error text as the result instead of failing.
  const { bytes, error } = base64Decode(str(s));
  return error ?? fromUtf8(bytes);
});
def("b32enc", ["string"], ([s]) => base32Encode(str(s)));
def("b32dec", ["string"], ([s]) => {
  const { bytes, error } = base32Decode(str(s));
  return error ?? fromUtf8(bytes);
});
def("sha256sum", ["string"], ([s]) => createHash("sha256").update(utf8Bytes(str(s))).digest("hex"));
def("sha1sum", ["string"], ([s]) => createHash("sha1").update(utf8Bytes(str(s))).digest("hex"));
def("toJson", ["any"], ([v]) => toJson(v));
def("fromJson", ["string"], ([s]) => fromJson(str(s)));

// sprig: strings.
def("quote", [], (args) => args.filter((a) => !isNil(a)).map((a) => goQuote(strval(a))).join(" "), {
  variadic: "any",
});
def("squote", [], (args) => args.filter((a) => !isNil(a)).map((a) => "'" + formatValue(a) + "'").join(" "), {
  variadic: "any",
});
def("upper", ["string"], ([s]) => mapCase(str(s), true));
def("lower", ["string"], ([s]) => mapCase(str(s), false));
def("title", ["string"], ([s]) => title(str(s)));
def("trim", ["string"], ([s]) => str(s).replace(GO_SPACE_EDGES, ""));
def("trimAll", ["string", "string"], ([cutset, s]) => trimCutset(str(s), str(cutset)));
def("trimall", ["string", "string"], ([cutset, s]) => trimCutset(str(s), str(cutset)));
def("trimPrefix", ["string", "string"], ([prefix, s]) =>
  str(s).startsWith(str(prefix)) ? str(s).slice(str(prefix).length) : str(s),
);
def("trimSuffix", ["string", "string"], ([suffix, s]) =>
  str(suffix) !== "" && str(s).endsWith(str(suffix)) ? str(s).slice(0, str(s).length - str(suffix).length) : str(s),
);
def("nospace", ["string"], ([s]) => str(s).replace(GO_SPACE_ALL, ""));
def("replace", ["string", "string", "string"], ([from, to, s]) => {
  if (str(from) === "") {
    // strings.Replace with an empty old string inserts `to` around every rune.
    const runes = [...str(s)];
    return str(to) + runes.map((r) => r + str(to)).join("");
  }
  return str(s).split(str(from)).join(str(to));
});
def("contains", ["string", "string"], ([sub, s]) => str(s).includes(str(sub)));
def("hasPrefix", ["string", "string"], ([prefix, s]) => str(s).startsWith(str(prefix)));
def("hasSuffix", ["string", "string"], ([suffix, s]) => str(s).endsWith(str(suffix)));
def("repeat", ["int", "string"], ([count, s]) => checkedRepeat(str(s), int(count)));
def("substr", ["int", "int", "string"], ([start, end, s]) => {
  const len = byteLength(str(s));
  let from = int(start);
  let to = int(end);
  if (from < 0) from = 0;
  else if (to < 0 || to > len) to = len;
  if (from > to || to > len) throw new Error("slice bounds out of range");
  return byteSlice(str(s), from, to);
});
def("trunc", ["int", "string"], ([count, s]) => {
  const len = byteLength(str(s));
  const c = int(count);
  if (c < 0 && len + c > 0) return byteSlice(str(s), len + c, len);
  if (c >= 0 && len > c) return byteSlice(str(s), 0, c);
  return str(s);
});
def("indent", ["int", "string"], ([n, s]) => {
  const pad = checkedRepeat(" ", int(n));
  return pad + str(s).replaceAll("\n", "\n" + pad);
});
def("nindent", ["int", "string"], ([n, s]) => {
  const pad = checkedRepeat(" ", int(n));
  return "\n" + pad + str(s).replaceAll("\n", "\n" + pad);
});
def("cat", [], (args) => args.filter((a) => !isNil(a)).map(formatValue).join(" "), { variadic: "any" });
def("toString", ["any"], ([v]) => strval(v));
def("join", ["string", "any"], ([sep, list]) => strslice(list).join(str(sep)));
def("splitList", ["string", "string"], ([sep, s]) => goSplit(str(s), str(sep)));
def("split", ["string", "string"], ([sep, s]) => {
  const parts = goSplit(str(s), str(sep));
  const out: Record<string, unknown> = Object.create(null);
  parts.forEach((p, i) => {
    out["_" + i] = p;
  });
  return out;
});

// sprig: defaults, lists and dicts.
def("default", ["any"], ([d, ...given]) => (given.length === 0 || !truth(given[0]) ? d : given[0]), {
  variadic: "any",
});
def("empty", ["any"], ([v]) => !truth(v));
def("coalesce", [], (args) => args.find((a) => truth(a)), { variadic: "any" });
def("ternary", ["any", "any", "bool"], ([a, b, cond]) => (cond ? a : b));
def("list", [], (args) => args, { variadic: "any" });
def("dict", [], (args) => {
  const out: Record<string, unknown> = Object.create(null);
  for (let i = 0; i < args.length; i += 2) out[strval(args[i])] = i + 1 < args.length ? args[i + 1] : "";
  return out;
}, { variadic: "any" });
def("hasKey", ["map", "string"], ([m, key]) => !isNil(m) && mapHas(m as GoMap, str(key)));
def("get", ["map", "string"], ([m, key]) => (!isNil(m) && mapHas(m as GoMap, str(key)) ? mapGet(m as GoMap, str(key)) : ""));

// Ours: escapers for the places a value lands in a CNPG connection string.
def("pgUserinfo", ["any"], ([v]) => pgUserinfo(evalArgs([v])), { escaper: true });
def("pgQuery", ["any"], ([v]) => pgQuery(evalArgs([v])), { escaper: true });
def("pgpassField", ["any"], ([v]) => pgpassField(evalArgs([v])), { escaper: true });

const table = new Map<string, FuncDef>(defs.map((d) => [d.name, d]));

export function lookupFunction(name: string): FuncDef | undefined {
  return table.get(name);
}

/** Names of every function a template may call. */
export const templateFunctions: ReadonlySet<string> = new Set(table.keys());

/** True for functions whose output is already escaped for some context. */
export function isEscaper(name: string): boolean {
  return table.get(name)?.escaper === true;
}

/** Functions ESO removes from its templates so they cannot read the controller's environment. */
export const REMOVED_FOR_SECURITY: ReadonlySet<string> = new Set(["env", "expandenv"]);

// Functions ESO's templates offer (sprig and its own) that we do not implement, so
// that the error can say so instead of suggesting a typo.
const NOT_IMPLEMENTED = new Set(
  (
    "ago date dateInZone date_in_zone dateModify date_modify duration durationRound htmlDate htmlDateInZone " +
    "mustDateModify must_date_modify mustToDate now toDate unixEpoch abbrev abbrevboth untitle initials " +
    "randAlphaNum randAlpha randAscii randNumeric swapcase shuffle snakecase camelcase kebabcase wrap wrapWith " +
    "plural adler32sum atoi int int64 float64 seq toDecimal splitn toStrings until untilStep add1 add sub div " +
    "mod mul randInt add1f addf subf divf mulf biggest max min maxf minf ceil floor round sortAlpha all any " +
    "compact mustCompact toPrettyJson toRawJson mustFromJson mustToJson mustToPrettyJson mustToRawJson deepCopy " +
    "mustDeepCopy typeOf typeIs typeIsLike kindOf kindIs deepEqual getHostByName base dir clean ext isAbs osBase " +
    "osClean osDir osExt osIsAbs tuple set unset pluck keys pick omit merge mergeOverwrite mustMerge " +
    "mustMergeOverwrite values append push mustAppend mustPush prepend mustPrepend first mustFirst rest mustRest " +
    "last mustLast initial mustInitial reverse mustReverse uniq mustUniq without mustWithout has mustHas slice " +
    "mustSlice concat dig chunk mustChunk bcrypt htpasswd genPrivateKey derivePassword buildCustomCert genCA " +
    "genCAWithKey genSelfSignedCert genSelfSignedCertWithKey genSignedCert genSignedCertWithKey encryptAES " +
    "decryptAES randBytes uuidv4 semver semverCompare fail regexMatch mustRegexMatch regexFindAll " +
    "mustRegexFindAll regexFind mustRegexFind regexReplaceAll mustRegexReplaceAll regexReplaceAllLiteral " +
    "mustRegexReplaceAllLiteral regexSplit mustRegexSplit regexQuoteMeta urlParse urlJoin call " +
    "pkcs12key pkcs12keyPass pkcs12cert pkcs12certPass pemToPkcs12 pemToPkcs12Pass fullPemToPkcs12 " +
    "fullPemToPkcs12Pass filterPEM filterCertChain jwkPublicKeyPem jwkPrivateKeyPem toYaml fromYaml getSecretKey"
  ).split(" "),
);

export function isKnownButNotImplemented(name: string): boolean {
  return NOT_IMPLEMENTED.has(name);
}
