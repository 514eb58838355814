import { describe, expect, it } from "vitest";
import { base32 } from "rfc4648";
import { GeneratorError } from "../../lib/errors.ts";
import {
  CryptoRandom,
  DEFAULT_SYMBOL_CHARACTERS,
  generate,
  generatePassword,
  type RandomSource,
  resolvePasswordSpec,
} from "../../lib/generator/index.ts";
import { chiSquareP } from "./stats.ts";

const SEED_SPEC = {
  length: 42,
  digits: 5,
  symbols: 5,
  symbolCharacters: "-_$@",
  noUpper: false,
  allowRepeat: true,
};
const LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ALPHA = 0.001;

function classify(ch: string, symbols: string): "letter" | "digit" | "symbol" | "other" {
  if (LETTERS.includes(ch)) return "letter";
  if (/[0-9]/.test(ch)) return "digit";
  if (symbols.includes(ch)) return "symbol";
  return "other";
}

describe("Password generator: the seed's spec", () => {
  const spec = resolvePasswordSpec(SEED_SPEC);
  const N = 20_000;
  const passwords = Array.from({ length: N }, () => generatePassword(spec));

  it("gives exact counts: 42 chars, 5 digits, 5 symbols from -_$@, 32 letters", () => {
    const wrong = passwords.filter((p) => {
      const chars = Array.from(p);
      const counts = { letter: 0, digit: 0, symbol: 0, other: 0 };
      for (const c of chars) counts[classify(c, "-_$@")]++;
      return chars.length !== 42 || counts.letter !== 32 || counts.digit !== 5 || counts.symbol !== 5;
    });
    expect(wrong).toHaveLength(0);
    expect(passwords).toHaveLength(N);
  });

  it("draws each class uniformly (chi-square per class, p > 0.001)", () => {
    const freq = new Map<string, number>();
    for (const p of passwords) for (const c of p) freq.set(c, (freq.get(c) ?? 0) + 1);
    const check = (set: string, perPassword: number) => {
      const observed = Array.from(set, (c) => freq.get(c) ?? 0);
      const expected = observed.map(() => (N * perPassword) / set.length);
      expect(chiSquareP(observed, expected)).toBeGreaterThan(ALPHA);
    };
    check(LETTERS, 32);
    check("0123456789", 5);
    check("-_$@", 5);
  });

  it("places digits and symbols uniformly over positions (chi-square, p > 0.001)", () => {
    const digitAt = new Array<number>(42).fill(0);
    const symbolAt = new Array<number>(42).fill(0);
    for (const p of passwords) {
      for (let i = 0; i < 42; i++) {
        const kind = classify(p[i]!, "-_$@");
        if (kind === "digit") digitAt[i]!++;
        if (kind === "symbol") symbolAt[i]!++;
      }
    }
    const expected = new Array<number>(42).fill((N * 5) / 42);
    expect(chiSquareP(digitAt, expected)).toBeGreaterThan(ALPHA);
    expect(chiSquareP(symbolAt, expected)).toBeGreaterThan(ALPHA);
  });

  it("the chi-square check does catch a modulo-biased source", () => {
    // A byte taken mod 52 favours the first 48 letters: the test above must be able to fail.
    const biased: RandomSource = {
      below: (bound) => Math.floor(Math.random() * 256) % bound,
    };
    const p = Array.from({ length: 5_000 }, () => generatePassword(spec, biased)).join("");
    const observed = Array.from(LETTERS, (c) => p.split(c).length - 1);
    const total = observed.reduce((a, b) => a + b, 0);
    expect(chiSquareP(observed, observed.map(() => total / 52))).toBeLessThan(ALPHA);
  });

  it("refuses 5 symbols from a set of 4 without repeats, as ESO does", () => {
    expect(() => resolvePasswordSpec({ ...SEED_SPEC, allowRepeat: false })).toThrow(GeneratorError);
    expect(() => resolvePasswordSpec({ ...SEED_SPEC, allowRepeat: false })).toThrow(/symbols exhausted/);
  });

  it("with 4 symbols and allowRepeat false never repeats a character", () => {
    const s = resolvePasswordSpec({ ...SEED_SPEC, symbols: 4, allowRepeat: false });
    const bad = Array.from({ length: 5_000 }, () => generatePassword(s)).filter((p) => {
      const chars = Array.from(p);
      return chars.length !== 42 || new Set(chars).size !== 42 || chars.filter((c) => "-_$@".includes(c)).length !== 4;
    });
    expect(bad).toHaveLength(0);
  });
});

describe("Password generator: ESO defaults and errors", () => {
  it("an empty spec gives length 24, 6 digits, 6 symbols from the default set", () => {
    const { password } = generate({});
    const chars = Array.from(password!);
    expect(chars).toHaveLength(24);
    expect(chars.filter((c) => /[0-9]/.test(c))).toHaveLength(6);
    expect(chars.filter((c) => DEFAULT_SYMBOL_CHARACTERS.includes(c))).toHaveLength(6);
    expect(new Set(chars).size).toBe(24); // allowRepeat defaults to false
    expect(DEFAULT_SYMBOL_CHARACTERS).toHaveLength(30);
  });

  it("treats length <= 0 and an empty symbol set as the defaults", () => {
    expect(resolvePasswordSpec({ length: 0 }).length).toBe(24);
    expect(resolvePasswordSpec({ length: -5 }).length).toBe(24);
    expect(resolvePasswordSpec({ symbolCharacters: "" }).symbolCharacters.join("")).toBe(DEFAULT_SYMBOL_CHARACTERS);
  });

  it("length 128 with defaults fails (letters exhausted)", () => {
    expect(() => resolvePasswordSpec({ length: 128 })).toThrow(/letters exhausted/);
    expect(() => resolvePasswordSpec({ length: 128, allowRepeat: true })).not.toThrow();
  });

  it("11 digits without repeats fails; noUpper halves the letters", () => {
    expect(() => resolvePasswordSpec({ length: 20, digits: 11 })).toThrow(/digits exhausted/);
    expect(() => resolvePasswordSpec({ length: 40, digits: 6, symbols: 6, noUpper: true })).toThrow(
      /letters exhausted.*26.*noUpper/,
    );
  });

  it("digits and symbols beyond length fail; zero letters is allowed", () => {
    expect(() => resolvePasswordSpec({ length: 8, digits: 5, symbols: 5 })).toThrow(
      /digits and symbols exceed length/,
    );
    const p = generate({ length: 10, digits: 5, symbols: 5, allowRepeat: true }).password!;
    expect(p.replace(/[0-9]/g, "")).toHaveLength(5);
  });

  it("rejects negative or fractional counts", () => {
    expect(() => resolvePasswordSpec({ digits: -1 })).toThrow(/digits: must not be negative/);
    expect(() => resolvePasswordSpec({ symbols: -2 })).toThrow(/symbols: must not be negative/);
    expect(() => resolvePasswordSpec({ length: 4.5 })).toThrow(/length: expected an integer/);
  });

  it("secretKeys [a, b] gives two different passwords; empty or duplicate keys fail", () => {
    const out = generate({ secretKeys: ["a", "b"] });
    expect(Object.keys(out)).toEqual(["a", "b"]);
    expect(out.a).not.toBe(out.b);
    expect(() => resolvePasswordSpec({ secretKeys: [] })).toThrow(/secretKeys/);
    expect(() => resolvePasswordSpec({ secretKeys: ["a", "a"] })).toThrow(/duplicate key "a"/);
    expect(() => resolvePasswordSpec({ secretKeys: [""] })).toThrow(/secretKeys\[0\]/);
  });

  it("every encoding decodes back to a valid password", () => {
    const valid = (p: string) => {
      expect(Array.from(p)).toHaveLength(24);
      expect(p.replace(/[a-zA-Z0-9]/g, "")).toHaveLength(6);
    };
    const decodeBase32 = (s: string) => Buffer.from(base32.parse(s)).toString("utf8");
    for (let i = 0; i < 200; i++) {
      valid(generate({ encoding: "raw" }).password!);
      const b64 = generate({ encoding: "base64" }).password!;
      expect(b64).toMatch(/^[A-Za-z0-9+/]+=*$/);
      valid(Buffer.from(b64, "base64").toString("utf8"));
      const b64url = generate({ encoding: "base64url" }).password!;
      expect(b64url).toMatch(/^[A-Za-z0-9_-]+=*$/);
      expect(b64url.length % 4).toBe(0); // Go's URLEncoding keeps the padding
      valid(Buffer.from(b64url, "base64url").toString("utf8"));
      const b32 = generate({ encoding: "base32" }).password!;
      expect(b32).toMatch(/^[A-Z2-7]+=*$/);
      expect(b32.length % 8).toBe(0);
      valid(decodeBase32(b32));
      const hex = generate({ encoding: "hex" }).password!;
      expect(hex).toMatch(/^[0-9a-f]+$/);
      valid(Buffer.from(hex, "hex").toString("utf8"));
    }
    expect(() => resolvePasswordSpec({ encoding: "rot13" })).toThrow(/encoding: expected one of/);
  });
});

describe("Password generator: reference quirks guarded", () => {
  it("treats multi-byte symbols as whole characters, never broken UTF-8", () => {
    const spec = resolvePasswordSpec({ length: 12, digits: 2, symbols: 4, symbolCharacters: "€£¥😀" });
    for (let i = 0; i < 500; i++) {
      const p = generatePassword(spec);
      expect(Array.from(p)).toHaveLength(12);
      expect(Buffer.from(p, "utf8").toString("utf8")).toBe(p);
      expect(p.isWellFormed()).toBe(true);
      expect(Array.from(p).filter((c) => "€£¥😀".includes(c))).toHaveLength(4);
    }
  });

  it("a symbol set overlapping the letters cannot loop forever without repeats", () => {
    // 52 letters use up every letter, so none of the symbols "abc" is left.
    const spec = resolvePasswordSpec({ length: 55, digits: 0, symbols: 3, symbolCharacters: "abc" });
    expect(() => generatePassword(spec)).toThrow(/symbols exhausted: symbolCharacters overlap/);
  });

  it("rejects control characters in symbolCharacters", () => {
    expect(() => resolvePasswordSpec({ symbolCharacters: "ab\n" })).toThrow(/control characters/);
  });

  it("CryptoRandom.below is uniform for a bound that does not divide 2^32", () => {
    const r = new CryptoRandom();
    const bound = 3;
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[r.below(bound)]!++;
    expect(chiSquareP(counts, [10_000, 10_000, 10_000])).toBeGreaterThan(ALPHA);
    expect(() => r.below(0)).toThrow(RangeError);
  });
});
