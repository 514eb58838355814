import { describe, expect, it } from "vitest";
import { TemplateError } from "../../lib/errors.ts";
import {
  type Fragment,
  isEscaper,
  parseTemplate,
  renderFragments,
  renderTemplate,
  templateFunctions,
} from "../../lib/template/index.ts";

const render = (source: string, data: Record<string, unknown> = {}) => renderTemplate(parseTemplate(source, "t"), data);

/** The error a template raises, at parse or render time. */
function failure(source: string, data: Record<string, unknown> = {}): TemplateError {
  try {
    render(source, data);
  } catch (e) {
    expect(e).toBeInstanceOf(TemplateError);
    return e as TemplateError;
  }
  throw new Error(`expected ${JSON.stringify(source)} to fail`);
}

function parseFailure(source: string, name = "t"): TemplateError {
  try {
    parseTemplate(source, name);
  } catch (e) {
    expect(e).toBeInstanceOf(TemplateError);
    return e as TemplateError;
  }
  throw new Error(`expected ${JSON.stringify(source)} to fail to parse`);
}

// The ExternalSecret of seed/cnpg-external-secrets.md.
const SEED = {
  password: "{{ .password }}",
  pgpass: "cluster-example-rw:5432:app:app:{{ .password }}",
  "jdbc-uri": "jdbc:postgresql://cluster-example-rw.default:5432/app?password={{ .password }}&user=app",
  uri: "postgresql://app:{{ .password }}@cluster-example-rw.default:5432/app",
};

describe("the seed's templates", () => {
  const password = "aB3$xY-9_zQ@w";
  const rendered = Object.fromEntries(
    Object.entries(SEED).map(([key, source]) => [key, renderTemplate(parseTemplate(source, key), { password })]),
  );

  it("render with the generator's password pasted in", () => {
    expect(rendered).toEqual({
      password,
      pgpass: `cluster-example-rw:5432:app:app:${password}`,
      "jdbc-uri": `jdbc:postgresql://cluster-example-rw.default:5432/app?password=${password}&user=app`,
      uri: `postgresql://app:${password}@cluster-example-rw.default:5432/app`,
    });
  });

  it("keep their name and source", () => {
    const t = parseTemplate(SEED.uri, "uri");
    expect(t.name).toBe("uri");
    expect(t.source).toBe(SEED.uri);
  });

  it("render the same on every call (parse once, render many)", () => {
    const t = parseTemplate(SEED.uri, "uri");
    expect(renderTemplate(t, { password: "a" })).toBe(renderTemplate(t, { password: "a" }));
    expect(renderTemplate(t, { password: "b" })).toContain(":b@");
  });

  it("render in microseconds", () => {
    const templates = Object.entries(SEED).map(([k, v]) => parseTemplate(v, k));
    const data = { password };
    const rounds = 2000;
    const start = performance.now();
    for (let i = 0; i < rounds; i++) for (const t of templates) renderTemplate(t, data);
    const microsPerRound = ((performance.now() - start) * 1000) / rounds;
    expect(microsPerRound).toBeLessThan(200);
  });
});

describe("field access", () => {
  it("reads keys, nested keys, dot and $", () => {
    const data = { a: { b: { c: "deep" } }, s: "x" };
    expect(render("{{ .a.b.c }}", data)).toBe("deep");
    expect(render("{{ $.s }}", data)).toBe("x");
    expect(render("{{ with .a }}{{ .b.c }}{{ $.s }}{{ end }}", data)).toBe("deepx");
    expect(render("{{ (index . \"a\").b.c }}", data)).toBe("deep");
  });

  it("reads keys with dashes through index", () => {
    expect(render('{{ index . "jdbc-uri" }}', { "jdbc-uri": "jdbc:x" })).toBe("jdbc:x");
    expect(render('{{ index . "a" "b-c" }}', { a: { "b-c": 1 } })).toBe("1");
    expect(render("{{ index .list 1 }}", { list: ["a", "b"] })).toBe("b");
    expect(render('{{ index "abc" 1 }}', {})).toBe("98");
  });

  it("reads from Map instances as from objects", () => {
    expect(render("{{ .m.k }}", { m: new Map([["k", "v"]]) })).toBe("v");
  });

  it("fails on a missing key with the key name, the keys there are, and no value", () => {
    const secret = "hunter2-SECRET";
    const e = failure("postgresql://app:{{ .pasword }}@h/db", { password: secret, username: "app" });
    expect(e.message).toContain('map has no entry for key "pasword"');
    expect(e.message).toContain('"password"');
    expect(e.message).toContain('"username"');
    expect(e.message).toContain("t:1:21");
    expect(e.message).not.toContain(secret);
  });

  it("fails on a missing key through index, never printing the value", () => {
    const secret = "hunter2-SECRET";
    const e = failure('{{ index . "jdbc-url" }}', { "jdbc-uri": secret });
    expect(e.message).toContain('"jdbc-url"');
    expect(e.message).toContain('"jdbc-uri"');
    expect(e.message).not.toContain(secret);
    // A key computed from data is not shown: it could be a secret.
    const computed = failure("{{ index . .password }}", { password: secret });
    expect(computed.message).toContain("computed");
    expect(computed.message).not.toContain(secret);
  });

  it("fails on fields of non-maps with the type, not the value", () => {
    const e = failure("{{ .password.length }}", { password: "topsecret" });
    expect(e.message).toContain("can't evaluate field length in type string");
    expect(e.message).not.toContain("topsecret");
    expect(failure("{{ .a.b }}", { a: null }).message).toContain("nil pointer evaluating interface {}.b");
    expect(failure("{{ index .list 5 }}", { list: [1] }).message).toContain("index out of range");
    expect(failure("{{ .password 1 }}", { password: "x" }).message).toContain("has arguments");
  });

  it("prints nil as <no value>, like Go", () => {
    expect(render("{{ .x }}", { x: null })).toBe("<no value>");
    expect(render("{{ .x }}", { x: undefined })).toBe("<no value>");
  });

  it("prints values as Go's fmt does", () => {
    const data = { list: ["a", 1, true, null], m: { b: 2, a: "x" }, n: 42, f: 2.5, t: true };
    expect(render("{{ .list }}", data)).toBe("[a 1 true <nil>]");
    expect(render("{{ .m }}", data)).toBe("map[a:x b:2]");
    expect(render("{{ .n }} {{ .f }} {{ .t }}", data)).toBe("42 2.5 true");
    expect(render("{{ .bytes }}", { bytes: new Uint8Array([1, 2]) })).toBe("[1 2]");
  });
});

describe("literals", () => {
  it("strings with Go escapes and raw strings", () => {
    expect(render('{{ "a\\tb\\n\\"q\\" \\u00e9 \\x41 \\101" }}')).toBe('a\tb\n"q" é A A');
    expect(render("{{ `raw \\n {{` }}")).toBe("raw \\n {{");
    expect(parseFailure('{{ "bad \\q" }}').message).toContain("1:4");
    expect(parseFailure('{{ "open }}').message).toContain("unterminated quoted string");
  });

  it("numbers print as Go prints ints and float64s", () => {
    expect(render("{{ 42 }} {{ -7 }} {{ 0x1F }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }}")).toBe("42 -7 31 15 15 5 1000");
    expect(render("{{ 1.0 }} {{ 1.5 }} {{ 1e6 }} {{ 123456.0 }} {{ 1e-5 }} {{ .5 }} {{ 0x1p-2 }}")).toBe(
      "1 1.5 1e+06 123456 1e-05 0.5 0.25",
    );
    expect(render("{{ 'a' }} {{ '\\n' }}")).toBe("97 10");
    expect(parseFailure("{{ 1x }}").message).toContain("bad number syntax");
    expect(parseFailure("{{ 1__0 }}").message).toContain("illegal number syntax");
  });

  it("true, false, nil", () => {
    expect(render("{{ true }} {{ false }}")).toBe("true false");
    expect(failure("{{ nil }}").message).toContain("nil is not a command");
    expect(render("{{ print nil }}")).toBe("<nil>");
  });
});

describe("pipelines, arguments and parentheses", () => {
  it("pass the piped value as the last argument", () => {
    expect(render('{{ .password | printf "%s-x" }}', { password: "pw" })).toBe("pw-x");
    expect(render('{{ "a b" | urlquery }}')).toBe("a+b");
    expect(render('{{ "banana" | replace "a" "o" | upper }}')).toBe("BONONO");
    expect(render('{{ .maybe | default "fallback" }}', { maybe: "" })).toBe("fallback");
  });

  it("evaluate parenthesized pipelines as arguments", () => {
    expect(render('{{ printf "%s:%s" (upper .a) (.b | lower) }}', { a: "x", b: "Y" })).toBe("X:y");
    expect(render("{{ (1) }}")).toBe("1");
    expect(render('{{ len (printf "%s%s" "ab" "c") }}')).toBe("3");
  });

  it("reject a literal after a pipe, and arguments to non-functions", () => {
    expect(parseFailure('{{ .a | "x" }}').message).toContain("non executable command in pipeline stage 2");
    expect(failure('{{ "x" | .a }}', { a: "y" }).message).toContain("a is not a method but has arguments");
    expect(failure("{{ 1 2 }}").message).toContain("can't give argument to non-function 1");
  });

  it("check argument counts and types as Go's reflection does", () => {
    expect(failure('{{ upper "a" "b" }}').message).toContain("wrong number of args for upper: want 1 got 2");
    expect(failure("{{ printf }}").message).toContain("want at least 1 got 0");
    expect(failure("{{ upper .n }}", { n: 1 }).message).toContain("wrong type for value; expected string; got int");
    expect(failure("{{ upper 1 }}").message).toContain("expected string; found 1");
    expect(failure('{{ repeat "2" "a" }}').message).toContain("expected integer");
    expect(render('{{ repeat 2.0 "a" }}')).toBe("aa");
    expect(failure("{{ upper nil }}").message).toContain("cannot assign nil to string");
    expect(failure("{{ upper .x }}", { x: null }).message).toContain("invalid value; expected string");
  });
});

describe("trim markers and comments", () => {
  it("trim all whitespace next to `{{- ` and ` -}}`", () => {
    expect(render("a \n\t {{- .x -}} \n b", { x: "X" })).toBe("aXb");
    expect(render("a  {{- .x }}  b", { x: "X" })).toBe("aX  b");
    expect(render("a  {{ .x -}}  b", { x: "X" })).toBe("a  Xb");
    expect(render("{{ 3 -}} \n 4")).toBe("34");
  });

  it("need a space next to the dash: {{-3}} is minus three", () => {
    expect(render("a {{-3}} b")).toBe("a -3 b");
    expect(render("a {{- -3}} b")).toBe("a-3 b");
  });

  it("drop comments, trimming around them too", () => {
    expect(render("a{{/* note */}}b")).toBe("ab");
    expect(render("a {{- /* note */ -}} b")).toBe("ab");
    expect(render("a{{/* multi\nline */}}b")).toBe("ab");
    expect(parseFailure("{{/* open }}").message).toContain("unclosed comment");
    expect(parseFailure("{{/* x */ .a }}").message).toContain("comment ends before closing delimiter");
  });
});

describe("control structures", () => {
  it("if / else if / else with Go's truth", () => {
    const t = parseTemplate("{{ if .a }}A{{ else if .b }}B{{ else }}C{{ end }}");
    expect(renderTemplate(t, { a: "x", b: 1 })).toBe("A");
    expect(renderTemplate(t, { a: "", b: 1 })).toBe("B");
    expect(renderTemplate(t, { a: [], b: 0 })).toBe("C");
    expect(renderTemplate(t, { a: {}, b: null })).toBe("C");
    expect(renderTemplate(t, { a: false, b: 0.5 })).toBe("B");
  });

  it("with sets dot, and has else / else with", () => {
    expect(render("{{ with .u }}{{ .name }}{{ else }}none{{ end }}", { u: { name: "n" } })).toBe("n");
    expect(render("{{ with .u }}{{ .name }}{{ else }}none{{ end }}", { u: null })).toBe("none");
    expect(render("{{ with .a }}a{{ else with .b }}{{ . }}{{ end }}", { a: "", b: "B" })).toBe("B");
  });

  it("range over lists, maps (sorted) and ints, with variables, else, break and continue", () => {
    const data = { list: ["x", "y", "z"], m: { b: 2, a: 1 }, empty: [] };
    expect(render("{{ range .list }}{{ . }}{{ end }}", data)).toBe("xyz");
    expect(render("{{ range $i, $v := .list }}{{ $i }}={{ $v }} {{ end }}", data)).toBe("0=x 1=y 2=z ");
    expect(render("{{ range $k, $v := .m }}{{ $k }}{{ $v }}{{ end }}", data)).toBe("a1b2");
    expect(render("{{ range $v := .m }}{{ $v }}{{ end }}", data)).toBe("12");
    expect(render("{{ range 3 }}{{ . }}{{ end }}")).toBe("012");
    expect(render("{{ range .empty }}x{{ else }}empty{{ end }}", data)).toBe("empty");
    expect(render("{{ range .list }}{{ if eq . \"y\" }}{{ break }}{{ end }}{{ . }}{{ end }}", data)).toBe("x");
    expect(render("{{ range .list }}{{ if eq . \"y\" }}{{ continue }}{{ end }}{{ . }}{{ end }}", data)).toBe("xz");
    expect(failure("{{ range .s }}{{ end }}", { s: "str" }).message).toContain("range can't iterate over");
  });

  it("declares and assigns variables with Go's scoping", () => {
    expect(render("{{ $x := .a }}{{ $x }}-{{ $x = \"b\" }}{{ $x }}", { a: "a" })).toBe("a-b");
    expect(render("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}")).toBe("2");
    expect(render("{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}")).toBe("21");
    expect(parseFailure("{{ if true }}{{ $y := 1 }}{{ end }}{{ $y }}").message).toContain('undefined variable "$y"');
    expect(parseFailure("{{ $z = 1 }}").message).toContain('undefined variable "$z"');
  });

  it("and, or, not, and comparisons with Go's rules", () => {
    expect(render("{{ and 1 0 }} {{ and 1 2 }} {{ or 0 \"\" }}|{{ or 0 3 }} {{ not 0 }} {{ not \"x\" }}")).toBe(
      "0 2 |3 true false",
    );
    expect(render("{{ eq 1 1 }} {{ eq 1 2 3 1 }} {{ ne \"a\" \"b\" }} {{ eq .x nil }}", { x: null })).toBe(
      "true true true true",
    );
    expect(render("{{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ ge 1.5 2.5 }}")).toBe("true true true false");
    expect(failure("{{ eq 1 \"1\" }}").message).toContain("incompatible types for comparison");
    expect(failure("{{ lt true false }}").message).toContain("invalid type for comparison");
    // and/or stop early: the missing key after the deciding argument is never read.
    expect(render("{{ or .a .missing }}", { a: "yes" })).toBe("yes");
    expect(render("{{ and .a .missing }}", { a: "" })).toBe("");
  });

  it("reports structural errors with positions", () => {
    expect(parseFailure("{{ if .a }}x").message).toContain("unexpected EOF");
    expect(parseFailure("x{{ end }}").message).toMatch(/1:5: unexpected \{\{end\}\}/);
    expect(parseFailure("{{ break }}").message).toContain("{{break}} outside {{range}}");
    expect(parseFailure("{{ if }}{{ end }}").message).toContain("missing value for if");
    expect(parseFailure("{{ .a ").message).toContain("unclosed action");
    expect(parseFailure("{{ (.a }}").message).toContain("unclosed left paren");
    expect(parseFailure("{{ .a) }}").message).toContain("unexpected right paren");
    expect(parseFailure('{{ define "x" }}{{ end }}').message).toContain("not supported");
    expect(parseFailure("{{ .a ; }}").message).toContain('unexpected ";"');
  });
});

describe("functions at parse time", () => {
  it("rejects env and expandenv, saying ESO removes them for security", () => {
    for (const name of ["env", "expandenv"]) {
      const e = parseFailure(`{{ ${name} "HOME" }}`, "uri");
      expect(e.message).toContain(`"${name}"`);
      expect(e.message).toContain("security");
      expect(e.message).toContain("uri");
      expect(templateFunctions.has(name)).toBe(false);
    }
    // Inside a pipeline and a branch not taken: still a parse error.
    expect(parseFailure('{{ if false }}{{ "X" | env }}{{ end }}').message).toContain("security");
  });

  it("rejects an unknown function with its name, the template's name and line:col", () => {
    const e = parseFailure("line one\nuri: {{ .password | frobnicate }}", "uri");
    expect(e.message).toContain('function "frobnicate" not defined');
    expect(e.message).toContain("uri:2:21");
  });

  it("says when a function exists in ESO but not here", () => {
    expect(parseFailure("{{ toYaml . }}").message).toContain("not implemented here");
  });

  it("names syntax errors' positions", () => {
    expect(parseFailure("a\nb {{ .a | ; }}", "k").message).toContain('k:2:11: unexpected ";"');
    // Go accepts a trailing pipe; so do we.
    expect(render("{{ .a | }}", { a: "x" })).toBe("x");
    expect(parseFailure(`${"(".repeat(2000)}1${")".repeat(2000)}`.replace(/^/, "{{ ").concat(" }}")).message).toContain(
      "max expression depth exceeded",
    );
    expect(parseFailure("{{ $x := }}").message).toContain("missing value for command");
  });
});

describe("renderFragments", () => {
  const data = { password: "p@ss", user: "app", list: ["a", "b"] };
  const join = (fs: Fragment[]) => fs.map((f) => (f.kind === "text" ? f.text : f.value)).join("");

  it("splits output into text and one fragment per action", () => {
    const t = parseTemplate("postgresql://{{ .user }}:{{ .password }}@h/db");
    expect(renderFragments(t, data)).toEqual([
      { kind: "text", text: "postgresql://" },
      { kind: "action", value: "app" },
      { kind: "text", text: ":" },
      { kind: "action", value: "p@ss" },
      { kind: "text", text: "@h/db" },
    ]);
  });

  it("marks actions whose pipeline ends in an escaper", () => {
    const escapedBy = (source: string) => {
      const actions = renderFragments(parseTemplate(source), data).filter((f) => f.kind === "action");
      return actions.map((f) => (f.kind === "action" ? f.escapedBy : undefined));
    };
    expect(escapedBy("{{ .password | pgUserinfo }}")).toEqual(["pgUserinfo"]);
    expect(escapedBy("{{ pgUserinfo .password }}")).toEqual(["pgUserinfo"]);
    expect(escapedBy("{{ (pgQuery .password) }}")).toEqual(["pgQuery"]);
    expect(escapedBy("{{ .password | pgpassField }}")).toEqual(["pgpassField"]);
    expect(escapedBy("{{ .password | urlquery }}")).toEqual(["urlquery"]);
    expect(escapedBy("{{ .password | upper }}")).toEqual([undefined]);
    expect(escapedBy("{{ .password | pgUserinfo | upper }}")).toEqual([undefined]);
    expect(escapedBy('{{ printf "%s" (pgUserinfo .password) }}')).toEqual([undefined]);
    expect(escapedBy("{{ .password }}")).toEqual([undefined]);
  });

  it("includes actions inside if, with and range, and none for declarations", () => {
    const t = parseTemplate("{{ $x := .user }}[{{ range .list }}{{ . }},{{ end }}]{{ if true }}{{ $x }}{{ end }}");
    const fragments = renderFragments(t, data);
    expect(fragments).toEqual([
      { kind: "text", text: "[" },
      { kind: "action", value: "a" },
      { kind: "text", text: "," },
      { kind: "action", value: "b" },
      { kind: "text", text: ",]" },
      { kind: "action", value: "app" },
    ]);
  });

  it("joins to exactly what renderTemplate returns", () => {
    const sources = [
      ...Object.values(SEED),
      "{{ range $i, $v := .list }}{{ if $i }}, {{ end }}{{ $v | pgQuery }}{{ end }}",
      "a {{- .user -}} b{{/* c */}}{{ .password | pgUserinfo }}",
      "",
      "plain",
    ];
    for (const source of sources) {
      const t = parseTemplate(source);
      expect(join(renderFragments(t, data))).toBe(renderTemplate(t, data));
    }
  });
});

describe("the function set", () => {
  it("lists the functions and the escapers", () => {
    for (const name of ["index", "printf", "urlquery", "b64enc", "default", "toJson", "pgUserinfo", "pgQuery"]) {
      expect(templateFunctions.has(name)).toBe(true);
    }
    expect(["pgUserinfo", "pgQuery", "pgpassField", "urlquery"].every(isEscaper)).toBe(true);
    expect(["upper", "printf", "b64enc", "nope"].some(isEscaper)).toBe(false);
  });

  it("rejects objects not made by parseTemplate", () => {
    expect(() => renderTemplate({ name: "x", source: "{{ 1 }}" }, {})).toThrow(TemplateError);
  });
});
