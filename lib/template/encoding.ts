// Go's encoders as templates observe them: encoding/base64 and encoding/base32
// (StdEncoding, with Go's error messages), url.QueryEscape, and text/template's
// html and js escapers.

import { Buffer } from "node:buffer";
import { isPrint } from "./format.ts";
import { utf8Bytes } from "./values.ts";

const B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B32_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const PAD = 0x3d; // '='
const CR = 0x0d;
const LF = 0x0a;

function decodeMap(alphabet: string): Uint8Array {
  const map = new Uint8Array(256).fill(0xff);
  for (let i = 0; i < alphabet.length; i++) map[alphabet.charCodeAt(i)] = i;
  return map;
}

const B64_MAP = decodeMap(B64_ALPHABET);
const B32_MAP = decodeMap(B32_ALPHABET);

/** The outcome of a Go decoder: the bytes decoded so far and an error message, if any. */
export interface Decoded {
  readonly bytes: Uint8Array;
  readonly error?: string;
}

function corrupt(kind: string, at: number): string {
  return `illegal ${kind} data at input byte ${at}`;
}

export function base64Encode(s: string): string {
  return Buffer.from(utf8Bytes(s)).toString("base64");
}

/** base64.StdEncoding.DecodeString: padding required, CR and LF ignored. */
export function base64Decode(s: string): Decoded {
  const src = utf8Bytes(s);
  const out: number[] = [];
  let si = 0;
  while (si < src.length) {
    const dbuf = [0, 0, 0, 0];
    let dlen = 4;
    let error: string | undefined;
    let j = 0;
    for (; j < 4; j++) {
      if (si === src.length) {
        if (j === 0) return { bytes: Uint8Array.from(out) };
        return { bytes: Uint8Array.from(out), error: corrupt("base64", si - j) };
      }
      const c = src[si++] as number;
      const v = B64_MAP[c] as number;
      if (v !== 0xff) {
        dbuf[j] = v;
        continue;
      }
      if (c === LF || c === CR) {
        j--;
        continue;
      }
      if (c !== PAD) return { bytes: Uint8Array.from(out), error: corrupt("base64", si - 1) };
      // Padding: only after two or three characters of a quantum.
      if (j < 2) return { bytes: Uint8Array.from(out), error: corrupt("base64", si - 1) };
      if (j === 2) {
        while (si < src.length && (src[si] === LF || src[si] === CR)) si++;
        if (si === src.length) return { bytes: Uint8Array.from(out), error: corrupt("base64", src.length) };
        if (src[si] !== PAD) return { bytes: Uint8Array.from(out), error: corrupt("base64", si - 1) };
        si++;
      }
      while (si < src.length && (src[si] === LF || src[si] === CR)) si++;
      if (si < src.length) error = corrupt("base64", si);
      dlen = j;
      break;
    }
    const val = ((dbuf[0] as number) << 18) | ((dbuf[1] as number) << 12) | ((dbuf[2] as number) << 6) | (dbuf[3] as number);
    if (dlen >= 2) out.push((val >> 16) & 0xff);
    if (dlen >= 3) out.push((val >> 8) & 0xff);
    if (dlen >= 4) out.push(val & 0xff);
    if (error !== undefined) return { bytes: Uint8Array.from(out), error };
    if (dlen < 4) break;
  }
  return { bytes: Uint8Array.from(out) };
}

export function base32Encode(s: string): string {
  const src = utf8Bytes(s);
  let out = "";
  for (let i = 0; i < src.length; i += 5) {
    const chunk = src.subarray(i, i + 5);
    let bits = 0n;
    for (let k = 0; k < 5; k++) bits = (bits << 8n) | BigInt(chunk[k] ?? 0);
    const chars = [0, 2, 4, 5, 7][chunk.length] ?? 8;
    const encoded = chunk.length === 5 ? 8 : chars;
    for (let k = 0; k < 8; k++) {
      out += k < encoded ? B32_ALPHABET[Number((bits >> BigInt(35 - 5 * k)) & 31n)] : "=";
    }
  }
  return out;
}

/** base32.StdEncoding.DecodeString: CR and LF are removed first, padding required. */
export function base32Decode(s: string): Decoded {
  const src = utf8Bytes(s).filter((c) => c !== CR && c !== LF);
  const olen = src.length;
  const out: number[] = [];
  let at = 0;
  let end = false;
  const remaining = () => olen - at;
  while (remaining() > 0 && !end) {
    const dbuf = [0, 0, 0, 0, 0, 0, 0, 0];
    let dlen = 8;
    for (let j = 0; j < 8; ) {
      if (remaining() === 0) return { bytes: Uint8Array.from(out), error: corrupt("base32", olen - j) };
      const c = src[at++] as number;
      if (c === PAD && j >= 2 && remaining() < 8) {
        if (remaining() + j < 7) return { bytes: Uint8Array.from(out), error: corrupt("base32", olen) };
        for (let k = 0; k < 7 - j; k++) {
          if (remaining() > k && src[at + k] !== PAD) {
            return { bytes: Uint8Array.from(out), error: corrupt("base32", at + k - 1) };
          }
        }
        dlen = j;
        end = true;
        if (dlen === 1 || dlen === 3 || dlen === 6) {
          return { bytes: Uint8Array.from(out), error: corrupt("base32", at - 1) };
        }
        break;
      }
      const v = B32_MAP[c] as number;
      if (v === 0xff) return { bytes: Uint8Array.from(out), error: corrupt("base32", at - 1) };
      dbuf[j++] = v;
    }
    const d = dbuf as [number, number, number, number, number, number, number, number];
    const bytes = [
      ((d[0] << 3) | (d[1] >> 2)) & 0xff,
      ((d[1] << 6) | (d[2] << 1) | (d[3] >> 4)) & 0xff,
      ((d[3] << 4) | (d[4] >> 1)) & 0xff,
      ((d[4] << 7) | (d[5] << 2) | (d[6] >> 3)) & 0xff,
      ((d[6] << 5) | d[7]) & 0xff,
    ];
    const count = { 8: 5, 7: 4, 5: 3, 4: 2, 2: 1 }[dlen] ?? 0;
    out.push(...bytes.slice(0, count));
  }
  return { bytes: Uint8Array.from(out) };
}

const HEX = "0123456789ABCDEF";
const QUERY_SAFE = /^[A-Za-z0-9\-_.~]*$/;

/** url.QueryEscape: unreserved bytes stay, space becomes '+', the rest %XX. */
export function urlQueryEscape(s: string): string {
  if (QUERY_SAFE.test(s)) return s;
  let out = "";
  for (const b of utf8Bytes(s)) {
    const c = String.fromCharCode(b);
    if (b < 0x80 && QUERY_SAFE.test(c)) out += c;
    else if (b === 0x20) out += "+";
    else out += "%" + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

const HTML_SPECIAL = /["'&<>\0]/g;
const HTML_REPLACEMENTS: Record<string, string> = {
  '"': "&#34;",
  "'": "&#39;",
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  "\0": "\uFFFD",
};

/** template.HTMLEscapeString. */
export function htmlEscape(s: string): string {
  return s.replace(HTML_SPECIAL, (c) => HTML_REPLACEMENTS[c] as string);
}

/** template.JSEscapeString. */
export function jsEscape(s: string): string {
  let out = "";
  for (const ch of s) {
    let cp = ch.codePointAt(0) as number;
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd;
    switch (ch) {
      case "\\":
        out += "\\\\";
        continue;
      case "'":
        out += "\\'";
        continue;
      case '"':
        out += '\\"';
        continue;
      case "<":
        out += "\\u003C";
        continue;
      case ">":
        out += "\\u003E";
        continue;
      case "&":
        out += "\\u0026";
        continue;
      case "=":
        out += "\\u003D";
        continue;
    }
    if (cp < 0x20) out += "\\u00" + HEX[cp >> 4] + HEX[cp & 15];
    else if (cp < 0x80 || isPrint(cp)) out += String.fromCodePoint(cp);
    else out += "\\u" + cp.toString(16).toUpperCase().padStart(4, "0");
  }
  return out;
}
