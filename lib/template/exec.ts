// Runs a parsed template against data with Go's text/template semantics and
// missingkey=error. The structure follows Go's exec.go so that behaviour (and
// error wording) can be checked against it; messages name types and keys, never
// the values of the data.

import { TemplateError } from "../errors.ts";
import type { Command, IfNode, Node, Operand, Pipe } from "./ast.ts";
import { goQuote, formatValue } from "./format.ts";
import { type FuncDef, MissingKeyError, type ParamType } from "./functions.ts";
import { type GoMap, isNil, kindOf, mapGet, mapHas, numberOf, sortedKeys, truth, typeName } from "./values.ts";

/** Where rendered output goes: plain text, or the value an action printed. */
export interface Output {
  text(s: string): void;
  action(value: string, escapedBy: string | undefined): void;
}

/** "No value was piped in", distinct from nil. */
const MISSING: unique symbol = Symbol("missing");
type Final = unknown;

const NORMAL = 0;
const BREAK = 1;
const CONTINUE = 2;
type Flow = typeof NORMAL | typeof BREAK | typeof CONTINUE;

interface Variable {
  readonly name: string;
  value: unknown;
}

interface Span {
  readonly pos: number;
  readonly end: number;
}

const GO_TYPE: Record<ParamType, string> = {
  any: "interface {}",
  string: "string",
  int: "int",
  float64: "float64",
  bool: "bool",
  map: "map[string]interface {}",
};

const MAX_KEYS_SHOWN = 30;

/** `(available keys: "a", "b")`: key names help find a typo; values are never shown. */
function describeKeys(keys: readonly string[]): string {
  if (keys.length === 0) return " (the map has no keys)";
  const sorted = [...keys].sort();
  const shown = sorted.slice(0, MAX_KEYS_SHOWN).map((k) => goQuote(k));
  if (sorted.length > MAX_KEYS_SHOWN) shown.push(`... ${sorted.length - MAX_KEYS_SHOWN} more`);
  return ` (available keys: ${shown.join(", ")})`;
}

export function lineCol(src: string, pos: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = src.indexOf("\n"); i >= 0 && i < pos; i = src.indexOf("\n", i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return `${line}:${pos - lineStart + 1}`;
}

export function execute(name: string, src: string, root: readonly Node[], data: unknown, out: Output): void {
  new State(name, src, data, out).walkList(data, root);
}

class State {
  readonly #name: string;
  readonly #src: string;
  readonly #out: Output;
  readonly #vars: Variable[];
  /** The node being evaluated, for error positions (Go's s.at). */
  #node: Span = { pos: 0, end: 0 };

  constructor(name: string, src: string, data: unknown, out: Output) {
    this.#name = name;
    this.#src = src;
    this.#out = out;
    this.#vars = [{ name: "$", value: data }];
  }

  #errorf(message: string): never {
    let text = this.#src.slice(this.#node.pos, this.#node.end).trim();
    if (text.length > 80) text = text.slice(0, 77) + "...";
    throw new TemplateError(
      `template: ${this.#name}:${lineCol(this.#src, this.#node.pos)}: executing "${this.#name}" at <${text}>: ${message}`,
    );
  }

  // ------------------------------------------------------------ statements

  walkList(dot: unknown, list: readonly Node[]): Flow {
    for (const node of list) {
      const flow = this.#walk(dot, node);
      if (flow !== NORMAL) return flow;
    }
    return NORMAL;
  }

  #walk(dot: unknown, node: Node): Flow {
    switch (node.type) {
      case "text":
        this.#out.text(node.text);
        return NORMAL;
      case "action": {
        this.#node = node;
        const value = this.#evalPipeline(dot, node.pipe);
        if (node.pipe.decl.length === 0) this.#out.action(printable(value), node.escapedBy);
        return NORMAL;
      }
      case "if":
      case "with":
        return this.#walkIfOrWith(dot, node);
      case "range":
        return this.#walkRange(dot, node);
      case "break":
        return BREAK;
      case "continue":
        return CONTINUE;
    }
  }

  #walkIfOrWith(dot: unknown, node: IfNode): Flow {
    const mark = this.#vars.length;
    const value = this.#evalPipeline(dot, node.pipe);
    let flow: Flow = NORMAL;
    if (truth(value)) flow = this.walkList(node.type === "with" ? value : dot, node.list);
    else if (node.elseList) flow = this.walkList(dot, node.elseList);
    this.#vars.length = mark;
    return flow;
  }

  #walkRange(dot: unknown, node: IfNode): Flow {
    const mark = this.#vars.length;
    this.#node = node;
    const value = this.#evalPipeline(dot, node.pipe);
    const inner = this.#vars.length;
    const { decl, isAssign } = node.pipe;
    // Returns true to stop the loop ({{break}}).
    const iteration = (index: unknown, elem: unknown): boolean => {
      if (decl.length > 0) {
        if (isAssign) this.#setVar(decl[0] as string, decl.length > 1 ? index : elem);
        else (this.#vars[this.#vars.length - 1] as Variable).value = elem;
      }
      if (decl.length > 1) {
        if (isAssign) this.#setVar(decl[1] as string, elem);
        else (this.#vars[this.#vars.length - 2] as Variable).value = index;
      }
      const flow = this.walkList(elem, node.list);
      this.#vars.length = inner;
      return flow === BREAK;
    };
    let ran = false;
    switch (kindOf(value)) {
      case "slice":
      case "bytes": {
        const list = value as ArrayLike<unknown>;
        for (let i = 0; i < list.length; i++) {
          ran = true;
          if (iteration(i, list[i])) break;
        }
        break;
      }
      case "map": {
        const m = value as GoMap;
        for (const key of sortedKeys(m)) {
          ran = true;
          if (iteration(key, mapGet(m, key))) break;
        }
        break;
      }
      case "int": {
        if (decl.length > 1) this.#errorf("can't use an int to iterate over more than one variable");
        const n = numberOf(value);
        for (let i = 0; i < n; i++) {
          ran = true;
          if (iteration(i, i)) break;
        }
        break;
      }
      case "nil":
        break;
      default:
        this.#errorf(`range can't iterate over a value of type ${typeName(value)}`);
    }
    let flow: Flow = NORMAL;
    if (!ran && node.elseList) flow = this.walkList(dot, node.elseList);
    this.#vars.length = mark;
    return flow;
  }

  // ------------------------------------------------------------ variables

  #varValue(name: string): unknown {
    for (let i = this.#vars.length - 1; i >= 0; i--) {
      const v = this.#vars[i] as Variable;
      if (v.name === name) return v.value;
    }
    this.#errorf(`undefined variable: ${name}`);
  }

  #setVar(name: string, value: unknown): void {
    for (let i = this.#vars.length - 1; i >= 0; i--) {
      const v = this.#vars[i] as Variable;
      if (v.name === name) {
        v.value = value;
        return;
      }
    }
    this.#errorf(`undefined variable: ${name}`);
  }

  // ------------------------------------------------------------ expressions

  #evalPipeline(dot: unknown, pipe: Pipe): unknown {
    let value: Final = MISSING;
    for (const cmd of pipe.cmds) value = this.#evalCommand(dot, cmd, value);
    for (const name of pipe.decl) {
      if (pipe.isAssign) this.#setVar(name, value);
      else this.#vars.push({ name, value });
    }
    return value;
  }

  #evalCommand(dot: unknown, cmd: Command, final: Final): unknown {
    const first = cmd.args[0] as Operand;
    switch (first.type) {
      case "field":
        return this.#evalFieldChain(dot, first, first.idents, cmd.args, final);
      case "chain":
        return this.#evalChain(dot, first, cmd.args, final);
      case "identifier":
        return this.#evalCall(dot, first.def, first, cmd.args, final);
      case "pipe":
        this.#notAFunction(cmd.args, final);
        return this.#evalPipeline(dot, first.pipe);
      case "variable":
        return this.#evalVariable(first, cmd.args, final);
    }
    this.#node = first;
    this.#notAFunction(cmd.args, final);
    switch (first.type) {
      case "bool":
        return first.value;
      case "dot":
        return dot;
      case "nil":
        this.#errorf("nil is not a command");
        break;
      case "number":
        return first.ideal;
      case "string":
        return first.value;
    }
  }

  #notAFunction(args: readonly Operand[] | null, final: Final): void {
    if ((args !== null && args.length > 1) || final !== MISSING) {
      const first = args?.[0] ?? this.#node;
      this.#errorf(`can't give argument to non-function ${this.#src.slice(first.pos, first.end)}`);
    }
  }

  #evalChain(dot: unknown, chain: Operand & { type: "chain" }, args: readonly Operand[] | null, final: Final): unknown {
    this.#node = chain;
    if (chain.node.type === "nil") this.#errorf("indirection through explicit nil");
    const receiver = this.#evalArg(dot, "any", chain.node);
    return this.#evalFieldChain(receiver, chain, chain.idents, args, final);
  }

  #evalVariable(
    variable: Operand & { type: "variable" },
    args: readonly Operand[] | null,
    final: Final,
  ): unknown {
    this.#node = variable;
    const value = this.#varValue(variable.name);
    if (variable.idents.length === 0) {
      this.#notAFunction(args, final);
      return value;
    }
    return this.#evalFieldChain(value, variable, variable.idents, args, final);
  }

  #evalFieldChain(
    receiver: unknown,
    node: Span,
    idents: readonly string[],
    args: readonly Operand[] | null,
    final: Final,
  ): unknown {
    this.#node = node;
    const n = idents.length;
    let value = receiver;
    for (let i = 0; i < n - 1; i++) value = this.#evalField(idents[i] as string, null, MISSING, value);
    return this.#evalField(idents[n - 1] as string, args, final, value);
  }

  #evalField(name: string, args: readonly Operand[] | null, final: Final, receiver: unknown): unknown {
    if (isNil(receiver)) this.#errorf(`nil pointer evaluating interface {}.${name}`);
    if (kindOf(receiver) === "map") {
      const m = receiver as GoMap;
      if ((args !== null && args.length > 1) || final !== MISSING) {
        this.#errorf(`${name} is not a method but has arguments`);
      }
      if (mapHas(m, name)) return mapGet(m, name);
      this.#errorf(`map has no entry for key ${goQuote(name)}${describeKeys(sortedKeys(m))}`);
    }
    this.#errorf(`can't evaluate field ${name} in type ${typeName(receiver)}`);
  }

  #evalCall(dot: unknown, def: FuncDef, node: Span, args: readonly Operand[] | null, final: Final): unknown {
    const argStart = args === null ? 0 : 1;
    const argCount = args === null ? 0 : args.length - 1;
    const numIn = argCount + (final === MISSING ? 0 : 1);
    const numFixed = def.params.length;
    this.#node = node;
    if (def.variadic !== undefined) {
      if (numIn < numFixed) {
        this.#errorf(`wrong number of args for ${def.name}: want at least ${numFixed} got ${argCount}`);
      }
    } else if (numIn !== numFixed) {
      this.#errorf(`wrong number of args for ${def.name}: want ${numFixed} got ${numIn}`);
    }

    if (def.lazy) {
      // and/or stop at the first argument that decides the result, as Go's do.
      const isOr = def.name === "or";
      let value: unknown;
      for (let i = 0; i < argCount; i++) {
        value = this.#evalArg(dot, "any", (args as readonly Operand[])[argStart + i] as Operand);
        if (truth(value) === isOr) return value;
      }
      return final === MISSING ? value : final;
    }

    const argv: unknown[] = [];
    let i = 0;
    for (; i < numFixed && i < argCount; i++) {
      argv.push(this.#evalArg(dot, def.params[i] as ParamType, (args as readonly Operand[])[argStart + i] as Operand));
    }
    if (def.variadic !== undefined) {
      for (; i < argCount; i++) {
        argv.push(this.#evalArg(dot, def.variadic, (args as readonly Operand[])[argStart + i] as Operand));
      }
    }
    if (final !== MISSING) {
      const type = def.variadic !== undefined && numIn - 1 >= numFixed ? def.variadic : def.params[numIn - 1];
      this.#node = node;
      argv.push(this.#validateType(final, type as ParamType));
    }
    try {
      return def.fn(argv);
    } catch (e) {
      this.#node = node;
      if (e instanceof MissingKeyError) {
        // Show the key only when it is a literal of the template: a computed key may be data.
        const keyNode = e.position + 1 < argCount ? args?.[argStart + e.position + 1] : undefined;
        const key = keyNode?.type === "string" ? goQuote(e.key) : "(computed, not shown)";
        this.#errorf(`error calling ${def.name}: map has no entry for key ${key}${describeKeys(e.keys)}`);
      }
      this.#errorf(`error calling ${def.name}: ${e instanceof Error ? e.message : "failed"}`);
    }
  }

  /** Evaluates an argument for a parameter of the given type, as Go's evalArg. */
  #evalArg(dot: unknown, type: ParamType, n: Operand): unknown {
    this.#node = n;
    switch (n.type) {
      case "dot":
        return this.#validateType(dot, type);
      case "nil":
        if (type === "any" || type === "map") return undefined;
        this.#errorf(`cannot assign nil to ${GO_TYPE[type]}`);
        break;
      case "field":
        return this.#validateType(this.#evalFieldChain(dot, n, n.idents, [n], MISSING), type);
      case "variable":
        return this.#validateType(this.#evalVariable(n, null, MISSING), type);
      case "pipe":
        return this.#validateType(this.#evalPipeline(dot, n.pipe), type);
      case "identifier":
        return this.#validateType(this.#evalCall(dot, n.def, n, null, MISSING), type);
      case "chain":
        return this.#validateType(this.#evalChain(dot, n, null, MISSING), type);
    }
    this.#node = n;
    const text = this.#src.slice(n.pos, n.end);
    switch (type) {
      case "any":
        if (n.type === "bool") return n.value;
        if (n.type === "number") return n.ideal;
        if (n.type === "string") return n.value;
        break;
      case "bool":
        if (n.type === "bool") return n.value;
        this.#errorf(`expected bool; found ${text}`);
        break;
      case "int":
        if (n.type === "number" && n.isInt) return n.int;
        this.#errorf(`expected integer; found ${text}`);
        break;
      case "float64":
        if (n.type === "number" && n.isFloat) return n.float;
        this.#errorf(`expected float; found ${text}`);
        break;
      case "string":
        if (n.type === "string") return n.value;
        this.#errorf(`expected string; found ${text}`);
        break;
    }
    this.#errorf(`can't handle ${text} for arg of type ${GO_TYPE[type]}`);
  }

  /** Checks that a computed value suits a parameter, as Go's validateType. */
  #validateType(value: unknown, type: ParamType): unknown {
    if (isNil(value)) {
      if (type === "any" || type === "map") return value;
      this.#errorf(`invalid value; expected ${GO_TYPE[type]}`);
    }
    switch (type) {
      case "any":
        return value;
      case "string":
        if (typeof value === "string") return value;
        break;
      case "int":
        if (kindOf(value) === "int") return numberOf(value);
        break;
      case "float64":
        if (kindOf(value) === "float") return numberOf(value);
        break;
      case "bool":
        if (typeof value === "boolean") return value;
        break;
      case "map":
        if (kindOf(value) === "map") return value;
        break;
    }
    this.#errorf(`wrong type for value; expected ${GO_TYPE[type]}; got ${typeName(value)}`);
  }
}

/** How text/template prints a value: nil as `<no value>`, the rest as fmt's %v. */
export function printable(value: unknown): string {
  if (typeof value === "string") return value;
  if (isNil(value)) return "<no value>";
  return formatValue(value);
}
