// The parsed form of a template, shaped like Go's text/template/parse nodes.
// Every node keeps its source span so that errors can point at it.

import type { FuncDef } from "./functions.ts";
import type { GoFloat } from "./values.ts";

interface Span {
  readonly pos: number;
  readonly end: number;
}

export interface TextNode {
  readonly type: "text";
  readonly text: string;
}

export interface ActionNode extends Span {
  readonly type: "action";
  readonly pipe: Pipe;
  /** Set when the pipeline's last command is an escaping function. */
  readonly escapedBy: string | undefined;
}

export interface IfNode extends Span {
  readonly type: "if" | "with" | "range";
  readonly pipe: Pipe;
  readonly list: Node[];
  readonly elseList: Node[] | undefined;
}

export interface LoopControlNode extends Span {
  readonly type: "break" | "continue";
}

export type Node = TextNode | ActionNode | IfNode | LoopControlNode;

export interface Pipe extends Span {
  /** Variables declared (`:=`) or assigned (`=`), without evaluating to output. */
  readonly decl: string[];
  readonly isAssign: boolean;
  readonly cmds: Command[];
}

export interface Command extends Span {
  readonly args: Operand[];
}

export type Operand =
  | ({ readonly type: "field"; readonly idents: string[] } & Span)
  | ({ readonly type: "variable"; readonly name: string; readonly idents: string[] } & Span)
  | ({ readonly type: "chain"; readonly node: Operand; readonly idents: string[] } & Span)
  | ({ readonly type: "identifier"; readonly name: string; readonly def: FuncDef } & Span)
  | ({ readonly type: "dot" } & Span)
  | ({ readonly type: "nil" } & Span)
  | ({ readonly type: "bool"; readonly value: boolean } & Span)
  | ({ readonly type: "string"; readonly value: string } & Span)
  | ({ readonly type: "pipe"; readonly pipe: Pipe } & Span)
  | ({ readonly type: "number" } & NumberInfo & Span);

export interface NumberInfo {
  readonly isInt: boolean;
  readonly isFloat: boolean;
  /** Valid when isInt. */
  readonly int: number;
  /** Valid when isFloat. */
  readonly float: number;
  /** What the literal is when nothing asks for a type: Go's idealConstant. */
  readonly ideal: number | GoFloat;
}
