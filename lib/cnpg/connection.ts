// The keys of CloudNativePG's application Secret (`<cluster>-app`) and the derived connection
// strings in it: how CNPG builds them (pkg/specs/secrets.go, CreateSecret) and how the clients
// that consume them read them back (libpq URIs and .pgpass, pgJDBC URLs). Pure: no I/O.
import { ConnectionStringError } from "../errors.ts";
import { pgpassField, pgQuery, pgUserinfo } from "./escape.ts";

/** Every key CNPG writes into the application Secret, in the order CNPG lists them. */
export const CNPG_APP_SECRET_KEYS = [
  "username",
  "user",
  "password",
  "dbname",
  "host",
  "port",
  "pgpass",
  "uri",
  "jdbc-uri",
  "fqdn-uri",
  "fqdn-jdbc-uri",
] as const;
export type AppSecretKey = (typeof CNPG_APP_SECRET_KEYS)[number];

/** The keys that embed the password and must be rewritten with it (CNPG never rebuilds them). */
export const DERIVED_KEYS = ["pgpass", "uri", "jdbc-uri", "fqdn-uri", "fqdn-jdbc-uri"] as const;
export type DerivedKey = (typeof DERIVED_KEYS)[number];

export function isDerivedKey(key: string): key is DerivedKey {
  return (DERIVED_KEYS as readonly string[]).includes(key);
}

/** Which syntax a derived key holds. */
export type ConnectionKind = "uri" | "jdbc" | "pgpass";

export function derivedKeyKind(key: DerivedKey): ConnectionKind {
  if (key === "pgpass") return "pgpass";
  return key.endsWith("jdbc-uri") ? "jdbc" : "uri";
}

/** libpq recognises exactly these two prefixes, case-sensitively (uri_prefix_length). */
export const URI_PREFIXES = ["postgresql://", "postgres://"] as const;
/** pgJDBC's Driver.parseURL accepts any URL starting with this. */
export const JDBC_PREFIX = "jdbc:postgresql:";

export const DEFAULT_PORT = 5432;
/** CNPG's default for the operator setting KUBERNETES_CLUSTER_DOMAIN. */
export const DEFAULT_CLUSTER_DOMAIN = "cluster.local";

export interface AppSecretInput {
  clusterName: string;
  namespace: string;
  username: string;
  dbname: string;
  password: string;
  port?: number;
  clusterDomain?: string;
}

/**
 * The application Secret's `stringData` as CNPG writes it. Host `<cluster>-rw` for `host` and
 * `pgpass`, `<cluster>-rw.<ns>:<port>` for `uri`/`jdbc-uri`,
 * `<cluster>-rw.<ns>.svc.<domain>:<port>` for the `fqdn-*` keys; JDBC query `password` then
 * `user` (Go sorts query keys). Unlike CNPG (whose own passwords are alphanumeric) every value
 * is encoded for its position, so any password reads back intact.
 */
export function buildAppSecretData(input: AppSecretInput): Record<AppSecretKey, string> {
  const port = input.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConnectionStringError(`port: expected an integer from 1 to 65535, found ${port}`);
  }
  const domain = input.clusterDomain ?? DEFAULT_CLUSTER_DOMAIN;
  for (const field of ["clusterName", "namespace", "username", "dbname", "password"] as const) {
    if (input[field] === "") throw new ConnectionStringError(`${field}: must not be empty`);
  }
  assertUsable("username", input.username, "pgpass");
  assertUsable("dbname", input.dbname, "pgpass");
  assertUsable("password", input.password, "pgpass");
  const host = `${input.clusterName}-rw`;
  const namespaced = `${host}.${input.namespace}:${port}`;
  const fqdn = `${host}.${input.namespace}.svc.${domain}:${port}`;
  const { username, dbname, password } = input;
  return {
    username,
    user: username,
    password,
    dbname,
    host,
    port: String(port),
    pgpass: `${[host, String(port), dbname, username, password].map(pgpassField).join(":")}\n`,
    uri: buildUri(namespaced, username, password, dbname),
    "jdbc-uri": buildJdbc(namespaced, username, password, dbname),
    "fqdn-uri": buildUri(fqdn, username, password, dbname),
    "fqdn-jdbc-uri": buildJdbc(fqdn, username, password, dbname),
  };
}

function buildUri(hostPort: string, user: string, password: string, dbname: string): string {
  return `postgresql://${pgUserinfo(user)}:${pgUserinfo(password)}@${hostPort}/${percentEncode(dbname)}`;
}

function buildJdbc(hostPort: string, user: string, password: string, dbname: string): string {
  return `jdbc:postgresql://${hostPort}/${percentEncode(dbname)}?password=${pgQuery(password)}&user=${pgQuery(user)}`;
}

/**
 * Percent-encodes a dbname for the path of a URI or JDBC URL: every byte but RFC 3986's
 * unreserved set, the same set as pgQuery, so `/` (pgJDBC allows one) and `+` (URLDecoder
 * reads a space) are encoded too.
 */
export function percentEncode(value: string): string {
  return pgQuery(value);
}

/**
 * Refuses a value no client could carry: not valid Unicode, a NUL (libpq forbids %00 and C
 * strings end at it), or, in a .pgpass line, a line break (libpq reads line by line and strips
 * trailing CR/LF). Names the field, never the value.
 */
export function assertUsable(field: string, value: string, kind: ConnectionKind): void {
  if (!value.isWellFormed()) {
    throw new ConnectionStringError(`${field}: not valid Unicode (a lone UTF-16 surrogate)`);
  }
  if (value.includes("\0")) {
    throw new ConnectionStringError(
      `${field}: contains a NUL character, which no PostgreSQL client can pass`,
    );
  }
  if (kind === "pgpass" && (value.includes("\n") || value.endsWith("\r"))) {
    throw new ConnectionStringError(
      `${field}: contains a line break, which a .pgpass line cannot hold`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// What a client reads back.

/** Connection parameters as a client reads them; undefined when the string does not set one. */
export interface ConnectionParams {
  user: string | undefined;
  password: string | undefined;
  host: string | undefined;
  port: string | undefined;
  dbname: string | undefined;
}

/** A slice [start, end) of the string being parsed. */
export interface Span {
  start: number;
  end: number;
}

/** Where each part of a libpq connection URI lies, still encoded. */
export interface UriLayout {
  prefix: Span;
  user?: Span;
  password?: Span;
  hosts: Span[];
  ports: Span[];
  dbname?: Span;
  params: { key: Span; value: Span }[];
}

/**
 * Splits a connection URI the way libpq's conninfo_uri_parse_options does: userinfo ends at
 * the FIRST `@` (looked for before any `/`), the user at the first `:`; hosts end at `:` `/`
 * `?` `,`; the dbname runs to `?`; `#` means nothing special.
 */
export function scanUri(s: string, label = "connection URI"): UriLayout {
  const prefix = URI_PREFIXES.find((p) => s.startsWith(p));
  if (prefix === undefined) {
    throw new ConnectionStringError(`${label}: expected a postgresql:// or postgres:// URI`);
  }
  if (s.includes("\0")) throw new ConnectionStringError(`${label}: contains a NUL character`);
  const layout: UriLayout = {
    prefix: { start: 0, end: prefix.length },
    hosts: [],
    ports: [],
    params: [],
  };
  const n = s.length;
  let p = prefix.length;

  let q = p;
  while (q < n && s[q] !== "@" && s[q] !== "/") q++;
  if (s[q] === "@") {
    let c = p;
    while (s[c] !== ":" && s[c] !== "@") c++;
    layout.user = { start: p, end: c };
    if (s[c] === ":") layout.password = { start: c + 1, end: q };
    p = q + 1;
  }

  let terminator: string | undefined;
  for (;;) {
    let hostSpan: Span;
    if (s[p] === "[") {
      const start = ++p;
      while (p < n && s[p] !== "]") p++;
      if (p >= n) throw new ConnectionStringError(`${label}: IPv6 host is missing its "]"`);
      if (p === start) throw new ConnectionStringError(`${label}: IPv6 host is empty`);
      hostSpan = { start, end: p };
      p++;
      if (p < n && !":/?,".includes(s[p]!)) {
        throw new ConnectionStringError(`${label}: unexpected character after an IPv6 host`);
      }
    } else {
      const start = p;
      while (p < n && !":/?,".includes(s[p]!)) p++;
      hostSpan = { start, end: p };
    }
    layout.hosts.push(hostSpan);
    terminator = s[p];
    if (terminator === ":") {
      const start = ++p;
      while (p < n && !"/?,".includes(s[p]!)) p++;
      layout.ports.push({ start, end: p });
      terminator = s[p];
    }
    if (terminator !== ",") break;
    p++;
  }

  if (terminator !== undefined && terminator !== "?") {
    const start = ++p;
    while (p < n && s[p] !== "?") p++;
    layout.dbname = { start, end: p };
    terminator = s[p];
  }
  if (terminator !== undefined) {
    p++;
    while (p < n) {
      const keyStart = p;
      let eq = -1;
      while (p < n && s[p] !== "&") {
        if (s[p] === "=") {
          if (eq !== -1) {
            throw new ConnectionStringError(`${label}: extra "=" in a query parameter`);
          }
          eq = p;
        }
        p++;
      }
      if (eq === -1) throw new ConnectionStringError(`${label}: missing "=" in a query parameter`);
      layout.params.push({ key: { start: keyStart, end: eq }, value: { start: eq + 1, end: p } });
      if (p < n) p++;
    }
  }
  return layout;
}

/**
 * Reads a connection URI as libpq does (percent-decoding every part, empty user/password/host
 * ignored, query `user`/`password`/`host`/`port`/`dbname` overriding the rest), then checks that
 * a WHATWG `URL` parser (node-postgres, most URL libraries) sees the same user and password.
 */
export function readUri(s: string, label = "connection URI"): ConnectionParams {
  const layout = scanUri(s, label);
  const slice = (span: Span) => s.slice(span.start, span.end);
  const out: ConnectionParams = {
    user: undefined,
    password: undefined,
    host: undefined,
    port: undefined,
    dbname: undefined,
  };
  const store = (field: keyof ConnectionParams, raw: string | undefined) => {
    if (raw) out[field] = libpqDecode(raw, `${label}: the ${field}`);
  };
  if (layout.user) store("user", slice(layout.user));
  if (layout.password) store("password", slice(layout.password));
  store("host", layout.hosts.map(slice).join(","));
  store("port", layout.ports.map(slice).join(","));
  if (layout.dbname) store("dbname", slice(layout.dbname));
  for (const param of layout.params) {
    const key = libpqDecode(slice(param.key), `${label}: a query key`);
    if (key === "user" || key === "password" || key === "host" || key === "port" || key === "dbname") {
      // Unlike the URI parts, a query value is stored even when empty.
      out[key] = libpqDecode(slice(param.value), `${label}: the query ${key}`);
    }
  }
  crossCheckWhatwg(s, layout, out, label);
  return out;
}

function crossCheckWhatwg(
  s: string,
  layout: UriLayout,
  libpq: ConnectionParams,
  label: string,
): void {
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    // A multi-host list is libpq's extension, no WHATWG URL; anything else must be one.
    if (layout.hosts.length > 1) return;
    throw new ConnectionStringError(
      `${label}: a WHATWG URL parser (node-postgres and others) cannot parse it`,
    );
  }
  let user: string | undefined;
  let password: string | undefined;
  try {
    user = decodeURIComponent(url.username) || undefined;
    password = decodeURIComponent(url.password) || undefined;
    for (const [key, value] of url.searchParams) {
      if (key === "user") user = value;
      if (key === "password") password = value;
    }
  } catch {
    throw new ConnectionStringError(
      `${label}: a WHATWG URL parser reads an invalid percent-encoding in the user or password`,
    );
  }
  if (user !== libpq.user) {
    throw new ConnectionStringError(
      `${label}: libpq and a WHATWG URL parser read different user names`,
    );
  }
  if (password !== libpq.password) {
    throw new ConnectionStringError(
      `${label}: libpq and a WHATWG URL parser read different passwords`,
    );
  }
}

/** libpq's conninfo_uri_decode: `%XX` with two hex digits, %00 forbidden, `+` is a plus. */
export function libpqDecode(raw: string, what: string): string {
  if (!raw.includes("%")) return raw;
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < raw.length; ) {
    const ch = raw[i]!;
    if (ch !== "%") {
      const cp = raw.codePointAt(i)!;
      const text = String.fromCodePoint(cp);
      for (const b of encoder.encode(text)) bytes.push(b);
      i += text.length;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
      throw new ConnectionStringError(`${what} has an invalid percent-encoded token`);
    }
    const value = Number.parseInt(hex, 16);
    if (value === 0) throw new ConnectionStringError(`${what} contains %00, which libpq forbids`);
    bytes.push(value);
    i += 3;
  }
  return utf8(bytes, what);
}

function utf8(bytes: number[], what: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      Uint8Array.from(bytes),
    );
  } catch {
    throw new ConnectionStringError(`${what} percent-decodes to bytes that are not UTF-8`);
  }
}

/** Where each part of a pgJDBC URL lies, still encoded. */
export interface JdbcLayout {
  /** One entry per comma-separated address; `port` absent when the address has none. */
  addresses: { host: Span; port?: Span }[];
  dbname?: Span;
  /** `&`-separated tokens after the first `?`; `value` absent for a token without `=`. */
  params: { key: Span; value?: Span }[];
}

/**
 * Splits a JDBC URL the way pgJDBC's Driver.parseURL does: query after the FIRST `?`, at most
 * one `/` after `//`, the port after the last `:` of each comma-separated address, query
 * tokens split on `&` and at their first `=`.
 */
export function scanJdbc(s: string, label = "JDBC URL"): JdbcLayout {
  const qPos = s.indexOf("?");
  const serverEnd = qPos === -1 ? s.length : qPos;
  if (!s.startsWith(JDBC_PREFIX) || serverEnd < JDBC_PREFIX.length) {
    throw new ConnectionStringError(`${label}: expected a URL starting with jdbc:postgresql:`);
  }
  const layout: JdbcLayout = { addresses: [], params: [] };
  const base = JDBC_PREFIX.length;
  const server = s.slice(base, serverEnd);
  if (server === "//" || server === "///") {
    // No host and no database: pgJDBC's defaults apply.
  } else if (server.startsWith("//")) {
    const start = base + 2;
    const rest = s.slice(start, serverEnd);
    const slashes = rest.split("/").length - 1;
    if (slashes > 1) throw new ConnectionStringError(`${label}: contains too many "/" characters`);
    if (slashes === 0) {
      throw new ConnectionStringError(`${label}: needs a "/" after the host and port`);
    }
    const slash = start + rest.indexOf("/");
    if (slash + 1 < serverEnd) layout.dbname = { start: slash + 1, end: serverEnd };
    // Java's String.split drops trailing empty strings.
    const pieces: Span[] = [];
    let from = start;
    for (let i = start; i <= slash; i++) {
      if (i === slash || s[i] === ",") {
        pieces.push({ start: from, end: i });
        from = i + 1;
      }
    }
    while (pieces.length > 1 && pieces.at(-1)!.start === pieces.at(-1)!.end) pieces.pop();
    if (pieces.length === 1 && pieces[0]!.start === pieces[0]!.end && slash > start) {
      throw new ConnectionStringError(`${label}: has no host in its address list`);
    }
    for (const piece of pieces) {
      const address = s.slice(piece.start, piece.end);
      const colon = address.lastIndexOf(":");
      if (colon !== -1 && address.lastIndexOf("]") < colon) {
        layout.addresses.push({
          host: { start: piece.start, end: piece.start + colon },
          port: { start: piece.start + colon + 1, end: piece.end },
        });
      } else {
        layout.addresses.push({ host: piece });
      }
    }
  } else if (server.startsWith("/")) {
    throw new ConnectionStringError(`${label}: a single "/" cannot start the host part`);
  } else if (server.length > 0) {
    layout.dbname = { start: base, end: serverEnd };
  }
  if (qPos !== -1) {
    let from = qPos + 1;
    for (let i = from; i <= s.length; i++) {
      if (i === s.length || s[i] === "&") {
        if (i > from) {
          const eq = s.indexOf("=", from);
          if (eq === -1 || eq >= i) layout.params.push({ key: { start: from, end: i } });
          else layout.params.push({ key: { start: from, end: eq }, value: { start: eq + 1, end: i } });
        }
        from = i + 1;
      }
    }
  }
  return layout;
}

/**
 * Reads a JDBC URL as pgJDBC does: values (and the dbname) decoded with
 * java.net.URLDecoder (`+` is a space), keys taken literally, `host`/`port`/`dbname` keys
 * (any case) overriding the address, the last occurrence of a key winning; default host
 * localhost, port 5432, dbname the user.
 */
export function readJdbc(s: string, label = "JDBC URL"): ConnectionParams {
  const layout = scanJdbc(s, label);
  const slice = (span: Span) => s.slice(span.start, span.end);
  const props = new Map<string, string>();
  if (layout.dbname) props.set("PGDBNAME", javaUrlDecode(slice(layout.dbname), `${label}: the dbname`));
  if (layout.addresses.length > 0) {
    // An empty host before a port means localhost; an empty address stays empty (as in Java).
    const hosts = layout.addresses.map((a) => (a.port && !slice(a.host) ? "localhost" : slice(a.host)));
    props.set("PGHOST", hosts.join(","));
    props.set("PGPORT", layout.addresses.map((a) => (a.port ? slice(a.port) : "5432")).join(","));
  }
  for (const param of layout.params) {
    const rawKey = slice(param.key);
    if (param.value === undefined) {
      props.set(rawKey, "");
      continue;
    }
    const translated = `PG${rawKey.toUpperCase()}`;
    const key = ["PGHOST", "PGPORT", "PGDBNAME"].includes(translated) ? translated : rawKey;
    props.set(key, javaUrlDecode(slice(param.value), `${label}: the query ${key}`));
  }
  const user = props.get("user");
  const host = props.get("PGHOST") ?? "localhost";
  const port = props.get("PGPORT") ?? String(DEFAULT_PORT);
  // pgJDBC's propertiesConsistencyCheck: every port a number from 1 to 65535, one per host.
  const ports = port.split(",");
  if (ports.some((v) => !/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535)) {
    throw new ConnectionStringError(`${label}: a port is not a number from 1 to 65535`);
  }
  if (ports.length !== host.split(",").length) {
    throw new ConnectionStringError(`${label}: needs as many ports as hosts`);
  }
  return {
    user,
    password: props.get("password"),
    host,
    port,
    dbname: props.get("PGDBNAME") ?? user,
  };
}

/**
 * java.net.URLDecoder.decode(s, UTF-8): `+` is a space, runs of `%XX` are UTF-8 bytes.
 * Stricter than Java where Java is lenient by accident (a sign or a non-ASCII digit after `%`,
 * malformed UTF-8 replaced by U+FFFD): those throw here, so we never accept what Java misreads.
 */
export function javaUrlDecode(raw: string, what: string): string {
  if (!raw.includes("%") && !raw.includes("+")) return raw;
  let out = "";
  for (let i = 0; i < raw.length; ) {
    const ch = raw[i]!;
    if (ch === "+") {
      out += " ";
      i++;
    } else if (ch === "%") {
      const bytes: number[] = [];
      while (raw[i] === "%") {
        const hex = raw.slice(i + 1, i + 3);
        if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
          throw new ConnectionStringError(`${what} has an invalid escape (%) pattern`);
        }
        bytes.push(Number.parseInt(hex, 16));
        i += 3;
      }
      out += utf8(bytes, what);
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

/** A .pgpass entry as libpq reads it. `wildcard` marks fields written as a bare `*`. */
export interface PgpassEntry {
  host: string;
  port: string;
  dbname: string;
  user: string;
  password: string;
  wildcard: { host: boolean; port: boolean; dbname: boolean; user: boolean };
}

/** Where the fields of one .pgpass entry lie. */
export interface PgpassLayout {
  line: Span;
  /** host, port, dbname, user, password: raw, still escaped. */
  fields: [Span, Span, Span, Span, Span];
}

const PGPASS_FIELDS = ["host", "port", "dbname", "user"] as const;

/**
 * Splits .pgpass text into entries as libpq's passwordFromFile/pwdfMatchesString do: lines
 * split at LF, trailing CR/LF stripped, empty and `#` lines skipped, four fields ended by an
 * unescaped `:`, then the password up to the next unescaped `:` (libpq ignores the rest). A
 * line libpq could never match (too few fields) is refused rather than skipped.
 */
export function scanPgpassEntries(text: string, label = "pgpass"): PgpassLayout[] {
  const entries: PgpassLayout[] = [];
  for (let start = 0; start <= text.length; ) {
    const nl = text.indexOf("\n", start);
    const lineEnd = nl === -1 ? text.length : nl;
    let end = lineEnd;
    while (end > start && (text[end - 1] === "\r" || text[end - 1] === "\n")) end--;
    if (end > start && text[start] !== "#") entries.push(scanPgpassLine(text, { start, end }, label));
    if (nl === -1) break;
    start = nl + 1;
  }
  if (entries.length === 0) throw new ConnectionStringError(`${label}: has no entry line`);
  return entries;
}

/** The first entry of .pgpass text. */
export function scanPgpass(text: string, label = "pgpass"): PgpassLayout {
  return scanPgpassEntries(text, label)[0]!;
}

function scanPgpassLine(text: string, line: Span, label: string): PgpassLayout {
  if (text.slice(line.start, line.end).includes("\0")) {
    throw new ConnectionStringError(`${label}: contains a NUL character`);
  }
  const fields: Span[] = [];
  let p = line.start;
  for (let f = 0; f < 4; f++) {
    const start = p;
    let closed = false;
    while (p < line.end) {
      if (text[p] === "\\") {
        p += 2;
        continue;
      }
      if (text[p] === ":") {
        closed = true;
        break;
      }
      p++;
    }
    if (!closed) {
      throw new ConnectionStringError(
        `${label}: expected host:port:dbname:user:password, found only ${f + 1} field(s)`,
      );
    }
    fields.push({ start, end: p });
    p++;
  }
  const start = p;
  while (p < line.end && text[p] !== ":") p += text[p] === "\\" && p + 1 < line.end ? 2 : 1;
  fields.push({ start, end: p });
  return { line, fields: fields as PgpassLayout["fields"] };
}

function pgpassEntry(text: string, layout: PgpassLayout): PgpassEntry {
  const raw = layout.fields.map((f) => text.slice(f.start, f.end));
  const unescapeField = (v: string) => v.replace(/\\([\s\S])/g, "$1");
  const wildcard = { host: false, port: false, dbname: false, user: false };
  const values: string[] = [];
  PGPASS_FIELDS.forEach((name, i) => {
    wildcard[name] = raw[i] === "*";
    values.push(unescapeField(raw[i]!));
  });
  return {
    host: values[0]!,
    port: values[1]!,
    dbname: values[2]!,
    user: values[3]!,
    password: unescapeField(raw[4]!),
    wildcard,
  };
}

/** Every entry of .pgpass text, read as libpq would. */
export function readPgpassEntries(text: string, label = "pgpass"): PgpassEntry[] {
  return scanPgpassEntries(text, label).map((layout) => pgpassEntry(text, layout));
}

/** The first entry of .pgpass text (a trailing newline is ignored), read as libpq would. */
export function readPgpass(text: string, label = "pgpass"): PgpassEntry {
  return pgpassEntry(text, scanPgpass(text, label));
}

// ---------------------------------------------------------------------------------------------
// Rotation: replace only the password in an existing derived value.

/**
 * The existing value of a derived key with only its password replaced: host, port, dbname,
 * user, other query parameters and their order stay as they are. With `username`, the value
 * must name that user (and a URI without userinfo gets it). Throws ConnectionStringError naming
 * the key (never the value) when the value cannot be parsed.
 */
export function rewritePassword(
  key: string,
  existingValue: string,
  newPassword: string,
  username?: string,
): string {
  if (!isDerivedKey(key)) {
    throw new ConnectionStringError(
      `${key}: not a derived key of the CNPG application Secret (expected one of ${DERIVED_KEYS.join(", ")})`,
    );
  }
  const kind = derivedKeyKind(key);
  if (newPassword === "") throw new ConnectionStringError(`${key}: the new password is empty`);
  assertUsable(`${key}: the new password`, newPassword, kind);
  if (kind === "pgpass") return rewritePgpass(key, existingValue, newPassword, username);
  const read = kind === "uri" ? readUri : readJdbc;
  const before = read(existingValue, key);
  if (username !== undefined && before.user !== undefined && before.user !== username) {
    throw new ConnectionStringError(`${key}: names a different user than ${username}`);
  }
  const rewritten =
    kind === "uri"
      ? rewriteUri(key, existingValue, newPassword, username)
      : rewriteJdbc(key, existingValue, newPassword);
  const after = read(rewritten, key);
  if (after.password !== newPassword || after.user !== (before.user ?? after.user)) {
    // Only reachable if an escaping function and a reader disagree: a bug, not bad input.
    throw new ConnectionStringError(`${key}: rewriting the password did not read back intact`);
  }
  return rewritten;
}

/**
 * The existing value of a derived key with both its user and password replaced (the
 * alternating strategy switching the consumer Secret from one role to the other): everything
 * else — host, port, dbname, other parameters and their order — stays as it is. Every place a
 * client would read the user or password from is rewritten, then read back and checked.
 */
export function rewriteCredentials(key: string, existingValue: string, user: string, password: string): string {
  if (!isDerivedKey(key)) {
    throw new ConnectionStringError(`${key}: not a derived key of the CNPG application Secret (expected one of ${DERIVED_KEYS.join(", ")})`);
  }
  const kind = derivedKeyKind(key);
  if (password === "") throw new ConnectionStringError(`${key}: the new password is empty`);
  if (user === "") throw new ConnectionStringError(`${key}: the new user is empty`);
  assertUsable(`${key}: the new password`, password, kind);
  assertUsable(`${key}: the new user`, user, kind);
  let rewritten: string;
  if (kind === "pgpass") {
    const edits: Edit[] = [];
    for (const layout of scanPgpassEntries(existingValue, key)) {
      edits.push({ span: layout.fields[3], text: pgpassField(user) }, { span: layout.fields[4], text: pgpassField(password) });
    }
    rewritten = applyEdits(existingValue, edits);
    if (readPgpassEntries(rewritten, key).some((e) => e.user !== user || e.password !== password)) {
      throw new ConnectionStringError(`${key}: rewriting the credentials did not read back intact`);
    }
    return rewritten;
  }
  if (kind === "uri") {
    const layout = scanUri(existingValue, key);
    const edits: Edit[] = [];
    for (const param of layout.params) {
      const name = libpqDecode(existingValue.slice(param.key.start, param.key.end), `${key}: a query key`);
      if (name === "user") edits.push({ span: param.value, text: pgQuery(user) });
      if (name === "password") edits.push({ span: param.value, text: pgQuery(password) });
    }
    const userinfo = `${pgUserinfo(user)}:${pgUserinfo(password)}`;
    if (layout.user) {
      edits.push({ span: { start: layout.user.start, end: (layout.password ?? layout.user).end }, text: userinfo });
    } else {
      edits.push({ span: { start: layout.prefix.end, end: layout.prefix.end }, text: `${userinfo}@` });
    }
    rewritten = applyEdits(existingValue, edits);
  } else {
    const edits: Edit[] = [];
    const seen = new Set<string>();
    for (const param of scanJdbc(existingValue, key).params) {
      const name = existingValue.slice(param.key.start, param.key.end);
      if (name !== "user" && name !== "password") continue;
      seen.add(name);
      const text = pgQuery(name === "user" ? user : password);
      if (param.value) edits.push({ span: param.value, text });
      else edits.push({ span: param.key, text: `${name}=${text}` });
    }
    rewritten = applyEdits(existingValue, edits);
    for (const [name, value] of [["password", password], ["user", user]] as const) {
      if (seen.has(name)) continue;
      const sep = !rewritten.includes("?") ? "?" : /[?&]$/.test(rewritten) ? "" : "&";
      rewritten = `${rewritten}${sep}${name}=${pgQuery(value)}`;
    }
  }
  const after = (kind === "uri" ? readUri : readJdbc)(rewritten, key);
  if (after.user !== user || after.password !== password) {
    throw new ConnectionStringError(`${key}: rewriting the credentials did not read back intact`);
  }
  return rewritten;
}

/** Replaces the userinfo password and every `password` query value (which libpq prefers). */
function rewriteUri(key: string, value: string, password: string, username?: string): string {
  const layout = scanUri(value, key);
  const edits: Edit[] = [];
  for (const param of layout.params) {
    const name = libpqDecode(value.slice(param.key.start, param.key.end), `${key}: a query key`);
    if (name === "password") edits.push({ span: param.value, text: pgQuery(password) });
  }
  if (layout.password) {
    edits.push({ span: layout.password, text: pgUserinfo(password) });
  } else if (edits.length === 0 && layout.user) {
    const at = layout.user.end;
    edits.push({ span: { start: at, end: at }, text: `:${pgUserinfo(password)}` });
  } else if (edits.length === 0) {
    if (username === undefined) {
      throw new ConnectionStringError(
        `${key}: has no user to attach the password to; pass the user name`,
      );
    }
    const at = layout.prefix.end;
    const userinfo = `${pgUserinfo(username)}:${pgUserinfo(password)}@`;
    edits.push({ span: { start: at, end: at }, text: userinfo });
  }
  return applyEdits(value, edits);
}

/** Replaces every `password` query value (pgJDBC keeps the last), or appends one. */
function rewriteJdbc(key: string, value: string, password: string): string {
  const edits: Edit[] = [];
  for (const param of scanJdbc(value, key).params) {
    if (value.slice(param.key.start, param.key.end) !== "password") continue;
    if (param.value) edits.push({ span: param.value, text: pgQuery(password) });
    else edits.push({ span: param.key, text: `password=${pgQuery(password)}` });
  }
  if (edits.length > 0) return applyEdits(value, edits);
  const sep = !value.includes("?") ? "?" : /[?&]$/.test(value) ? "" : "&";
  return `${value}${sep}password=${pgQuery(password)}`;
}

/** Replaces the password of every entry libpq would use for `username` (of all, without one). */
function rewritePgpass(key: string, value: string, password: string, username?: string): string {
  const forUser = (entry: PgpassEntry) => username === undefined || readsAsUser(entry, username);
  const edits: Edit[] = [];
  for (const layout of scanPgpassEntries(value, key)) {
    if (forUser(pgpassEntry(value, layout))) {
      edits.push({ span: layout.fields[4], text: pgpassField(password) });
    }
  }
  if (edits.length === 0) {
    throw new ConnectionStringError(`${key}: has no entry for user ${username}`);
  }
  const rewritten = applyEdits(value, edits);
  const entries = readPgpassEntries(rewritten, key).filter(forUser);
  if (entries.some((entry) => entry.password !== password)) {
    throw new ConnectionStringError(`${key}: rewriting the password did not read back intact`);
  }
  return rewritten;
}

/** Whether a client would use these parameters for `user` (a .pgpass `*` matches anyone). */
export function readsAsUser(params: ConnectionParams | PgpassEntry, user: string): boolean {
  return params.user === user || (params as Partial<PgpassEntry>).wildcard?.user === true;
}

type Edit = { span: Span; text: string };

function applyEdits(s: string, edits: Edit[]): string {
  let out = s;
  for (const edit of [...edits].sort((a, b) => b.span.start - a.span.start)) {
    out = out.slice(0, edit.span.start) + edit.text + out.slice(edit.span.end);
  }
  return out;
}
