// The part of Go's fmt and strconv that templates can observe: %v printing of
// values, Sprint/Sprintln/Sprintf, and strconv.Quote.

import {
  type GoMap,
  isNil,
  kindOf,
  numberOf,
  sortedKeys,
  mapGet,
  typeName,
  utf8Bytes,
} from "./values.ts";

interface Flags {
  plus: boolean;
  minus: boolean;
  sharp: boolean;
  space: boolean;
  zero: boolean;
  /** %#v: Go syntax. Approximated by %v, except that strings are quoted. */
  sharpV: boolean;
  /** -1 when absent. */
  wid: number;
  /** -1 when absent. */
  prec: number;
}

function newFlags(): Flags {
  return { plus: false, minus: false, sharp: false, space: false, zero: false, sharpV: false, wid: -1, prec: -1 };
}

const PLAIN: Flags = Object.freeze(newFlags());

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

/** strconv.QuoteRune (or QuoteRuneToASCII). */
export function goQuoteRune(cp: number, asciiOnly = false): string {
  const r = validRune(cp);
  return "'" + escapeRune(r, 0x27, asciiOnly) + "'";
}

function validRune(cp: number): number {
  return cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0xfffd : cp;
}

function canBackquote(s: string): boolean {
  for (const cp of codePoints(s)) {
    if (cp === 0xfeff || cp === 0xfffd) return false;
    if ((cp < 0x20 && cp !== 0x09) || cp === 0x60 || cp === 0x7f) return false;
  }
  return true;
}

// ---------------------------------------------------------------- floats

interface Digits {
  /** Significant decimal digits without trailing zeros ("" for zero). */
  d: string;
  /** Position of the decimal point relative to d. */
  dp: number;
}

/** Decimal digits of |x|: the shortest that round-trip, or rounded to `sig` significant digits. */
function digitsOf(x: number, sig?: number): Digits {
  if (x === 0) return { d: "", dp: 0 };
  const [mant, exp] = Math.abs(x).toExponential(sig === undefined ? undefined : sig - 1).split("e") as [string, string];
  const d = mant.replace(".", "").replace(/0+$/, "");
  return { d, dp: Number(exp) + 1 };
}

function fmtE(dg: Digits, prec: number, upper: boolean): string {
  let s = dg.d[0] ?? "0";
  if (prec > 0) s += "." + dg.d.slice(1, 1 + prec).padEnd(prec, "0");
  const exp = dg.d === "" ? 0 : dg.dp - 1;
  const abs = Math.abs(exp);
  return s + (upper ? "E" : "e") + (exp < 0 ? "-" : "+") + (abs < 10 ? "0" + abs : String(abs));
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

/** strconv.FormatFloat(|x|, verb, prec, 64) without the sign; prec -1 means shortest. */
function formatAbsFloat(x: number, verb: string, prec: number): string {
  const ax = Math.abs(x);
  switch (verb) {
    case "e":
    case "E":
      return fmtE(prec < 0 ? digitsOf(ax) : digitsOf(ax, prec + 1), prec < 0 ? Math.max(digitsOf(ax).d.length - 1, 0) : prec, verb === "E");
    case "f":
    case "F": {
      if (prec < 0) {
        const dg = digitsOf(ax);
        return fmtF(dg, Math.max(dg.d.length - dg.dp, 0));
      }
      // Numbers this large are integers; BigInt prints them exactly.
      if (ax >= 1e21) return BigInt(ax).toString() + (prec > 0 ? "." + "0".repeat(prec) : "");
      return ax.toFixed(prec);
    }
    default: {
      // g, G
      if (ax === 0) return "0";
      const shortest = prec < 0;
      let p = prec === 0 ? 1 : prec;
      const dg = shortest ? digitsOf(ax) : digitsOf(ax, p);
      const nd = dg.d.length;
      if (shortest) p = nd;
      let eprec = p;
      if (eprec > nd && nd >= dg.dp) eprec = nd;
      if (shortest) eprec = 6;
      const exp = dg.dp - 1;
      if (exp < -4 || exp >= eprec) {
        return fmtE(dg, Math.min(p, nd) - 1, verb === "G");
      }
      return fmtF(dg, p > dg.dp ? Math.max(nd - dg.dp, 0) : 0);
    }
  }
}

/** %v of a float64: strconv 'g' with the shortest digits, as fmt prints it. */
export function formatFloatV(x: number): string {
  return fmtFloat(x, "g", -1, PLAIN);
}

function fmtFloat(x: number, verb: string, defaultPrec: number, f: Flags): string {
  const prec = f.prec >= 0 ? f.prec : defaultPrec;
  let sign: string;
  let body: string;
  if (Number.isNaN(x)) {
    sign = f.plus ? "+" : f.space ? " " : "";
    return padSpaces("" + sign + "NaN", f);
  }
  const negative = x < 0 || Object.is(x, -0);
  if (!Number.isFinite(x)) {
    sign = negative ? "-" : f.space && !f.plus ? " " : "+";
    return padSpaces(sign + "Inf", f);
  }
  body = formatAbsFloat(x, verb, prec);
  if (f.sharp) body = sharpFloat(body, verb, prec);
  sign = negative ? "-" : f.plus ? "+" : f.space ? " " : "";
  if (sign !== "" && f.zero && !f.minus && f.wid > sign.length + body.length) {
    return sign + "0".repeat(f.wid - sign.length - body.length) + body;
  }
  return pad(sign + body, f);
}

/** The # flag: always print a decimal point, and keep %g's trailing zeros. */
function sharpFloat(body: string, verb: string, prec: number): string {
  const ePos = body.search(/[eE]/);
  let mant = ePos < 0 ? body : body.slice(0, ePos);
  const tail = ePos < 0 ? "" : body.slice(ePos);
  if (!mant.includes(".")) mant += ".";
  if (verb === "g" || verb === "G") {
    const want = prec < 0 ? 6 : prec === 0 ? 1 : prec;
    const sig = mant.replace(".", "").replace(/^0+/, "").length || 1;
    if (sig < want) mant += "0".repeat(want - sig);
  }
  return mant + tail;
}

// ---------------------------------------------------------------- padding

function runeCount(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function pad(s: string, f: Flags): string {
  if (f.wid < 0) return s;
  const n = runeCount(s);
  if (n >= f.wid) return s;
  if (f.minus) return s + " ".repeat(f.wid - n);
  return (f.zero ? "0" : " ").repeat(f.wid - n) + s;
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

// ---------------------------------------------------------------- integers

function fmtInteger(v: number | bigint, base: number, verb: string, f: Flags): string {
  let big = typeof v === "bigint" ? v : BigInt(Math.trunc(v));
  const negative = big < 0n;
  if (negative) big = -big;
  let prec = 0;
  if (f.prec >= 0) {
    prec = f.prec;
    if (prec === 0 && big === 0n) return padSpaces("", f);
  } else if (f.zero && !f.minus && f.wid >= 0) {
    prec = f.wid;
    if (negative || f.plus || f.space) prec--;
  }
  let digits = big.toString(base);
  if (verb === "X") digits = digits.toUpperCase();
  if (digits.length < prec) digits = "0".repeat(prec - digits.length) + digits;
  if (f.sharp) {
    if (base === 2) digits = "0b" + digits;
    else if (base === 8 && digits[0] !== "0") digits = "0" + digits;
    else if (base === 16) digits = (verb === "X" ? "0X" : "0x") + digits;
  }
  if (verb === "O") digits = "0o" + digits;
  const sign = negative ? "-" : f.plus ? "+" : f.space ? " " : "";
  return padSpaces(sign + digits, f);
}

function fmtUnicode(cp: number, f: Flags): string {
  let hex = Math.trunc(cp).toString(16).toUpperCase();
  hex = hex.padStart(Math.max(4, f.prec), "0");
  let s = "U+" + hex;
  if (f.sharp && cp >= 0 && cp <= 0x10ffff && isPrint(cp)) s += " '" + String.fromCodePoint(cp) + "'";
  return padSpaces(s, f);
}

// ---------------------------------------------------------------- strings and bytes

function fmtHex(bytes: Uint8Array, upper: boolean, f: Flags): string {
  const digits = upper ? UPPER_HEX : LOWER_HEX;
  const prefix = upper ? "0X" : "0x";
  const length = f.prec >= 0 && f.prec < bytes.length ? f.prec : bytes.length;
  if (length === 0) return f.wid > 0 ? (f.zero ? "0" : " ").repeat(f.wid) : "";
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

function fmtString(s: string, verb: string, f: Flags, arg: unknown): string {
  switch (verb) {
    case "v":
      return f.sharpV ? fmtQ(s, f) : pad(truncate(s, f), f);
    case "s":
      return pad(truncate(s, f), f);
    case "x":
    case "X":
      return fmtHex(utf8Bytes(s), verb === "X", f);
    case "q":
      return fmtQ(s, f);
    default:
      return badVerb(verb, arg);
  }
}

// ---------------------------------------------------------------- any value

function badVerb(verb: string, arg: unknown): string {
  if (isNil(arg)) return "%!" + verb + "(<nil>)";
  return "%!" + verb + "(" + typeName(arg) + "=" + printArg(arg, "v", PLAIN, 0) + ")";
}

function printArg(arg: unknown, verb: string, f: Flags, depth: number): string {
  if (isNil(arg)) {
    if (depth > 0) return "<nil>";
    return verb === "v" || verb === "T" ? pad("<nil>", f) : badVerb(verb, arg);
  }
  if (verb === "T") return pad(truncate(typeName(arg), f), f);
  switch (kindOf(arg)) {
    case "bool":
      return verb === "t" || verb === "v" ? pad(arg ? "true" : "false", f) : badVerb(verb, arg);
    case "int": {
      const v = typeof arg === "bigint" ? arg : (arg as number);
      switch (verb) {
        case "v":
        case "d":
          return fmtInteger(v, 10, verb, f);
        case "b":
          return fmtInteger(v, 2, verb, f);
        case "o":
        case "O":
          return fmtInteger(v, 8, verb, f);
        case "x":
        case "X":
          return fmtInteger(v, 16, verb, f);
        case "c":
          return padSpaces(String.fromCodePoint(validRune(Number(v))), f);
        case "q":
          return padSpaces(goQuoteRune(Number(v), f.plus), f);
        case "U":
          return fmtUnicode(Number(v), f);
        default:
          return badVerb(verb, arg);
      }
    }
    case "float": {
      const x = numberOf(arg);
      switch (verb) {
        case "v":
          return fmtFloat(x, "g", -1, f);
        case "g":
        case "G":
          return fmtFloat(x, verb, -1, f);
        case "e":
        case "E":
        case "f":
        case "F":
          return fmtFloat(x, verb, 6, f);
        default:
          return badVerb(verb, arg);
      }
    }
    case "string":
      return fmtString(arg as string, verb, f, arg);
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

function parseNum(format: string, start: number, end: number): [num: number, found: boolean, next: number] {
  let i = start;
  let num = 0;
  while (i < end && format.charCodeAt(i) >= 0x30 && format.charCodeAt(i) <= 0x39) {
    if (num > 1e6) return [0, false, end]; // Go's tooLarge: the verb is then malformed
    num = num * 10 + format.charCodeAt(i) - 0x30;
    i++;
  }
  return [num, i > start, i];
}

/** fmt.Sprintf with Go's flags, width, precision, [n] argument indexes and error forms. */
export function sprintf(format: string, args: readonly unknown[]): string {
  const end = format.length;
  let out = "";
  let argNum = 0;
  let reordered = false;
  let goodArgNum = true;
  let afterIndex = false;

  const argNumber = (i: number): number => {
    if (i >= end || format[i] !== "[") return i;
    reordered = true;
    const close = format.indexOf("]", i + 1);
    if (close < 0) {
      goodArgNum = false;
      afterIndex = false;
      return i + 1;
    }
    const [n, ok, next] = parseNum(format, i + 1, close);
    if (ok && next === close && n >= 1 && n <= args.length) {
      argNum = n - 1;
      afterIndex = true;
    } else {
      goodArgNum = false;
      afterIndex = ok && next === close;
    }
    return close + 1;
  };
  const intFromArg = (): [number, boolean] => {
    if (argNum >= args.length) return [0, false];
    const a = args[argNum++];
    if (kindOf(a) !== "int") return [0, false];
    const n = Number(a);
    return Math.abs(n) > 1e6 ? [0, false] : [n, true];
  };

  let i = 0;
  while (i < end) {
    goodArgNum = true;
    const pct = format.indexOf("%", i);
    if (pct < 0) {
      out += format.slice(i);
      break;
    }
    out += format.slice(i, pct);
    i = pct + 1;
    const f = newFlags();
    flags: for (; i < end; i++) {
      switch (format[i]) {
        case "#":
          f.sharp = true;
          break;
        case "0":
          f.zero = !f.minus;
          break;
        case "+":
          f.plus = true;
          break;
        case "-":
          f.minus = true;
          f.zero = false;
          break;
        case " ":
          f.space = true;
          break;
        default:
          break flags;
      }
    }
    afterIndex = false;
    i = argNumber(i);
    if (i < end && format[i] === "*") {
      i++;
      const [w, ok] = intFromArg();
      if (!ok) out += "%!(BADWIDTH)";
      else if (w < 0) {
        f.wid = -w;
        f.minus = true;
        f.zero = false;
      } else f.wid = w;
      afterIndex = false;
    } else {
      const [w, ok, next] = parseNum(format, i, end);
      if (ok) f.wid = w;
      i = next;
      if (afterIndex && ok) goodArgNum = false;
    }
    if (i + 1 < end && format[i] === ".") {
      i++;
      if (afterIndex) goodArgNum = false;
      afterIndex = false;
      i = argNumber(i);
      if (i < end && format[i] === "*") {
        i++;
        const [p, ok] = intFromArg();
        if (ok && p >= 0) f.prec = p;
        else out += "%!(BADPREC)";
        afterIndex = false;
      } else {
        const [p, , next] = parseNum(format, i, end);
        f.prec = p;
        i = next;
      }
    }
    if (!afterIndex) i = argNumber(i);
    if (i >= end) {
      out += "%!(NOVERB)";
      break;
    }
    const verb = String.fromCodePoint(format.codePointAt(i) as number);
    i += verb.length;
    if (verb === "%") {
      out += "%";
    } else if (!goodArgNum) {
      out += "%!" + verb + "(BADINDEX)";
    } else if (argNum >= args.length) {
      out += "%!" + verb + "(MISSING)";
    } else {
      if (verb === "v") {
        f.sharpV = f.sharp;
        f.sharp = false;
        f.plus = false;
      }
      out += printArg(args[argNum], verb, f, 0);
      argNum++;
    }
  }
  if (!reordered && argNum < args.length) {
    const extra = args.slice(argNum).map((a) => (isNil(a) ? "<nil>" : typeName(a) + "=" + formatValue(a)));
    out += "%!(EXTRA " + extra.join(", ") + ")";
  }
  return out;
}
