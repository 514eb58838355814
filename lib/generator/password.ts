import { base32 } from "rfc4648";
import { GeneratorError } from "../errors.ts";
import { cryptoRandom, type RandomSource } from "./random.ts";

/** `spec` of an ESO `Password` generator (generators.external-secrets.io/v1alpha1). */
export interface PasswordSpec {
  length?: number;
  digits?: number;
  symbols?: number;
  symbolCharacters?: string;
  noUpper?: boolean;
  allowRepeat?: boolean;
  secretKeys?: string[];
  encoding?: string;
}

export const ENCODINGS = ["raw", "base64", "base64url", "base32", "hex"] as const;
export type Encoding = (typeof ENCODINGS)[number];

/** A spec with ESO's defaults filled in and every limit checked. */
export interface ResolvedPasswordSpec {
  readonly length: number;
  readonly digits: number;
  readonly symbols: number;
  readonly letters: number;
  /** Code points, so a multi-byte symbol is one character, never a broken byte. */
  readonly symbolCharacters: readonly string[];
  readonly noUpper: boolean;
  readonly allowRepeat: boolean;
  readonly secretKeys: readonly string[];
  readonly encoding: Encoding;
}

export const DEFAULT_LENGTH = 24;
export const DEFAULT_SYMBOL_CHARACTERS = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./";
export const DEFAULT_SECRET_KEYS: readonly string[] = ["password"];

const LOWER = Array.from("abcdefghijklmnopqrstuvwxyz");
const UPPER = Array.from("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
const DIGITS = Array.from("0123456789");
const LETTERS = [...LOWER, ...UPPER];

function count(field: string, value: unknown, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new GeneratorError(`${field}: expected an integer, found ${JSON.stringify(value)}`);
  }
  if (value < 0) throw new GeneratorError(`${field}: must not be negative, found ${value}`);
  return value;
}

/** Applies ESO's defaults and refuses every spec ESO refuses (and a few it would mishandle). */
export function resolvePasswordSpec(spec: PasswordSpec = {}): ResolvedPasswordSpec {
  let length = spec.length ?? DEFAULT_LENGTH;
  if (typeof length !== "number" || !Number.isInteger(length)) {
    throw new GeneratorError(`length: expected an integer, found ${JSON.stringify(spec.length)}`);
  }
  if (length <= 0) length = DEFAULT_LENGTH; // ESO: zero or negative means the default
  const quarter = Math.floor(length / 4);
  const digits = count("digits", spec.digits, quarter);
  const symbols = count("symbols", spec.symbols, quarter);
  const letters = length - digits - symbols;
  if (letters < 0) {
    throw new GeneratorError(
      `digits and symbols exceed length: ${digits} digits + ${symbols} symbols > length ${length}`,
    );
  }

  const rawSymbols = spec.symbolCharacters;
  if (rawSymbols !== undefined && typeof rawSymbols !== "string") {
    throw new GeneratorError(`symbolCharacters: expected a string, found ${typeof rawSymbols}`);
  }
  const symbolCharacters = Array.from(rawSymbols || DEFAULT_SYMBOL_CHARACTERS);
  if (symbolCharacters.some((c) => c.codePointAt(0)! < 0x20 || c === "\u007f")) {
    throw new GeneratorError("symbolCharacters: control characters are not allowed");
  }

  const noUpper = flag("noUpper", spec.noUpper);
  const allowRepeat = flag("allowRepeat", spec.allowRepeat);
  const letterSet = noUpper ? LOWER : LETTERS;

  if (!allowRepeat) {
    const distinctSymbols = new Set(symbolCharacters).size;
    if (letters > letterSet.length) {
      throw new GeneratorError(
        `letters exhausted: ${letters} letters without repeats need more than the ${letterSet.length} available` +
          (noUpper ? " (noUpper)" : "") +
          "; set allowRepeat: true or lower length",
      );
    }
    if (digits > DIGITS.length) {
      throw new GeneratorError(
        `digits exhausted: ${digits} digits without repeats need more than the 10 available; set allowRepeat: true or lower digits`,
      );
    }
    if (symbols > distinctSymbols) {
      throw new GeneratorError(
        `symbols exhausted: ${symbols} symbols without repeats need more than the ${distinctSymbols} distinct symbolCharacters; set allowRepeat: true or lower symbols`,
      );
    }
  }

  const secretKeys = spec.secretKeys ?? DEFAULT_SECRET_KEYS;
  if (!Array.isArray(secretKeys) || secretKeys.length === 0) {
    throw new GeneratorError("secretKeys: expected a non-empty list of key names");
  }
  const seen = new Set<string>();
  for (const [i, key] of secretKeys.entries()) {
    if (typeof key !== "string" || key === "") {
      throw new GeneratorError(`secretKeys[${i}]: expected a non-empty string`);
    }
    if (!/^[-._a-zA-Z0-9]+$/.test(key)) {
      throw new GeneratorError(`secretKeys[${i}]: "${key}" is not a valid Secret key (allowed: letters, digits, '-', '_', '.')`);
    }
    if (seen.has(key)) throw new GeneratorError(`secretKeys[${i}]: duplicate key "${key}"`);
    seen.add(key);
  }

  const encoding = spec.encoding ?? "raw";
  if (!(ENCODINGS as readonly string[]).includes(encoding)) {
    throw new GeneratorError(`encoding: expected one of ${ENCODINGS.join(", ")}, found "${encoding}"`);
  }

  return {
    length,
    digits,
    symbols,
    letters,
    symbolCharacters,
    noUpper,
    allowRepeat,
    secretKeys: [...secretKeys],
    encoding: encoding as Encoding,
  };
}

function flag(field: string, value: unknown): boolean {
  if (value === undefined || value === null) return false;
  if (typeof value !== "boolean") throw new GeneratorError(`${field}: expected true or false, found ${JSON.stringify(value)}`);
  return value;
}

/**
 * One raw password: letters, then digits, then symbols are drawn, each from its
 * own set, and each inserted at a uniformly random position. Without
 * allowRepeat, a character already in the password is never drawn again: the
 * draw is uniform over what is left, which is what redrawing until a new
 * character comes up amounts to, but it cannot loop forever when the symbol
 * set overlaps letters or digits.
 */
export function generatePassword(spec: ResolvedPasswordSpec, random: RandomSource = cryptoRandom): string {
  const out: string[] = [];
  const used = spec.allowRepeat ? undefined : new Set<string>();
  const draw = (set: readonly string[], n: number, what: string) => {
    for (let i = 0; i < n; i++) {
      let ch: string;
      if (used) {
        const left = set.filter((c) => !used.has(c));
        if (left.length === 0) {
          throw new GeneratorError(
            `${what} exhausted: symbolCharacters overlap letters or digits, so no unused ${what} is left without repeats`,
          );
        }
        ch = left[random.below(left.length)]!;
        used.add(ch);
      } else {
        ch = set[random.below(set.length)]!;
      }
      out.splice(random.below(out.length + 1), 0, ch);
    }
  };
  draw(spec.noUpper ? LOWER : LETTERS, spec.letters, "letters");
  draw(DIGITS, spec.digits, "digits");
  draw(spec.symbolCharacters, spec.symbols, "symbols");
  return out.join("");
}

export function encodePassword(password: string, encoding: Encoding): string {
  const bytes = Buffer.from(password, "utf8");
  switch (encoding) {
    case "raw":
      return password;
    case "base64":
      return bytes.toString("base64");
    case "base64url":
      // Go's base64.URLEncoding keeps the padding; Node's "base64url" drops it.
      return bytes.toString("base64").replaceAll("+", "-").replaceAll("/", "_");
    case "base32":
      // RFC 4648 with padding, as Go's base32.StdEncoding writes it.
      return base32.stringify(bytes);
    case "hex":
      return bytes.toString("hex");
  }
}

/** What a `Password` generator returns: one independently generated, encoded password per secret key. */
export function generate(spec: PasswordSpec | ResolvedPasswordSpec, random: RandomSource = cryptoRandom): Record<string, string> {
  const resolved = isResolved(spec) ? spec : resolvePasswordSpec(spec);
  const out: Record<string, string> = {};
  for (const key of resolved.secretKeys) {
    out[key] = encodePassword(generatePassword(resolved, random), resolved.encoding);
  }
  return out;
}

function isResolved(spec: PasswordSpec | ResolvedPasswordSpec): spec is ResolvedPasswordSpec {
  return "letters" in spec && Array.isArray(spec.symbolCharacters);
}
