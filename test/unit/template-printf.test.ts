// printf against Go: go-reference/printf.json holds templates and what Go's text/template
// printed for them (regenerate with `go run main.go` in that folder), and everything printf
// refuses, at parse time for a literal format and at render time otherwise.

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { TemplateError } from "../../lib/errors.ts";
import { parseTemplate, renderTemplate } from "../../lib/template/index.ts";

const reference = JSON.parse(readFileSync(new URL("go-reference/printf.json", import.meta.url), "utf8")) as {
  data: Record<string, unknown>;
  cases: [template: string, go: string][];
};

describe("printf prints what Go prints", () => {
  it.each(reference.cases)("%s", (source, go) => {
    expect(renderTemplate(parseTemplate(source, "t"), reference.data)).toBe(go);
  });
});

const SUPPORTED = "printf here supports %s %d %v %q %x %X and %%";
const failure = (source: string, data: Record<string, unknown> = {}): TemplateError => {
  try {
    renderTemplate(parseTemplate(source, "pw"), data);
  } catch (e) {
    if (e instanceof TemplateError) return e;
    throw e;
  }
  throw new Error(`${source} did not fail`);
};
const parseFailure = (source: string): TemplateError => {
  try {
    parseTemplate(source, "pw");
  } catch (e) {
    if (e instanceof TemplateError) return e;
    throw e;
  }
  throw new Error(`${source} parsed`);
};

describe("printf refuses what ESO templates do not use, naming it and where it is", () => {
  // Every verb Go has beyond the kept ones, each refused when the template is parsed.
  const refusedVerbs = ["t", "b", "c", "o", "O", "U", "e", "E", "f", "F", "g", "G", "T", "p", "w", "z", "!", "é"];
  it.each(refusedVerbs)("%%%s at parse time", (verb) => {
    const e = parseFailure(`{{ printf "ab%5${verb}" 1 }}`);
    // `{{ printf "ab%5` is 15 characters: the verb is column 16, character 5 of the format.
    expect(e.message).toBe(`template: pw:1:16: printf: the verb %${verb} at character 5 of the format is not supported; ${SUPPORTED}`);
  });

  it.each([
    ['{{ printf "%#v" 1 }}', "pw:1:14: printf: %#v (Go-syntax values) at character 3"],
    ['{{ printf "%[1]s" 1 }}', "pw:1:13: printf: an argument index (%[n]verb) at character 2"],
    ['{{ printf "%-*d" 3 4 }}', "pw:1:14: printf: a width or precision taken from an argument (*) at character 3"],
    ['{{ printf "%.*s" 3 "x" }}', "pw:1:14: printf: a width or precision taken from an argument (*) at character 3"],
    ['{{ printf "%5.[2]d" 3 4 }}', "pw:1:15: printf: an argument index (%[n]verb) at character 4"],
    // In a pipeline, in a nested pipeline, and inside control structures: all at parse time.
    ['{{ .x | printf "%e" }}', "pw:1:18: printf: the verb %e at character 2"],
    ['{{ if true }}{{ upper (printf "%s%g" "a" 1) }}{{ end }}', "pw:1:35: printf: the verb %g at character 4"],
    // An escape in the literal moves the verb: the error then points at the literal.
    ['{{ printf "\\t%f" 1 }}', "pw:1:11: printf: the verb %f at character 3"],
    ["{{ printf `%T` 1 }}", "pw:1:13: printf: the verb %T at character 2"],
    ['line one\n{{ printf "%s %o" "a" 8 }}', "pw:2:16: printf: the verb %o at character 5"],
  ])("%s", (source, expected) => {
    expect(parseFailure(source).message).toBe(`template: ${expected} of the format is not supported; ${SUPPORTED}`);
  });

  it("refuses a computed format when printf runs, naming the verb", () => {
    expect(failure("{{ printf .format .n }}", { format: "n=%b", n: 7 }).message).toBe(
      `template: pw:1:4: executing "pw" at <printf>: error calling printf: the verb %b at character 4 of the format is not supported; ${SUPPORTED}`,
    );
    expect(renderTemplate(parseTemplate("{{ printf .format .n }}", "pw"), { format: "%d:%x", n: 255 })).toBe("255:%!x(MISSING)");
  });

  it("refuses %x of a float64, which Go prints as a hexadecimal float, when printf runs", () => {
    for (const source of ['{{ printf "%x" 1.5 }}', '{{ printf "%X" .f }}', '{{ printf "%x" .list }}']) {
      expect(failure(source, { f: 2.5, list: ["a", 2.5] }).message).toMatch(
        /error calling printf: %[xX] of a float64 is not supported \(Go prints a hexadecimal float\)/,
      );
    }
  });

  it("accepts every kept verb with every flag, and a literal %% or trailing % as Go prints it", () => {
    expect(() => parseTemplate('{{ printf "%#+- 07.3s%d%v%+v%q%#x%X%%%" 1 2 3 4 5 6 7 }}')).not.toThrow();
  });
});
