// Builds the tree of a template as Go's text/template/parse does, including its
// parse-time checks: every function must exist and every variable be declared.

import type { ActionNode, Command, IfNode, Node, NumberInfo, Operand, Pipe } from "./ast.ts";
import {
  isKnownButNotImplemented,
  lookupFunction,
  REMOVED_FOR_SECURITY,
  isEscaper,
} from "./functions.ts";
import { checkFormat } from "./format.ts";
import { type Fail, lex, type Token, type TokenKind } from "./lexer.ts";
import { GoFloat, fromUtf8, utf8Bytes } from "./values.ts";

const TERM_START: ReadonlySet<TokenKind> = new Set([
  "bool",
  "charConstant",
  "dot",
  "field",
  "identifier",
  "number",
  "nil",
  "rawString",
  "string",
  "variable",
  "leftParen",
]);

const MAX_PAREN_DEPTH = 1000;

export function parse(src: string, fail: Fail): Node[] {
  return new Parser(lex(src, fail), src, fail).parse();
}

class Parser {
  readonly #toks: Token[];
  readonly #src: string;
  readonly #fail: Fail;
  #i = 0;
  /** Variables in scope, innermost last; `$` is the data. */
  #vars: string[] = ["$"];
  #rangeDepth = 0;
  #parenDepth = 0;
  /** Where the last {{end}} or {{else}} was, for errors about a stray one. */
  #lastKeywordPos = 0;

  constructor(toks: Token[], src: string, fail: Fail) {
    this.#toks = toks;
    this.#src = src;
    this.#fail = fail;
  }

  parse(): Node[] {
    const root: Node[] = [];
    while (this.#peek().kind !== "eof") {
      const n = this.#textOrAction();
      if (n === "end" || n === "else") this.#fail(this.#lastKeywordPos, `unexpected {{${n}}}`);
      root.push(n);
    }
    return root;
  }

  // ------------------------------------------------------------ tokens

  #peek(): Token {
    return this.#toks[this.#i] as Token;
  }

  #next(): Token {
    const t = this.#toks[this.#i] as Token;
    if (t.kind !== "eof") this.#i++;
    return t;
  }

  #nextNonSpace(): Token {
    let t = this.#next();
    while (t.kind === "space") t = this.#next();
    return t;
  }

  #peekNonSpace(): Token {
    while (this.#peek().kind === "space") this.#i++;
    return this.#peek();
  }

  #unexpected(t: Token, context: string): never {
    if (t.kind === "eof") this.#fail(t.pos, `unexpected EOF in ${context}`);
    const what =
      t.kind === "keyword" ? `<${t.val}>` : t.kind === "rightDelim" ? '"}}"' : t.kind === "leftDelim" ? '"{{"' : JSON.stringify(t.val.length > 10 ? t.val.slice(0, 10) + "..." : t.val);
    this.#fail(t.pos, `unexpected ${what} in ${context}`);
  }

  // ------------------------------------------------------------ lists and actions

  /** A text, an action or a control structure; "end"/"else" end the list being parsed. */
  #textOrAction(): Node | "end" | "else" {
    const t = this.#nextNonSpace();
    if (t.kind === "text") return { type: "text", text: t.val };
    if (t.kind === "leftDelim") return this.#action();
    this.#unexpected(t, "input");
  }

  #itemList(): [Node[], "end" | "else"] {
    const list: Node[] = [];
    while (this.#peekNonSpace().kind !== "eof") {
      const n = this.#textOrAction();
      if (n === "end" || n === "else") return [list, n];
      list.push(n);
    }
    this.#fail(this.#peek().pos, "unexpected EOF: an {{if}}, {{with}} or {{range}} has no {{end}}");
  }

  #action(): Node | "end" | "else" {
    const t = this.#nextNonSpace();
    if (t.kind === "keyword") {
      this.#lastKeywordPos = t.pos;
      switch (t.val) {
        case "if":
        case "with":
        case "range":
          return this.#control(t.val, t.pos);
        case "else":
          // `{{else if}}` and `{{else with}}` leave the keyword for #control to read.
          if (this.#peekNonSpace().kind === "keyword" && ["if", "with"].includes(this.#peek().val)) return "else";
          this.#expectRightDelim("else");
          return "else";
        case "end":
          this.#expectRightDelim("end");
          return "end";
        case "break":
        case "continue": {
          this.#expectRightDelim(`{{${t.val}}}`);
          if (this.#rangeDepth === 0) this.#fail(t.pos, `{{${t.val}}} outside {{range}}`);
          return { type: t.val, pos: t.pos, end: t.pos + t.val.length };
        }
        default:
          this.#fail(t.pos, `{{${t.val}}} is not supported: templates here are single, self-contained values`);
      }
    }
    this.#i--;
    const pipe = this.#pipeline("command", "rightDelim");
    const node: ActionNode = { type: "action", pipe, pos: pipe.pos, end: pipe.end, escapedBy: escaperOf(pipe) };
    return node;
  }

  #expectRightDelim(context: string): void {
    const t = this.#nextNonSpace();
    if (t.kind !== "rightDelim") this.#unexpected(t, context);
  }

  #control(kind: "if" | "with" | "range", pos: number): IfNode {
    const mark = this.#vars.length;
    const pipe = this.#pipeline(kind, "rightDelim");
    if (kind === "range") this.#rangeDepth++;
    const [list, next] = this.#itemList();
    if (kind === "range") this.#rangeDepth--;
    let elseList: Node[] | undefined;
    if (next === "else") {
      const t = this.#peekNonSpace();
      if (t.kind === "keyword" && t.val === kind && kind !== "range") {
        // {{if a}}x{{else if b}}y{{end}} is {{if a}}x{{else}}{{if b}}y{{end}}{{end}}.
        this.#next();
        elseList = [this.#control(kind, t.pos)];
      } else {
        const [list2, next2] = this.#itemList();
        if (next2 !== "end") this.#fail(this.#lastKeywordPos, "expected {{end}}; found {{else}}");
        elseList = list2;
      }
    }
    this.#vars.length = mark;
    return { type: kind, pipe, list, elseList, pos, end: pipe.end };
  }

  // ------------------------------------------------------------ pipelines

  #pipeline(context: string, end: "rightDelim" | "rightParen"): Pipe {
    const start = this.#peekNonSpace().pos;
    const decl: string[] = [];
    let isAssign = false;
    for (;;) {
      const v = this.#peekNonSpace();
      if (v.kind !== "variable") break;
      const save = this.#i;
      this.#next();
      const after = this.#peekNonSpace();
      if (after.kind === "assign" || after.kind === "declare") {
        this.#next();
        isAssign = after.kind === "assign";
        if (isAssign && !this.#vars.includes(v.val)) this.#fail(v.pos, `undefined variable "${v.val}"`);
        decl.push(v.val);
        if (!isAssign) this.#vars.push(v.val);
        break;
      }
      if (after.kind === "char" && after.val === ",") {
        this.#next();
        decl.push(v.val);
        this.#vars.push(v.val);
        if (context === "range" && decl.length < 2) {
          const k = this.#peekNonSpace().kind;
          if (k === "variable" || k === "rightDelim" || k === "rightParen") continue;
          this.#fail(this.#peek().pos, "range can only initialize variables");
        }
        this.#fail(after.pos, `too many declarations in ${context}`);
      }
      this.#i = save;
      break;
    }
    const cmds: Command[] = [];
    for (;;) {
      const t = this.#nextNonSpace();
      if (t.kind === end) {
        if (cmds.length === 0) this.#fail(t.pos, `missing value for ${context}`);
        cmds.forEach((c, i) => {
          const first = c.args[0] as Operand;
          if (i > 0 && ["bool", "dot", "nil", "number", "string"].includes(first.type)) {
            this.#fail(first.pos, `non executable command in pipeline stage ${i + 1}`);
          }
        });
        return { decl, isAssign, cmds, pos: start, end: t.pos };
      }
      if (!TERM_START.has(t.kind)) this.#unexpected(t, context);
      this.#i--;
      cmds.push(this.#command());
    }
  }

  #command(): Command {
    const args: Operand[] = [];
    const pos = this.#peekNonSpace().pos;
    let end = pos;
    for (;;) {
      this.#peekNonSpace();
      const op = this.#operand();
      if (op) {
        args.push(op);
        end = op.end;
      }
      const t = this.#next();
      if (t.kind === "space") continue;
      if (t.kind === "rightDelim" || t.kind === "rightParen") this.#i--;
      else if (t.kind !== "pipe") this.#unexpected(t, "operand");
      break;
    }
    if (args.length === 0) this.#fail(pos, "empty command");
    this.#checkPrintf(args);
    return { args, pos, end };
  }

  /** A literal printf format is checked now, so a refused verb fails at load time, not mid-rotation. */
  #checkPrintf(args: Operand[]): void {
    const [fn, format] = args;
    if (fn?.type !== "identifier" || fn.name !== "printf" || format?.type !== "string") return;
    const refused = checkFormat(format.value);
    if (!refused) return;
    // Point at the refused character itself when the literal has no escapes to shift it.
    const exact = this.#src.slice(format.pos + 1, format.end - 1) === format.value;
    this.#fail(exact ? format.pos + 1 + refused.at : format.pos, `printf: ${refused.message}`);
  }

  #operand(): Operand | undefined {
    const node = this.#term();
    if (!node || this.#peek().kind !== "field") return node;
    const idents: string[] = [];
    let end = node.end;
    while (this.#peek().kind === "field") {
      const f = this.#next();
      idents.push(f.val.slice(1));
      end = f.pos + f.val.length;
    }
    switch (node.type) {
      case "field":
        return { type: "field", idents: [...node.idents, ...idents], pos: node.pos, end };
      case "variable":
        return { type: "variable", name: node.name, idents: [...node.idents, ...idents], pos: node.pos, end };
      case "bool":
      case "string":
      case "number":
      case "nil":
      case "dot":
        this.#fail(node.end, `unexpected . after term "${this.#src.slice(node.pos, node.end)}"`);
        break;
      default:
        return { type: "chain", node, idents, pos: node.pos, end };
    }
  }

  #term(): Operand | undefined {
    const t = this.#nextNonSpace();
    const pos = t.pos;
    const end = t.pos + t.val.length;
    switch (t.kind) {
      case "identifier": {
        const def = lookupFunction(t.val);
        if (!def) this.#fail(pos, unknownFunction(t.val));
        return { type: "identifier", name: t.val, def, pos, end };
      }
      case "dot":
        return { type: "dot", pos, end };
      case "nil":
        return { type: "nil", pos, end };
      case "bool":
        return { type: "bool", value: t.val === "true", pos, end };
      case "variable":
        if (!this.#vars.includes(t.val)) this.#fail(pos, `undefined variable "${t.val}"`);
        return { type: "variable", name: t.val, idents: [], pos, end };
      case "field":
        return { type: "field", idents: [t.val.slice(1)], pos, end };
      case "number":
        return { type: "number", ...this.#number(t), pos, end };
      case "charConstant": {
        const [cp, rest] = unquoteChar(t.val.slice(1), "'");
        if (cp < 0 || rest !== "'") this.#fail(pos, `malformed character constant: ${t.val}`);
        return { type: "number", isInt: true, isFloat: true, int: cp, float: cp, ideal: cp, pos, end };
      }
      case "string": {
        const value = unquote(t.val);
        if (value === undefined) this.#fail(pos, `invalid syntax in string ${t.val}`);
        return { type: "string", value, pos, end };
      }
      case "rawString":
        return { type: "string", value: t.val.slice(1, -1).replaceAll("\r", ""), pos, end };
      case "leftParen": {
        // Go's limit too; it also keeps deep nesting from exhausting the stack.
        if (this.#parenDepth >= MAX_PAREN_DEPTH) this.#fail(pos, "max expression depth exceeded");
        this.#parenDepth++;
        const pipe = this.#pipeline("parenthesized pipeline", "rightParen");
        this.#parenDepth--;
        return { type: "pipe", pipe, pos, end: pipe.end + 1 };
      }
    }
    this.#i--;
    return undefined;
  }

  #number(t: Token): NumberInfo {
    const info = parseNumber(t.val);
    if (typeof info === "string") this.#fail(t.pos, info);
    return info;
  }
}

function unknownFunction(name: string): string {
  if (REMOVED_FOR_SECURITY.has(name)) {
    return (
      `function "${name}" is not available: External Secrets Operator removes "env" and "expandenv" ` +
      "from templates for security (a template must not read the environment it runs in), and so do we"
    );
  }
  if (isKnownButNotImplemented(name)) {
    return `function "${name}" is not implemented here (ESO's templates have it; ours support a subset)`;
  }
  return `function "${name}" not defined`;
}

/** The escaper a pipeline's output comes from, if its last command calls one. */
function escaperOf(pipe: Pipe): string | undefined {
  const last = pipe.cmds[pipe.cmds.length - 1];
  const first = last?.args[0];
  if (first?.type === "identifier" && isEscaper(first.name)) return first.name;
  if (first?.type === "pipe" && last?.args.length === 1) return escaperOf(first.pipe);
  return undefined;
}

// ---------------------------------------------------------------- literals

function underscoreOK(text: string): boolean {
  let s = text;
  if (s[0] === "+" || s[0] === "-") s = s.slice(1);
  let saw = "^";
  let i = 0;
  let hex = false;
  if (s.length >= 2 && s[0] === "0" && "bBoOxX".includes(s[1] as string)) {
    i = 2;
    saw = "0";
    hex = s[1] === "x" || s[1] === "X";
  }
  for (; i < s.length; i++) {
    const c = s[i] as string;
    if ((c >= "0" && c <= "9") || (hex && /[a-fA-F]/.test(c))) {
      saw = "0";
      continue;
    }
    if (c === "_") {
      if (saw !== "0") return false;
      saw = "_";
      continue;
    }
    if (saw === "_") return false;
    saw = "!";
  }
  return saw !== "_";
}

const INT_FORMS: [RegExp, number][] = [
  [/^0[xX][0-9a-fA-F]+$/, 16],
  [/^0[oO][0-7]+$/, 8],
  [/^0[bB][01]+$/, 2],
  [/^0[0-7]*$/, 8],
  [/^[1-9][0-9]*$/, 10],
];
const DECIMAL_FLOAT = /^(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const HEX_FLOAT = /^0[xX]([0-9a-fA-F]*)\.?([0-9a-fA-F]*)[pP]([+-]?[0-9]+)$/;
const INT64_LIMIT = 2 ** 63;

/** Go's NumberNode: which types the literal can be, and its value as each. */
export function parseNumber(text: string): NumberInfo | string {
  const illegal = `illegal number syntax: "${text}"`;
  if (text.includes("_") && !underscoreOK(text)) return illegal;
  const clean = text.replaceAll("_", "");
  const negative = clean[0] === "-";
  const body = clean[0] === "-" || clean[0] === "+" ? clean.slice(1) : clean;
  for (const [re, base] of INT_FORMS) {
    if (!re.test(body)) continue;
    const digits = base === 10 || (base === 8 && !/^0[oO]/.test(body)) ? body : body.slice(2);
    const magnitude = base === 10 ? Number(digits) : parseInt(digits || "0", base);
    const int = negative ? -magnitude : magnitude;
    if (Math.abs(int) > INT64_LIMIT) return `integer overflow: "${text}"`;
    return { isInt: true, isFloat: true, int, float: int, ideal: int };
  }
  let float: number;
  const hexFloat = HEX_FLOAT.exec(body);
  if (hexFloat) {
    const [, whole = "", frac = "", exp = "0"] = hexFloat;
    if (whole === "" && frac === "") return illegal;
    const mantissa = parseInt(whole + frac || "0", 16) / 16 ** frac.length;
    float = mantissa * 2 ** Number(exp);
  } else if (DECIMAL_FLOAT.test(body)) {
    float = Number(body);
  } else {
    return illegal;
  }
  if (negative) float = -float;
  if (!/[.eEpP]/.test(text)) return `integer overflow: "${text}"`;
  const isInt = Number.isInteger(float) && Math.abs(float) < INT64_LIMIT;
  return { isInt, isFloat: true, int: isInt ? float : 0, float, ideal: new GoFloat(float) };
}

const SIMPLE_ESCAPES: Record<string, number> = { a: 7, b: 8, f: 12, n: 10, r: 13, t: 9, v: 11, "\\": 92 };

/**
 * strconv.UnquoteChar: the code point (or byte value, for \x and octal escapes)
 * at the start of s and the rest of s; -1 when s does not start with a valid one.
 */
function unquoteChar(s: string, quote: string): [value: number, rest: string, isByte: boolean] {
  const c = s[0];
  if (c === undefined || c === quote) return [-1, s, false];
  if (c !== "\\") {
    const cp = s.codePointAt(0) as number;
    return [cp, s.slice(cp > 0xffff ? 2 : 1), false];
  }
  const e = s[1];
  if (e === undefined) return [-1, s, false];
  if (Object.hasOwn(SIMPLE_ESCAPES, e)) return [SIMPLE_ESCAPES[e] as number, s.slice(2), false];
  if (e === quote) return [quote.charCodeAt(0), s.slice(2), false];
  const hexLen = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
  if (hexLen > 0) {
    const hex = s.slice(2, 2 + hexLen);
    if (hex.length !== hexLen || !/^[0-9a-fA-F]+$/.test(hex)) return [-1, s, false];
    const v = parseInt(hex, 16);
    if (e !== "x" && (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))) return [-1, s, false];
    return [v, s.slice(2 + hexLen), e === "x"];
  }
  if (e >= "0" && e <= "7") {
    const oct = s.slice(1, 4);
    if (!/^[0-7]{3}$/.test(oct)) return [-1, s, false];
    const v = parseInt(oct, 8);
    if (v > 255) return [-1, s, false];
    return [v, s.slice(4), true];
  }
  return [-1, s, false];
}

/** strconv.Unquote of a double-quoted literal; undefined when it is malformed. */
function unquote(lit: string): string | undefined {
  let s = lit.slice(1, -1);
  if (!s.includes("\\")) return s;
  const bytes: number[] = [];
  while (s.length > 0) {
    const [v, rest, isByte] = unquoteChar(s, '"');
    if (v < 0) return undefined;
    if (isByte) bytes.push(v);
    else bytes.push(...utf8Bytes(String.fromCodePoint(v)));
    s = rest;
  }
  return fromUtf8(Uint8Array.from(bytes));
}
