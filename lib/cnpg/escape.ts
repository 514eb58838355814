// Escapers for the places a value lands in a CNPG derived key. They are plain
// functions here so the CNPG code can reuse them; the template engine registers
// them as template functions too (pgUserinfo, pgQuery, pgpassField).

const encoder = new TextEncoder();
const HEX = "0123456789ABCDEF";

/** RFC 3986 unreserved characters: the only bytes every URI reader leaves alone. */
function isUnreserved(byte: number): boolean {
  return (
    (byte >= 0x41 && byte <= 0x5a) || // A-Z
    (byte >= 0x61 && byte <= 0x7a) || // a-z
    (byte >= 0x30 && byte <= 0x39) || // 0-9
    byte === 0x2d || // -
    byte === 0x2e || // .
    byte === 0x5f || // _
    byte === 0x7e // ~
  );
}

const UNRESERVED_ONLY = /^[A-Za-z0-9\-._~]*$/;

/** Percent-encodes every UTF-8 byte of `value` except the RFC 3986 unreserved set. */
function percentEncodeUnreserved(value: string): string {
  if (UNRESERVED_ONLY.test(value)) return value;
  let out = "";
  for (const byte of encoder.encode(value)) {
    if (isUnreserved(byte)) out += String.fromCharCode(byte);
    else out += "%" + HEX[byte >> 4] + HEX[byte & 15];
  }
  return out;
}

/**
 * Encodes a user name or password for the userinfo part of a URI
 * (`postgresql://USER:PASSWORD@host/db`). Only unreserved characters stay as they
 * are, which both libpq and WHATWG URL parsers decode back to the same value.
 */
export function pgUserinfo(value: string): string {
  return percentEncodeUnreserved(value);
}

/**
 * Encodes a value for a query parameter of a JDBC or PostgreSQL URL
 * (`?password=VALUE`). Like encodeURIComponent, but `!'()*` are encoded too and a
 * space becomes `%20`, never `+`: libpq does not read `+` as a space.
 */
export function pgQuery(value: string): string {
  return percentEncodeUnreserved(value);
}

/**
 * Escapes one field of a libpq `.pgpass` line: `\` and `:` get a backslash. A field
 * that is exactly `*` is a wildcard to libpq, so it is written `\*` (read back as `*`).
 */
export function pgpassField(value: string): string {
  if (value === "*") return "\\*";
  return value.replace(/[\\:]/g, "\\$&");
}
