// Base32 everywhere it is written (the generator's `encoding: base32`, sprig's b32enc and
// b32dec) comes from rfc4648; these tests hold it to RFC 4648 §10's vectors and to Go's
// encoding/base32 (go-reference/base32.json, written by go-reference/main.go).

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { encodePassword } from "../../lib/generator/password.ts";
import { base32Decode, base32Encode } from "../../lib/template/encoding.ts";
import { parseTemplate, renderTemplate } from "../../lib/template/index.ts";

// RFC 4648 §10, "Test Vectors", BASE32.
const RFC4648: [string, string][] = [
  ["", ""],
  ["f", "MY======"],
  ["fo", "MZXQ===="],
  ["foo", "MZXW6==="],
  ["foob", "MZXW6YQ="],
  ["fooba", "MZXW6YTB"],
  ["foobar", "MZXW6YTBOI======"],
];

const go = JSON.parse(readFileSync(new URL("go-reference/base32.json", import.meta.url), "utf8")) as {
  encode: [input: string, encoded: string][];
  decode: [input: string, result: string][];
};

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

describe("base32: RFC 4648 test vectors", () => {
  it.each(RFC4648)("%j ↔ %j", (input, encoded) => {
    expect(base32Encode(input)).toBe(encoded);
    expect(encodePassword(input, "base32")).toBe(encoded);
    expect(base32Decode(encoded)).toEqual({ bytes: new TextEncoder().encode(input) });
    const t = parseTemplate("{{ b32enc .in }}|{{ b32dec .enc }}", "t");
    expect(renderTemplate(t, { in: input, enc: encoded })).toBe(`${encoded}|${input}`);
  });
});

describe("base32: what Go's encoding/base32 does", () => {
  it.each(go.encode)("encodes %j as Go does", (input, encoded) => {
    expect(base32Encode(input)).toBe(encoded);
    expect(encodePassword(input, "base32")).toBe(encoded);
  });

  // Go's acceptance (padding only in the last quantum, anything after it ignored, unused
  // low bits ignored) and its error offsets, over hand-picked and random inputs.
  it("decodes or refuses every reference input as Go does", () => {
    const ours = go.decode.map(([input]) => {
      const { bytes, error } = base32Decode(input);
      return [input, error === undefined ? `hex: ${hex(bytes)}` : `error: ${error}`];
    });
    expect(ours).toEqual(go.decode);
    const outcomes = new Set(go.decode.map(([, result]) => result.split(" ")[0]));
    expect(outcomes).toEqual(new Set(["hex:", "error:"]));
    expect(go.decode.length).toBeGreaterThan(400);
  });
});
