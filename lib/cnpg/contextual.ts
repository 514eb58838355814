// Contextual escaping of ESO template values, the way Go's html/template escapes by context:
// when a rendered value is a PostgreSQL connection string, each interpolated value is escaped
// for the position it lands in, and the result is then checked the way a client reads it.
// This is our documented improvement on ESO, whose seed template writes broken URIs. Pure.
import { ConnectionStringError } from "../errors.ts";
import {
  type ConnectionKind,
  type ConnectionParams,
  derivedKeyKind,
  isDerivedKey,
  JDBC_PREFIX,
  type PgpassEntry,
  percentEncode,
  readJdbc,
  readPgpassEntries,
  readsAsUser,
  readUri,
  type Span,
  scanJdbc,
  scanPgpassEntries,
  scanUri,
  URI_PREFIXES,
} from "./connection.ts";
import { pgpassField, pgQuery, pgUserinfo } from "./escape.ts";

/** Rendered template output: literal text and the values of actions (`{{ ... }}`). */
export type Fragment =
  | { kind: "text"; text: string }
  | {
      kind: "action";
      value: string;
      /** Name of the escaping function the pipeline ended in; such a value is left alone. */
      escapedBy?: string;
    };

/** Where an action's value lands in a connection string. */
export type Position =
  | "scheme"
  | "userinfo-user"
  | "userinfo-password"
  | "host"
  | "port"
  | "path"
  | "query-key"
  | "query-value"
  | "fragment"
  | "pgpass-field";

export interface ActionPosition {
  position: Position;
  /** For `pgpass-field`: 0 host, 1 port, 2 dbname, 3 user, 4 password. */
  field?: number;
}

/** Whether a rendered value is a connection string we escape and check, and which syntax. */
export function connectionKind(key: string, value: string): ConnectionKind | undefined {
  if (key === "pgpass") return "pgpass";
  if (URI_PREFIXES.some((prefix) => value.startsWith(prefix))) return "uri";
  if (value.startsWith(JDBC_PREFIX)) return "jdbc";
  return undefined;
}

function concat(fragments: readonly Fragment[]): string {
  return fragments.map((f) => (f.kind === "text" ? f.text : f.value)).join("");
}

/**
 * Renders `fragments` with each action value that no function escaped yet escaped for its
 * position: userinfo → pgUserinfo, query value → pgQuery, dbname path → percent-encoding, .pgpass field → pgpassField. Hosts, ports and
 * the scheme are left as they are (checkConnectionString catches what breaks there). A value
 * that is no connection string is the plain concatenation.
 */
export function escapeConnectionString(key: string, fragments: readonly Fragment[]): string {
  const positions = locateActions(key, fragments);
  if (positions === undefined) return concat(fragments);
  const kind = connectionKind(key, concat(fragments))!;
  return fragments
    .map((fragment, i) => {
      if (fragment.kind === "text") return fragment.text;
      if (fragment.escapedBy !== undefined) return fragment.value;
      return escapeFor(kind, positions[i]!, fragment.value);
    })
    .join("");
}

function escapeFor(kind: ConnectionKind, at: ActionPosition, value: string): string {
  switch (at.position) {
    case "userinfo-user":
    case "userinfo-password":
      return pgUserinfo(value);
    case "path":
    case "fragment":
      return percentEncode(value);
    case "query-key":
      // libpq percent-decodes query keys; pgJDBC takes them literally.
      return kind === "uri" ? percentEncode(value) : value;
    case "query-value":
      return pgQuery(value);
    case "pgpass-field":
      return pgpassField(value);
    default:
      return value;
  }
}

/**
 * The position of each action of a connection-string value (undefined entries for text), found
 * by parsing a skeleton in which every action is a unique alphanumeric sentinel. Undefined when
 * the value is no connection string or its skeleton does not parse as one (then actions carry
 * the structure themselves and nothing can be escaped safely).
 */
export function locateActions(
  key: string,
  fragments: readonly Fragment[],
): (ActionPosition | undefined)[] | undefined {
  const kind = connectionKind(key, concat(fragments));
  if (kind === undefined) return undefined;
  const texts = fragments.flatMap((f) => (f.kind === "text" ? [f.text] : []));
  let base = "cnpgSentinel";
  for (let n = 0; texts.some((t) => t.includes(base)); n++) base = `cnpgSentinel${n}Q`;
  let skeleton = "";
  const offsets: (Span | undefined)[] = fragments.map((f, i) => {
    if (f.kind === "text") {
      skeleton += f.text;
      return undefined;
    }
    const start = skeleton.length;
    skeleton += `${base}${i}Z`;
    return { start, end: skeleton.length };
  });
  if (connectionKind(key, skeleton) !== kind) return undefined;
  let regions: { span: Span; at: ActionPosition }[];
  try {
    regions = skeletonRegions(kind, skeleton);
  } catch (error) {
    if (error instanceof ConnectionStringError) return undefined;
    throw error;
  }
  return offsets.map((sentinel) => {
    if (sentinel === undefined) return undefined;
    const region = regions.find(
      (r) => r.span.start <= sentinel.start && sentinel.end <= r.span.end,
    );
    let at = region?.at ?? { position: "scheme" as const };
    // libpq reads past `#`, WHATWG URLs stop there: percent-encoding reads the same in both.
    if (
      kind === "uri" &&
      (at.position === "path" || at.position === "query-key" || at.position === "query-value") &&
      skeleton.slice(0, sentinel.start).includes("#")
    ) {
      at = { position: "fragment" };
    }
    return at;
  });
}

function skeletonRegions(kind: ConnectionKind, s: string): { span: Span; at: ActionPosition }[] {
  const regions: { span: Span; at: ActionPosition }[] = [];
  const add = (span: Span | undefined, position: Position, field?: number) => {
    if (span) regions.push({ span, at: field === undefined ? { position } : { position, field } });
  };
  if (kind === "uri") {
    const layout = scanUri(s);
    add(layout.user, "userinfo-user");
    add(layout.password, "userinfo-password");
    for (const host of layout.hosts) add(host, "host");
    for (const port of layout.ports) add(port, "port");
    add(layout.dbname, "path");
    for (const param of layout.params) {
      add(param.key, "query-key");
      add(param.value, "query-value");
    }
  } else if (kind === "jdbc") {
    const layout = scanJdbc(s);
    for (const address of layout.addresses) {
      add(address.host, "host");
      add(address.port, "port");
    }
    add(layout.dbname, "path");
    for (const param of layout.params) {
      add(param.key, "query-key");
      add(param.value, "query-value");
    }
  } else {
    for (const entry of scanPgpassEntries(s)) {
      entry.fields.forEach((span, i) => {
        add(span, "pgpass-field", i);
      });
    }
  }
  return regions;
}

const DESCRIPTION: Record<ConnectionKind, string> = {
  uri: "a postgresql:// connection URI",
  jdbc: "a jdbc:postgresql: URL",
  pgpass: "a .pgpass line",
};

const GUIDANCE: Record<ConnectionKind, string> = {
  uri: "remove a manual escaping function (urlquery, b64enc, …) or use pgUserinfo for the user and password of a URI",
  jdbc: "remove a manual escaping function (urlquery, b64enc, …) or use pgQuery for a JDBC query value",
  pgpass: "remove a manual escaping function or use pgpassField for a .pgpass field",
};

/**
 * Reads `rendered` back as the real client would (libpq for URIs and .pgpass, pgJDBC for JDBC
 * URLs) and throws ConnectionStringError if it does not parse, has no password, or yields a
 * different password (or user, when given). A derived CNPG key must hold its own syntax. The
 * message names the key and never the password or the rendered value.
 */
export function checkConnectionString(
  key: string,
  rendered: string,
  expected: { password: string; user?: string },
): void {
  const found = connectionKind(key, rendered);
  const kind = isDerivedKey(key) ? derivedKeyKind(key) : found;
  if (kind === undefined) return;
  if (found !== kind) {
    throw new ConnectionStringError(
      `${key}: expected ${DESCRIPTION[kind]}, found a value that is not one; check the template of this key`,
    );
  }
  const guidance = GUIDANCE[kind];
  let candidates: (ConnectionParams | PgpassEntry)[];
  try {
    if (kind === "pgpass") {
      // libpq uses the first entry matching the user it connects as.
      const entries = readPgpassEntries(rendered, key);
      const user = expected.user;
      candidates = user === undefined ? entries : entries.filter((e) => readsAsUser(e, user));
    } else {
      candidates = [kind === "uri" ? readUri(rendered, key) : readJdbc(rendered, key)];
    }
  } catch (error) {
    if (!(error instanceof ConnectionStringError)) throw error;
    throw new ConnectionStringError(`${error.message}; ${guidance}`);
  }
  if (candidates.length === 0) {
    throw new ConnectionStringError(
      `${key}: user differs: expected ${expected.user}, found no entry for it; ${guidance}`,
    );
  }
  for (const params of candidates) {
    if (params.password === undefined || params.password === "") {
      throw new ConnectionStringError(`${key}: reads back no password; ${guidance}`);
    }
    if (params.password !== expected.password) {
      throw new ConnectionStringError(`${key}: reads back a different password; ${guidance}`);
    }
    if (expected.user !== undefined && !readsAsUser(params, expected.user)) {
      throw new ConnectionStringError(
        `${key}: user differs: expected ${expected.user}; ${guidance}`,
      );
    }
  }
}

export const MASK = "********";

/**
 * `rendered` with every occurrence of the password, and of each form our escaping gives it
 * (userinfo, query, .pgpass), replaced by ********. One pass, longest form
 * first, so a mask is never re-masked and no encoded form leaks around a shorter one.
 */
export function maskSecret(rendered: string, password: string): string {
  if (password === "") return rendered;
  const forms = new Set([password]);
  for (const encode of [pgUserinfo, pgQuery, pgpassField]) {
    try {
      forms.add(encode(password));
    } catch {
      // A value an encoder refuses (a lone surrogate) has no such form to hide.
    }
  }
  const sorted = [...forms].filter((f) => f !== "").sort((a, b) => b.length - a.length);
  const pattern = new RegExp(sorted.map(escapeRegExp).join("|"), "g");
  return rendered.replace(pattern, MASK);
}

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, "\\$&");
}
