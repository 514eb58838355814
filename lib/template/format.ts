// The part of Go's fmt and strconv that templates can observe: %v printing of
// values (print, println, quote, ...), strconv.Quote, and printf with the verbs
// ESO templates use — %s %d %v %q %x %X and %% — with Go's flags, width and
// precision. Any other verb, %#v, argument indexes and `*` widths are refused:
// when the template is parsed if the format is a literal (checkFormat), else when
// printf runs. Every output kept is Go's, checked against go-reference/printf.json.

import { TemplateError } from "../errors.ts";
import { type GoMap, isNil, kindOf, mapGet, numberOf, sortedKeys, typeName, utf8Bytes } from "./values.ts";

/** The verbs printf keeps; %X is %x's upper-case sibling, as Go pairs them. */
const PRINTF_VERBS = ["s", "d", "v", "q", "x", "X"] as const;
const KEPT: ReadonlySet<string> = new Set(PRINTF_VERBS);
const SUPPORTED = "printf here supports %s %d %v %q %x %X and %%";

interface Flags {
  readonly plus: boolean;
  readonly minus: boolean;
  readonly sharp: boolean;
  readonly space: boolean;
  readonly zero: boolean;
  /** -1 when absent. */
  readonly wid: number;
  /** -1 when absent. */
  readonly prec: number;
}

const PLAIN: Flags = Object.freeze({ plus: false, minus: false, sharp: false, space: false, zero: false, wid: -1, prec: -1 });

const LOWER_HEX = "0123456789abcdef";
const UPPER_HEX = "0123456789ABCDEF";

// ---------------------------------------------------------------- strconv

const PRINTABLE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u;

/** unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space. */
export function isPrint(cp: number): boolean {
  if (cp < 0x80) return cp >= 0x20 && cp < 0x7f;
  return PRINTABLE.test(String.fromCodePoint(cp));
}

/** Code points of a string; a lone surrogate reads as U+FFFD, as it would after UTF-8 encoding. */
function* codePoints(s: string): Generator<number> {
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number;
    yield cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp;
  }
}

function hexPad(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

function escapeRune(cp: number, quote: number, asciiOnly: boolean): string {
  if (cp === quote || cp === 0x5c) return "\\" + String.fromCodePoint(cp);
  if (asciiOnly ? cp < 0x80 && isPrint(cp) : isPrint(cp)) return String.fromCodePoint(cp);
  switch (cp) {
    case 0x07:
      return "\\a";
    case 0x08:
      return "\\b";
    case 0x0c:
      return "\\f";
    case 0x0a:
      return "\\n";
    case 0x0d:
      return "\\r";
    case 0x09:
      return "\\t";
    case 0x0b:
      return "\\v";
  }
  if (cp < 0x20 || cp === 0x7f) return "\\x" + hexPad(cp, 2);
  if (cp < 0x10000) return "\\u" + hexPad(cp, 4);
  return "\\U" + hexPad(cp, 8);
}

/** strconv.Quote (or QuoteToASCII). */
export function goQuote(s: string, asciiOnly = false): string {
  let out = '"';
  for (const cp of codePoints(s)) out += escapeRune(cp, 0x22, asciiOnly);
  return out + '"';
}

/** strconv.QuoteRune (or QuoteRuneToASCII); an invalid code point quotes as U+FFFD. */
function goQuoteRune(cp: number, asciiOnly: boolean): string {
  const r = cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0xfffd : cp;
  return "'" + escapeRune(r, 0x27, asciiOnly) + "'";
}

function canBackquote(s: string): boolean {
  for (const cp of codePoints(s)) {
    if (cp === 0xfeff || cp === 0xfffd) return false;
    if ((cp < 0x20 && cp !== 0x09) || cp === 0x60 || cp === 0x7f) return false;
  }
  return true;
}

// ---------------------------------------------------------------- padding

function runeCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** fmt's writePadding: zeros only on the left, and only when asked for. */
function padding(n: number, f: Flags): string {
  return n <= 0 ? "" : (f.zero && !f.minus ? "0" : " ").repeat(n);
}

function pad(s: string, f: Flags): string {
  if (f.wid <= 0) return s;
  const fill = padding(f.wid - runeCount(s), f);
  return f.minus ? s + fill : fill + s;
}

function padSpaces(s: string, f: Flags): string {
  return pad(s, { ...f, zero: false });
}

function truncate(s: string, f: Flags): string {
  if (f.prec < 0) return s;
  let out = "";
  let n = 0;
  for (const ch of s) {
    if (n++ >= f.prec) break;
    out += ch;
  }
  return out;
}

// ---------------------------------------------------------------- numbers

function fmtInteger(v: number | bigint, base: 10 | 16, verb: string, f: Flags): string {
  let big = typeof v === "bigint" ? v : BigInt(Math.trunc(v));
  const negative = big < 0n;
  if (negative) big = -big;
  // Two ways to ask for leading zeros: %.3d and %03d; with both, the width pads with spaces.
  let prec = 0;
  if (f.prec >= 0) {
    prec = f.prec;
    if (prec === 0 && big === 0n) return padding(f.wid, { ...f, zero: false });
  } else if (f.zero && !f.minus && f.wid >= 0) {
    prec = f.wid;
    if (negative || f.plus || f.space) prec--;
  }
  let digits = big.toString(base);
  if (verb === "X") digits = digits.toUpperCase();
  digits = digits.padStart(prec, "0");
  if (f.sharp && base === 16) digits = (verb === "X" ? "0X" : "0x") + digits;
  const sign = negative ? "-" : f.plus ? "+" : f.space ? " " : "";
  return padSpaces(sign + digits, f);
}

interface Digits {
  /** Significant decimal digits without trailing zeros ("" for zero). */
  readonly d: string;
  /** Position of the decimal point relative to d. */
  readonly dp: number;
}

/** The exact decimal digits of a finite x > 0: x is m·2^e, and m·2^e = m·5^-e / 10^-e when e < 0. */
function exactDigits(x: number): Digits {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  const m = biased === 0 ? fraction : fraction | (1n << 52n);
  const e = biased === 0 ? -1074 : biased - 1075;
  const d = e >= 0 ? (m << BigInt(e)).toString() : (m * 5n ** BigInt(-e)).toString();
  return { d: d.replace(/0+$/, ""), dp: e >= 0 ? d.length : d.length + e };
}

/**
 * Decimal digits of x > 0: the shortest that round-trip, or `sig` significant digits
 * rounded half to even from the exact value, as strconv does (JavaScript's
 * toExponential rounds a tie such as 2.5 up, and stops at 100 digits).
 */
function digitsOf(x: number, sig?: number): Digits {
  if (sig === undefined) {
    const [mant, exp] = x.toExponential().split("e") as [string, string];
    return { d: mant.replace(".", "").replace(/0+$/, ""), dp: Number(exp) + 1 };
  }
  const exact = exactDigits(x);
  if (exact.d.length <= sig) return exact;
  const next = exact.d[sig] as string;
  const kept = exact.d.slice(0, sig);
  const tie = next === "5" && exact.d.length === sig + 1;
  const up = next > "5" || (next === "5" && (!tie || Number(kept[sig - 1]) % 2 === 1));
  if (!up) return { d: kept.replace(/0+$/, ""), dp: exact.dp };
  const rounded = (BigInt(kept) + 1n).toString();
  // 999 rounds up to 1000: one more digit before the point.
  return { d: rounded.slice(0, sig).replace(/0+$/, ""), dp: exact.dp + rounded.length - sig };
}

function fmtE(dg: Digits, prec: number): string {
  let s = dg.d[0] ?? "0";
  if (prec > 0) s += "." + dg.d.slice(1, 1 + prec).padEnd(prec, "0");
  const exp = dg.d === "" ? 0 : dg.dp - 1;
  const abs = Math.abs(exp);
  return s + "e" + (exp < 0 ? "-" : "+") + (abs < 10 ? "0" + abs : String(abs));
}

function fmtF(dg: Digits, prec: number): string {
  let s = dg.dp > 0 ? dg.d.slice(0, dg.dp).padEnd(dg.dp, "0") : "0";
  if (prec > 0) {
    s += ".";
    for (let i = 0; i < prec; i++) {
      const j = dg.dp + i;
      s += j >= 0 && j < dg.d.length ? dg.d[j] : "0";
    }
  }
  return s;
}

/** strconv.FormatFloat(x, 'g', prec, 64) of x >= 0; prec -1 means the shortest digits. */
function formatG(x: number, prec: number): string {
  if (x === 0) return "0";
  const shortest = prec < 0;
  let p = prec === 0 ? 1 : prec;
  const dg = shortest ? digitsOf(x) : digitsOf(x, p);
  const nd = dg.d.length;
  if (shortest) p = nd;
  let eprec = p;
  if (eprec > nd && nd >= dg.dp) eprec = nd;
  // %e is used if the exponent is less than -4 or at least the precision (6 for the shortest).
  if (shortest) eprec = 6;
  const exp = dg.dp - 1;
  if (exp < -4 || exp >= eprec) return fmtE(dg, Math.min(p, nd) - 1);
  return fmtF(dg, p > dg.dp ? Math.max(nd - dg.dp, 0) : 0);
}

/** The # flag: always a decimal point, and %g's trailing zeros kept. */
function sharpG(body: string, prec: number): string {
  const ePos = body.indexOf("e");
  let mant = ePos < 0 ? body : body.slice(0, ePos);
  const tail = ePos < 0 ? "" : body.slice(ePos);
  if (!mant.includes(".")) mant += ".";
  const want = prec < 0 ? 6 : prec === 0 ? 1 : prec;
  const sig = mant.replace(".", "").replace(/^0+/, "").length || 1;
  return mant + "0".repeat(Math.max(want - sig, 0)) + tail;
}

/**
 * %v of a float64: %g with the shortest digits unless a precision is given. Flags that
 * %v clears (+, #) still reach here from %!verb(float64=...), as they do in Go.
 */
function fmtFloat(x: number, f: Flags): string {
  if (Number.isNaN(x)) return padSpaces(f.plus ? "+NaN" : f.space ? " NaN" : "NaN", f);
  const negative = x < 0 || Object.is(x, -0);
  // Go keeps the sign of an infinity even for %v, and never pads it with zeros.
  if (!Number.isFinite(x)) return padSpaces((negative ? "-" : f.space && !f.plus ? " " : "+") + "Inf", f);
  let body = formatG(Math.abs(x), f.prec);
  if (f.sharp) body = sharpG(body, f.prec);
  const sign = negative ? "-" : f.plus ? "+" : f.space ? " " : "";
  if (sign !== "" && f.zero && !f.minus && f.wid > sign.length + body.length) {
    return sign + "0".repeat(f.wid - sign.length - body.length) + body;
  }
  return pad(sign + body, f);
}

// ---------------------------------------------------------------- strings and bytes

function fmtHex(bytes: Uint8Array, upper: boolean, f: Flags): string {
  const digits = upper ? UPPER_HEX : LOWER_HEX;
  const prefix = upper ? "0X" : "0x";
  const length = f.prec >= 0 && f.prec < bytes.length ? f.prec : bytes.length;
  if (length === 0) return padding(f.wid, f);
  let out = f.sharp ? prefix : "";
  for (let i = 0; i < length; i++) {
    if (f.space && i > 0) out += f.sharp ? " " + prefix : " ";
    const b = bytes[i] as number;
    out += (digits[b >> 4] as string) + (digits[b & 15] as string);
  }
  return pad(out, f);
}

function fmtQ(s: string, f: Flags): string {
  const t = truncate(s, f);
  if (f.sharp && canBackquote(t)) return pad("`" + t + "`", f);
  return pad(goQuote(t, f.plus), f);
}

// ---------------------------------------------------------------- any value

/** Go's %!verb(type=value), the value printed with the directive's flags, as Go does. */
function badVerb(verb: string, arg: unknown, f: Flags): string {
  if (isNil(arg)) return "%!" + verb + "(<nil>)";
  return "%!" + verb + "(" + typeName(arg) + "=" + printArg(arg, "v", f, 0) + ")";
}

function printArg(arg: unknown, verb: string, f: Flags, depth: number): string {
  if (isNil(arg)) {
    if (depth > 0) return "<nil>";
    return verb === "v" ? pad("<nil>", f) : badVerb(verb, arg, f);
  }
  switch (kindOf(arg)) {
    case "bool":
      return verb === "v" ? pad(arg ? "true" : "false", f) : badVerb(verb, arg, f);
    case "int": {
      const v = arg as number | bigint;
      switch (verb) {
        case "v":
        case "d":
          return fmtInteger(v, 10, verb, f);
        case "x":
        case "X":
          return fmtInteger(v, 16, verb, f);
        case "q":
          return pad(goQuoteRune(Number(v), f.plus), f);
        default:
          return badVerb(verb, arg, f);
      }
    }
    case "float":
      if (verb === "v") return fmtFloat(numberOf(arg), f);
      // Go prints a hexadecimal float (0x1.4p+01); nothing a connection string wants.
      if (verb === "x" || verb === "X") {
        throw new TemplateError(`%${verb} of a float64 is not supported (Go prints a hexadecimal float); %x takes integers and strings`);
      }
      return badVerb(verb, arg, f);
    case "string": {
      const s = arg as string;
      switch (verb) {
        case "v":
        case "s":
          return pad(truncate(s, f), f);
        case "x":
        case "X":
          return fmtHex(utf8Bytes(s), verb === "X", f);
        case "q":
          return fmtQ(s, f);
        default:
          return badVerb(verb, arg, f);
      }
    }
    case "bytes": {
      const bytes = arg as Uint8Array;
      switch (verb) {
        case "s":
          return pad(truncate(new TextDecoder().decode(bytes), f), f);
        case "q":
          return fmtQ(new TextDecoder().decode(bytes), f);
        case "x":
        case "X":
          return fmtHex(bytes, verb === "X", f);
        default:
          return "[" + Array.from(bytes, (b) => printArg(b, verb, f, depth + 1)).join(" ") + "]";
      }
    }
    case "slice":
      return "[" + (arg as unknown[]).map((e) => printArg(e, verb, f, depth + 1)).join(" ") + "]";
    case "map": {
      const m = arg as GoMap;
      const parts = sortedKeys(m).map(
        (k) => printArg(k, verb, f, depth + 1) + ":" + printArg(mapGet(m, k), verb, f, depth + 1),
      );
      return "map[" + parts.join(" ") + "]";
    }
    default:
      return pad(String(arg), f);
  }
}

/** fmt's %v of one value (nil prints as `<nil>`). */
export function formatValue(v: unknown): string {
  if (typeof v === "string") return v;
  return printArg(v, "v", PLAIN, 0);
}

/** fmt.Sprint: spaces go between operands when neither is a string. */
export function sprint(args: readonly unknown[]): string {
  let out = "";
  let prevString = false;
  for (let i = 0; i < args.length; i++) {
    const isString = typeof args[i] === "string";
    if (i > 0 && !isString && !prevString) out += " ";
    out += formatValue(args[i]);
    prevString = isString;
  }
  return out;
}

/** fmt.Sprintln: spaces always go between operands, and a newline at the end. */
export function sprintln(args: readonly unknown[]): string {
  return args.map(formatValue).join(" ") + "\n";
}

// ---------------------------------------------------------------- printf

interface Directive {
  readonly verb: string;
  readonly flags: Flags;
}

/** A format that ends inside a directive: Go prints %!(NOVERB). */
const NO_VERB: unique symbol = Symbol("NOVERB");

/** Literal text, one verb, or the end of a format inside a directive. */
type Piece = string | Directive | typeof NO_VERB;

/** Why a format is refused: `at` is the UTF-16 offset in the format of what is refused. */
export interface Refusal {
  readonly at: number;
  readonly message: string;
}

function parseNum(format: string, start: number): [num: number, found: boolean, next: number] {
  let i = start;
  let num = 0;
  while (i < format.length && format.charCodeAt(i) >= 0x30 && format.charCodeAt(i) <= 0x39) {
    if (num > 1e6) return [0, false, format.length]; // Go's tooLarge: the directive then has no verb
    num = num * 10 + format.charCodeAt(i) - 0x30;
    i++;
  }
  return [num, i > start, i];
}

function refusal(format: string, at: number, what: string): Refusal {
  const character = runeCount(format.slice(0, at)) + 1;
  return { at, message: `${what} at character ${character} of the format is not supported; ${SUPPORTED}` };
}

/** Splits a format as Go's doPrintf reads it, or says what in it is refused. */
function scanFormat(format: string): Piece[] | Refusal {
  const end = format.length;
  const pieces: Piece[] = [];
  let i = 0;
  while (i < end) {
    const pct = format.indexOf("%", i);
    if (pct < 0) {
      pieces.push(format.slice(i));
      break;
    }
    if (pct > i) pieces.push(format.slice(i, pct));
    i = pct + 1;
    let plus = false;
    let minus = false;
    let sharp = false;
    let space = false;
    let zero = false;
    for (; i < end; i++) {
      const c = format[i];
      if (c === "#") sharp = true;
      else if (c === "0") zero = true;
      else if (c === "+") plus = true;
      else if (c === "-") minus = true;
      else if (c === " ") space = true;
      else break;
    }
    const [wid, widFound, afterWid] = parseNum(format, i);
    i = afterWid;
    let prec = -1;
    if (i + 1 < end && format[i] === ".") {
      i++;
      // No digits is precision 0, as in Go.
      if (format[i] !== "*" && format[i] !== "[") [prec, , i] = parseNum(format, i);
    }
    if (format[i] === "[") return refusal(format, i, "an argument index (%[n]verb)");
    if (format[i] === "*") return refusal(format, i, "a width or precision taken from an argument (*)");
    if (i >= end) {
      pieces.push(NO_VERB);
      break;
    }
    const verb = String.fromCodePoint(format.codePointAt(i) as number);
    if (verb === "%") pieces.push("%");
    else if (!KEPT.has(verb)) return refusal(format, i, `the verb %${verb}`);
    else if (verb === "v" && sharp) return refusal(format, i, "%#v (Go-syntax values)");
    // %v takes + to mean field names, which plain values do not have.
    else pieces.push({ verb, flags: { plus: plus && verb !== "v", minus, sharp, space, zero, wid: widFound ? wid : -1, prec } });
    i += verb.length;
  }
  return pieces;
}

/** Why printf would refuse this format, or undefined; the parser asks when the format is a literal. */
export function checkFormat(format: string): Refusal | undefined {
  const scanned = scanFormat(format);
  return Array.isArray(scanned) ? undefined : scanned;
}

/** fmt.Sprintf for the verbs kept, with Go's flags, width, precision and error forms. */
export function sprintf(format: string, args: readonly unknown[]): string {
  const scanned = scanFormat(format);
  if (!Array.isArray(scanned)) throw new TemplateError(scanned.message);
  let out = "";
  let argNum = 0;
  for (const piece of scanned) {
    if (piece === NO_VERB) out += "%!(NOVERB)";
    else if (typeof piece === "string") out += piece;
    else if (argNum >= args.length) out += "%!" + piece.verb + "(MISSING)";
    else out += printArg(args[argNum++], piece.verb, piece.flags, 0);
  }
  if (argNum < args.length) {
    const extra = args.slice(argNum).map((a) => (isNil(a) ? "<nil>" : typeName(a) + "=" + formatValue(a)));
    out += "%!(EXTRA " + extra.join(", ") + ")";
  }
  return out;
}
