// The ESO template engine v2 (Go text/template + sprig) for the values of
// `ExternalSecret.spec.target.template.data`. Parse once when the manifest is
// loaded (unknown functions and syntax errors fail there), render many times.

import { TemplateError } from "../errors.ts";
import type { Node } from "./ast.ts";
import { execute, lineCol } from "./exec.ts";
import { parse } from "./parser.ts";

export { isEscaper, templateFunctions } from "./functions.ts";

export interface ParsedTemplate {
  /** Names the template in errors; ESO uses the data key. */
  readonly name: string;
  readonly source: string;
}

/**
 * Output as a list of pieces, in order: literal text, and the value printed by each
 * action (at any depth, inside if/with/range too). `escapedBy` names the escaping
 * function when the action's pipeline ends in one, so contextual escaping can
 * leave it alone.
 */
export type Fragment =
  | { kind: "text"; text: string }
  | { kind: "action"; value: string; escapedBy?: string };

const trees = new WeakMap<ParsedTemplate, readonly Node[]>();

/** Parses a template; throws TemplateError naming the template and line:column. */
export function parseTemplate(source: string, name = "template"): ParsedTemplate {
  const fail = (pos: number, message: string): never => {
    throw new TemplateError(`template: ${name}:${lineCol(source, pos)}: ${message}`);
  };
  let root: Node[];
  try {
    root = parse(source, fail);
  } catch (e) {
    if (e instanceof RangeError) throw new TemplateError(`template: ${name}: nested too deeply to parse`);
    throw e;
  }
  const template: ParsedTemplate = Object.freeze({ name, source });
  trees.set(template, root);
  return template;
}

function treeOf(t: ParsedTemplate): readonly Node[] {
  const root = trees.get(t);
  if (!root) throw new TemplateError(`template ${t.name}: not a template returned by parseTemplate`);
  return root;
}

/** Renders with Go's missingkey=error: a missing key is a TemplateError naming it. */
export function renderTemplate(t: ParsedTemplate, data: Record<string, unknown>): string {
  let out = "";
  execute(t.name, t.source, treeOf(t), data, {
    text: (s) => {
      out += s;
    },
    action: (v) => {
      out += v;
    },
  });
  return out;
}

/** Renders to fragments that concatenate to exactly what renderTemplate returns. */
export function renderFragments(t: ParsedTemplate, data: Record<string, unknown>): Fragment[] {
  const fragments: Fragment[] = [];
  execute(t.name, t.source, treeOf(t), data, {
    text: (s) => {
      const last = fragments[fragments.length - 1];
      if (last?.kind === "text") last.text += s;
      else fragments.push({ kind: "text", text: s });
    },
    action: (value, escapedBy) => {
      fragments.push(escapedBy === undefined ? { kind: "action", value } : { kind: "action", value, escapedBy });
    },
  });
  return fragments;
}
