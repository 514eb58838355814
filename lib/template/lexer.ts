// Splits a template into tokens the way Go's text/template/parse lexer does:
// text, {{ }} with the `{{- ` / ` -}}` trim markers, comments, and the words of
// an action. Whitespace inside an action is a token, because Go uses it to tell
// `$x := 1` from `$x 1` and `.a.b` from `.a .b`.

export type TokenKind =
  | "text"
  | "leftDelim"
  | "rightDelim"
  | "space"
  | "keyword"
  | "identifier"
  | "field"
  | "dot"
  | "variable"
  | "string"
  | "rawString"
  | "charConstant"
  | "number"
  | "bool"
  | "nil"
  | "leftParen"
  | "rightParen"
  | "pipe"
  | "declare"
  | "assign"
  | "char"
  | "eof";

export interface Token {
  readonly kind: TokenKind;
  /** The token's text; for "text" tokens, already trimmed. */
  readonly val: string;
  /** Offset in the source. */
  readonly pos: number;
}

export type Fail = (pos: number, message: string) => never;

const KEYWORDS = new Set(["block", "break", "continue", "define", "else", "end", "if", "range", "template", "with"]);

function isSpace(c: string | undefined): boolean {
  return c === " " || c === "\t" || c === "\r" || c === "\n";
}

const ALNUM = /[\p{L}\p{Nd}_]/u;

function isAlphaNumericAt(src: string, p: number): boolean {
  const c = src.charCodeAt(p);
  if (Number.isNaN(c)) return false;
  if (c < 0x80) {
    return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
  }
  return ALNUM.test(String.fromCodePoint(src.codePointAt(p) as number));
}

function charWidthAt(src: string, p: number): number {
  return (src.codePointAt(p) as number) > 0xffff ? 2 : 1;
}

/** Go's %#U: U+0022 '"'. */
export function describeChar(src: string, p: number): string {
  const cp = src.codePointAt(p) as number;
  return "U+" + cp.toString(16).toUpperCase().padStart(4, "0") + " '" + String.fromCodePoint(cp) + "'";
}

export function lex(src: string, fail: Fail): Token[] {
  const toks: Token[] = [];
  const n = src.length;
  let pos = 0;

  const hasLeftTrimMarker = (p: number) => src[p] === "-" && isSpace(src[p + 1]);
  /** At `}}` or ` -}}`: [isDelim, hasTrimMarker]. */
  const atRightDelim = (p: number): [boolean, boolean] => {
    if (src.startsWith("}}", p)) return [true, false];
    if (isSpace(src[p]) && src[p + 1] === "-" && src.startsWith("}}", p + 2)) return [true, true];
    return [false, false];
  };
  const skipSpace = (p: number) => {
    while (p < n && isSpace(src[p])) p++;
    return p;
  };
  const atTerminator = (p: number) => {
    const c = src[p];
    return p >= n || isSpace(c) || ".,|:)(".includes(c as string) || src.startsWith("}}", p);
  };

  for (;;) {
    const left = src.indexOf("{{", pos);
    let textEnd = left < 0 ? n : left;
    if (left >= 0 && hasLeftTrimMarker(left + 2)) {
      while (textEnd > pos && isSpace(src[textEnd - 1])) textEnd--;
    }
    if (textEnd > pos) toks.push({ kind: "text", val: src.slice(pos, textEnd), pos });
    if (left < 0) break;

    let p = left + 2;
    if (hasLeftTrimMarker(p)) p += 2;
    if (src.startsWith("/*", p)) {
      const close = src.indexOf("*/", p + 2);
      if (close < 0) fail(left, "unclosed comment");
      p = close + 2;
      const [isDelim, trim] = atRightDelim(p);
      if (!isDelim) fail(p, "comment ends before closing delimiter");
      p += trim ? 4 : 2;
      pos = trim ? skipSpace(p) : p;
      continue;
    }
    toks.push({ kind: "leftDelim", val: "{{", pos: left });

    let parenDepth = 0;
    for (;;) {
      const [isDelim, trim] = atRightDelim(p);
      if (isDelim) {
        if (parenDepth !== 0) fail(p, "unclosed left paren");
        toks.push({ kind: "rightDelim", val: "}}", pos: trim ? p + 2 : p });
        p += trim ? 4 : 2;
        if (trim) p = skipSpace(p);
        break;
      }
      if (p >= n) fail(left, "unclosed action");
      const start = p;
      const c = src[p] as string;
      if (isSpace(c)) {
        let q = skipSpace(p);
        // The last space may belong to a ` -}}` marker.
        if (src[q] === "-" && src.startsWith("}}", q + 1)) q--;
        if (q > p) toks.push({ kind: "space", val: src.slice(p, q), pos: p });
        p = q;
        continue;
      }
      switch (c) {
        case "=":
          toks.push({ kind: "assign", val: "=", pos: p++ });
          continue;
        case ":":
          if (src[p + 1] !== "=") fail(p, "expected :=");
          toks.push({ kind: "declare", val: ":=", pos: p });
          p += 2;
          continue;
        case "|":
          toks.push({ kind: "pipe", val: "|", pos: p++ });
          continue;
        case "(":
          parenDepth++;
          toks.push({ kind: "leftParen", val: "(", pos: p++ });
          continue;
        case ")":
          parenDepth--;
          if (parenDepth < 0) fail(p, "unexpected right paren");
          toks.push({ kind: "rightParen", val: ")", pos: p++ });
          continue;
        case '"':
          p = scanQuoted(src, start, '"', () => fail(start, "unterminated quoted string"));
          toks.push({ kind: "string", val: src.slice(start, p), pos: start });
          continue;
        case "`": {
          const close = src.indexOf("`", p + 1);
          if (close < 0) fail(start, "unterminated raw quoted string");
          p = close + 1;
          toks.push({ kind: "rawString", val: src.slice(start, p), pos: start });
          continue;
        }
        case "'":
          p = scanQuoted(src, start, "'", () => fail(start, "unterminated character constant"));
          toks.push({ kind: "charConstant", val: src.slice(start, p), pos: start });
          continue;
        case "$":
        case ".": {
          if (c === "." && src.charCodeAt(p + 1) >= 0x30 && src.charCodeAt(p + 1) <= 0x39) break; // .5 is a number
          p++;
          while (isAlphaNumericAt(src, p)) p += charWidthAt(src, p);
          if (!atTerminator(p)) fail(p, "bad character " + describeChar(src, p));
          const val = src.slice(start, p);
          if (c === "$") toks.push({ kind: "variable", val, pos: start });
          else toks.push({ kind: val === "." ? "dot" : "field", val, pos: start });
          continue;
        }
      }
      if (c === "+" || c === "-" || c === "." || (c >= "0" && c <= "9")) {
        p = scanNumber(src, p);
        if (p < 0) fail(start, `bad number syntax: "${src.slice(start, -p)}"`);
        if (src[p] === "+" || src[p] === "-") fail(start, "complex numbers are not supported");
        if (src[p - 1] === "i") fail(start, "complex numbers are not supported");
        toks.push({ kind: "number", val: src.slice(start, p), pos: start });
        continue;
      }
      if (isAlphaNumericAt(src, p)) {
        while (isAlphaNumericAt(src, p)) p += charWidthAt(src, p);
        if (!atTerminator(p)) fail(p, "bad character " + describeChar(src, p));
        const word = src.slice(start, p);
        if (KEYWORDS.has(word)) toks.push({ kind: "keyword", val: word, pos: start });
        else if (word === "true" || word === "false") toks.push({ kind: "bool", val: word, pos: start });
        else if (word === "nil") toks.push({ kind: "nil", val: word, pos: start });
        else toks.push({ kind: "identifier", val: word, pos: start });
        continue;
      }
      const code = c.charCodeAt(0);
      if (code > 0x20 && code < 0x7f) {
        toks.push({ kind: "char", val: c, pos: p++ });
        continue;
      }
      fail(p, "unrecognized character in action: " + describeChar(src, p));
    }
    pos = p;
  }
  toks.push({ kind: "eof", val: "", pos: n });
  return toks;
}

/** Go's scanNumber: returns the end offset, or minus the offset of the bad character. */
/** The end of a quoted token opening at `start` (a backslash escapes the next character); `unterminated` never returns. */
function scanQuoted(src: string, start: number, quote: string, unterminated: () => never): number {
  let p = start + 1;
  for (;;) {
    const d = src[p++];
    if (d === "\\") {
      const e = src[p++];
      if (e !== undefined && e !== "\n") continue;
      unterminated();
    }
    if (d === undefined || d === "\n") unterminated();
    if (d === quote) return p;
  }
}

function scanNumber(src: string, p: number): number {
  const accept = (set: string) => {
    if (p < src.length && set.includes(src[p] as string)) {
      p++;
      return true;
    }
    return false;
  };
  const acceptRun = (set: string) => {
    while (p < src.length && set.includes(src[p] as string)) p++;
  };
  accept("+-");
  let digits = "0123456789_";
  if (accept("0")) {
    if (accept("xX")) digits = "0123456789abcdefABCDEF_";
    else if (accept("oO")) digits = "01234567_";
    else if (accept("bB")) digits = "01_";
  }
  acceptRun(digits);
  if (accept(".")) acceptRun(digits);
  if (digits.length === 11 && accept("eE")) {
    accept("+-");
    acceptRun("0123456789_");
  }
  if (digits.length === 23 && accept("pP")) {
    accept("+-");
    acceptRun("0123456789_");
  }
  accept("i");
  if (isAlphaNumericAt(src, p)) return -(p + 1);
  return p;
}
