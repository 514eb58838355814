// Each function against the output Go's text/template + sprig produce for it.

import { describe, expect, it } from "vitest";
import { TemplateError } from "../../lib/errors.ts";
import { parseTemplate, renderTemplate } from "../../lib/template/index.ts";

const data = {
  list: ["a", "b"],
  nums: [1, 2],
  m: { b: 2, a: "x" },
  empty: "",
  s: "value",
  n: 5432,
  f: 2.5,
};
const render = (source: string) => renderTemplate(parseTemplate(source, "t"), data);

/** [template, expected output] pairs, checked one by one so a failure names its case. */
function table(cases: [string, string][]) {
  it.each(cases)("%s", (source, expected) => {
    expect(render(source)).toBe(expected);
  });
}

// More printf cases, against Go's own output, and what printf refuses: template-printf.test.ts.
describe("printf", () => {
  table([
    ['{{ printf "%s-x" "pw" }}', "pw-x"],
    ['{{ "pw" | printf "%s-x" }}', "pw-x"],
    ['{{ printf "%d|%5d|%-5d|%05d|%+d" 42 42 42 -42 5 }}', "42|   42|42   |-0042|+5"],
    ['{{ printf "%x %X %#x %q %v" 255 255 255 65 true }}', "ff FF 0xff 'A' true"],
    ['{{ printf "%v %v %d" .list .m .nums }}', "[a b] map[a:x b:2] [1 2]"],
    ['{{ printf "%s %d" 5 "x" }}', "%!s(int=5) %!d(string=x)"],
    ['{{ printf "%q|%+q|%#q" "a\\"b\\n" "é" "abc" }}', '"a\\"b\\n"|"\\u00e9"|`abc`'],
    ['{{ printf "%x|% x|%#x|%X" "hi" "hi" "hi" "hi" }}', "6869|68 69|0x6869|6869"],
    ['{{ printf "%5s|%-5s|%.2s|%5.1s" "ab" "ab" "abcdef" "xyz" }}', "   ab|ab   |ab|    x"],
    ['{{ printf "100%%" }}', "100%"],
    ['{{ printf "%" }}', "%!(NOVERB)"],
    ['{{ printf "%s %s" "a" }}', "a %!s(MISSING)"],
    ['{{ printf "%s" "a" "b" }}', "a%!(EXTRA string=b)"],
    ['{{ printf "%v %s" nil nil }}', "<nil> %!s(<nil>)"],
    ['{{ printf "%d" 1.5 }}', "%!d(float64=1.5)"],
    ['{{ printf "%v|%v|%v" 1e100 -0.0 .f }}', "1e+100|-0|2.5"],
  ]);
});

describe("print, println, len, index, not", () => {
  table([
    ['{{ print 1 2 }}|{{ print "a" "b" }}|{{ print "a" 1 "b" }}|{{ print 1 "a" 2 }}', "1 2|ab|a1b|1a2"],
    ['{{ println "a" 1 }}', "a 1\n"],
    ['{{ len "héllo" }} {{ len .list }} {{ len .m }} {{ len "" }}', "6 2 2 0"],
    ['{{ index .m "a" }} {{ index .nums 0 }} {{ index "héllo" 1 }}', "x 1 195"],
    ["{{ not .empty }} {{ not .s }}", "true false"],
  ]);

  it("fails len and index on values they cannot take", () => {
    expect(() => render("{{ len 3 }}")).toThrow(/error calling len: len of type int/);
    expect(() => render("{{ index 3 1 }}")).toThrow(/can't index item of type int/);
    expect(() => render('{{ index .list "x" }}')).toThrow(/cannot index slice\/array with type string/);
    expect(() => render("{{ index .m 1 }}")).toThrow(/value has type int; should be string/);
  });
});

describe("Go's escapers", () => {
  table([
    ['{{ "a b" | urlquery }}', "a+b"],
    ['{{ urlquery "a b&c=d/é~-_." }}', "a+b%26c%3Dd%2F%C3%A9~-_."],
    ['{{ urlquery "a" "b" }}|{{ urlquery 1 2 }}|{{ urlquery nil }}', "ab|1+2|%3Cno+value%3E"],
    ['{{ html "<a href=\'x\'>&\\"</a>" }}', "&lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;"],
    ['{{ js "a\'b\\"c<>&=\\\\\\n" }}', "a\\'b\\\"c\\u003C\\u003E\\u0026\\u003D\\\\\\u000A"],
  ]);
});

describe("sprig encodings", () => {
  table([
    ['{{ b64enc "hello" }}|{{ "hello" | b64enc | b64dec }}', "aGVsbG8=|hello"],
    ['{{ b64enc "pässwörd" | b64dec }}', "pässwörd"],
    ['{{ b64dec "aGVs\\nbG8=" }}', "hello"],
    // sprig returns the decoder's error text in place of the value.
    ['{{ b64dec "aGVsbG8" }}', "illegal base64 data at input byte 4"],
    ['{{ b64dec "!!!!" }}|{{ b64dec "aGVsbG8=x" }}', "illegal base64 data at input byte 0|illegal base64 data at input byte 8"],
    ['{{ b32enc "hello" }}|{{ b32enc "a" }}|{{ b32dec "ME======" }}|{{ b32dec "NBSWY3DP" }}', "NBSWY3DP|ME======|a|hello"],
    ['{{ b32dec "ME" }}|{{ b32dec "M1======" }}', "illegal base32 data at input byte 0|illegal base32 data at input byte 1"],
    ['{{ sha256sum "abc" }}', "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    ['{{ sha1sum "abc" }}', "a9993e364706816aba3e25717850c26c9cd0d89d"],
  ]);
});

describe("sprig strings", () => {
  table([
    ['{{ quote "a\\"b" }}|{{ quote "a" "b" }}|{{ quote 1 }}|{{ quote nil }}|{{ squote "a" }}', '"a\\"b"|"a" "b"|"1"||\'a\''],
    ['{{ upper "abc" }} {{ lower "ÀBC" }} {{ title "hello world_x-y" }}', "ABC àbc Hello World_x-Y"],
    ['{{ trim "  a b \\n" }}|{{ trimPrefix "-" "-a-" }}|{{ trimSuffix "-" "-a-" }}|{{ trimAll "$" "$$5.00$" }}', "a b|a-|-a|5.00"],
    ['{{ replace "a" "b" "aaa" }}|{{ replace "" "-" "ab" }}|{{ "banana" | replace "an" "AN" }}', "bbb|-a-b-|bANANa"],
    ['{{ contains "b" "abc" }} {{ hasPrefix "a" "abc" }} {{ hasSuffix "a" "abc" }}', "true true false"],
    ['{{ repeat 3 "ab" }}|{{ nospace " a b\\tc " }}', "ababab|abc"],
    [
      '{{ substr 1 3 "hello" }}|{{ substr -1 2 "hello" }}|{{ substr 2 -1 "hello" }}|{{ substr 2 99 "hello" }}',
      "el|he|llo|llo",
    ],
    ['{{ trunc 3 "hello" }}|{{ trunc -2 "hello" }}|{{ trunc 10 "hi" }}', "hel|lo|hi"],
    ['{{ join "," (list "a" "b" 1) }}|{{ join "-" .list }}|{{ join "," "x" }}', "a,b,1|a-b|x"],
    ['{{ split "$" "a$b" }}|{{ (split "$" "a$b")._1 }}|{{ splitList "," "a,b" }}', "map[_0:a _1:b]|b|[a b]"],
    ['{{ cat "a" 1 nil "b" }}|{{ indent 2 "a\\nb" }}|{{ nindent 2 "a" }}', "a 1 b|  a\n  b|\n  a"],
    ["{{ toString 5 }} {{ toString 1.5 }} {{ toString .list }}", "5 1.5 [a b]"],
  ]);

  it("fails like sprig's panics, as errors", () => {
    expect(() => render('{{ repeat -1 "a" }}')).toThrow(/negative Repeat count/);
    expect(() => render('{{ substr 4 2 "hello" }}')).toThrow(/slice bounds out of range/);
    expect(() => render('{{ repeat 100000000 "abc" }}')).toThrow(TemplateError);
  });
});

describe("sprig defaults, lists and dicts", () => {
  table([
    ['{{ default "x" "" }}|{{ default "x" "y" }}|{{ default "x" 0 }}|{{ default "x" false }}|{{ default "x" nil }}', "x|y|x|x|x"],
    ['{{ .empty | default "d" }}|{{ .s | default "d" }}|{{ default "d" }}', "d|value|d"],
    ['{{ empty "" }} {{ empty "a" }} {{ empty 0 }} {{ empty .list }} {{ empty nil }}', "true false true false true"],
    ['{{ coalesce "" 0 "x" "y" }}|{{ coalesce "" }}', "x|<no value>"],
    ['{{ ternary "a" "b" true }}|{{ ternary "a" "b" false }}', "a|b"],
    ['{{ list 1 "a" }}|{{ dict "a" 1 "b" }}', "[1 a]|map[a:1 b:]"],
    ['{{ hasKey . "s" }} {{ hasKey . "zz" }} {{ get . "s" }} [{{ get . "zz" }}]', "true false value []"],
  ]);
});

describe("toJson and fromJson", () => {
  table([
    ["{{ toJson .m }}|{{ toJson .list }}|{{ toJson .n }}|{{ toJson .f }}", '{"a":"x","b":2}|["a","b"]|5432|2.5'],
    ['{{ toJson "<&>" }}|{{ toJson "é\\n" }}|{{ toJson nil }}|{{ toJson true }}', '"\\u003c\\u0026\\u003e"|"é\\n"|null|true'],
    ['{{ toJson (dict "b" (list 1 2) "a" "x") }}', '{"a":"x","b":[1,2]}'],
    ['{{ toJson "\\\\ud800" }}', '"\\\\ud800"'],
    ['{{ (fromJson "{\\"a\\":1000000}").a }}|{{ fromJson "[1,2.5]" }}|{{ fromJson "bad" }}', "1e+06|[1 2.5]|<no value>"],
    ['{{ toJson (fromJson "{\\"b\\":[1,{\\"c\\":null}],\\"a\\":1.5}") }}', '{"a":1.5,"b":[1,{"c":null}]}'],
  ]);
});

describe("CNPG escapers as template functions", () => {
  table([
    ['{{ pgUserinfo "p@ss:w/rd%?#" }}', "p%40ss%3Aw%2Frd%25%3F%23"],
    ['{{ "a b&c=+!\'()*" | pgQuery }}', "a%20b%26c%3D%2B%21%27%28%29%2A"],
    ['{{ pgpassField "a:b\\\\c" }}', "a\\:b\\\\c"],
    ['{{ pgUserinfo .n }}|{{ pgUserinfo "AZaz09-._~" }}', "5432|AZaz09-._~"],
  ]);
});
