// Go's encoders as templates observe them: encoding/base64 and encoding/base32
// (StdEncoding, with Go's error messages), url.QueryEscape, and text/template's
// html and js escapers.

import { Buffer } from "node:buffer";
import { base32 } from "rfc4648";
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
  return base32.stringify(utf8Bytes(s));
}

/**
 * Where Go's base32.StdEncoding decoder stops on s (newlines already removed): the
 * length it decodes, or the offset its CorruptInputError names. This is Go's own
 * acceptance rule, which no library shares: padding is recognised only in the last
 * quantum, and whatever follows a complete padded quantum is ignored.
 */
function goBase32Extent(src: Uint8Array): { end: number } | { corruptAt: number } {
  const olen = src.length;
  for (let at = 0; at < olen; ) {
    for (let j = 0; j < 8; j++) {
      if (at === olen) return { corruptAt: olen - j };
      const c = src[at++] as number;
      const left = olen - at;
      if (c === PAD && j >= 2 && left < 8) {
        if (left + j < 7) return { corruptAt: olen };
        for (let k = 0; k < 7 - j; k++) if (left > k && src[at + k] !== PAD) return { corruptAt: at + k - 1 };
        // 1, 3 and 6 characters carry no whole byte (RFC 4648 §6).
        if (j === 1 || j === 3 || j === 6) return { corruptAt: at - 1 };
        return { end: at + 7 - j };
      }
      if (!B32_ALPHABET.includes(String.fromCharCode(c))) return { corruptAt: at - 1 };
    }
  }
  return { end: olen };
}

/**
 * base32.StdEncoding.DecodeString: CR and LF are removed first, padding is required,
 * and the error is Go's (sprig's b32dec prints it). rfc4648 does the decoding, once
 * the unused low bits of a final partial quantum are cleared: Go ignores them, rfc4648
 * rejects them.
 */
export function base32Decode(s: string): Decoded {
  const src = utf8Bytes(s).filter((c) => c !== CR && c !== LF);
  const extent = goBase32Extent(src);
  if ("corruptAt" in extent) return { bytes: new Uint8Array(), error: corrupt("base32", extent.corruptAt) };
  const text = new TextDecoder().decode(src.subarray(0, extent.end));
  const data = text.replace(/=+$/, "");
  const unused = (data.length * 5) % 8;
  const last = B32_ALPHABET.indexOf(data[data.length - 1] ?? "A");
  const canonical = data.slice(0, -1) + (B32_ALPHABET[last & ~((1 << unused) - 1)] ?? "") + text.slice(data.length);
  return { bytes: base32.parse(unused === 0 ? text : canonical) };
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
