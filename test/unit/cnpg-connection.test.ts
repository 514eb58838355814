import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildAppSecretData,
  CNPG_APP_SECRET_KEYS,
  DERIVED_KEYS,
  readJdbc,
  readPgpass,
  readUri,
  rewriteCredentials,
  rewritePassword,
} from "../../lib/cnpg/index.ts";
import { ConnectionStringError } from "../../lib/errors.ts";

const SEED = {
  clusterName: "cluster-example",
  namespace: "default",
  username: "app",
  dbname: "app",
};
const ESO_DEFAULT_SYMBOLS = "~!@#$%^&*()_+`-={}|[]\\:\"<>?,./";

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a throw");
}

describe("buildAppSecretData", () => {
  it("writes the 11 keys exactly as CNPG's CreateSecret does for its own passwords", () => {
    const data = buildAppSecretData({ ...SEED, password: "Secr3tPassw0rd" });
    expect(Object.keys(data)).toEqual([...CNPG_APP_SECRET_KEYS]);
    expect(data).toEqual({
      username: "app",
      user: "app",
      password: "Secr3tPassw0rd",
      dbname: "app",
      host: "cluster-example-rw",
      port: "5432",
      pgpass: "cluster-example-rw:5432:app:app:Secr3tPassw0rd\n",
      uri: "postgresql://app:Secr3tPassw0rd@cluster-example-rw.default:5432/app",
      "jdbc-uri": "jdbc:postgresql://cluster-example-rw.default:5432/app?password=Secr3tPassw0rd&user=app",
      "fqdn-uri": "postgresql://app:Secr3tPassw0rd@cluster-example-rw.default.svc.cluster.local:5432/app",
      "fqdn-jdbc-uri":
        "jdbc:postgresql://cluster-example-rw.default.svc.cluster.local:5432/app?password=Secr3tPassw0rd&user=app",
    });
  });

  it("honours port and cluster domain", () => {
    const data = buildAppSecretData({ ...SEED, password: "x", port: 6432, clusterDomain: "k8s.example" });
    expect(data.port).toBe("6432");
    expect(data.pgpass).toBe("cluster-example-rw:6432:app:app:x\n");
    expect(data["fqdn-uri"]).toBe("postgresql://app:x@cluster-example-rw.default.svc.k8s.example:6432/app");
  });

  it("encodes user and password for each position", () => {
    const data = buildAppSecretData({ ...SEED, username: "a:b@c", password: "p@ss:w/o?r#d%+ \\" });
    expect(data.uri).toBe(
      "postgresql://a%3Ab%40c:p%40ss%3Aw%2Fo%3Fr%23d%25%2B%20%5C@cluster-example-rw.default:5432/app",
    );
    expect(data["jdbc-uri"]).toBe(
      "jdbc:postgresql://cluster-example-rw.default:5432/app?password=p%40ss%3Aw%2Fo%3Fr%23d%25%2B%20%5C&user=a%3Ab%40c",
    );
    expect(data.pgpass).toBe("cluster-example-rw:5432:app:a\\:b@c:p@ss\\:w/o?r#d%+ \\\\\n");
  });

  it("refuses values no client can carry, naming the field and not the value", () => {
    for (const [password, reason] of [
      ["a\0b", /NUL/],
      ["a\nb", /line break/],
      ["ab\r", /line break/],
      ["a\uD800b", /Unicode/],
      ["", /empty/],
    ] as const) {
      const error = thrown(() => buildAppSecretData({ ...SEED, password }));
      expect(error).toBeInstanceOf(ConnectionStringError);
      expect(error.message).toMatch(reason);
      expect(error.message).toMatch(/^password/);
    }
    expect(thrown(() => buildAppSecretData({ ...SEED, password: "x", port: 0 }))).toBeInstanceOf(
      ConnectionStringError,
    );
  });
});

describe("readUri (libpq rules, cross-checked with WHATWG URL)", () => {
  it("percent-decodes every part and keeps + as a plus", () => {
    expect(readUri("postgresql://a%40b:p+w%3A%25@h%2Fx:5433/d%2Fb")).toEqual({
      user: "a@b",
      password: "p+w:%",
      host: "h/x",
      port: "5433",
      dbname: "d/b",
    });
  });

  it("accepts postgres:// and parameters that override userinfo", () => {
    expect(readUri("postgres://u:old@h/db?sslmode=require&password=new%20one&user=v")).toMatchObject({
      user: "v",
      password: "new one",
      host: "h",
      dbname: "db",
    });
  });

  it("leaves empty user and password unset and reads multi-host lists", () => {
    expect(readUri("postgresql://h1:1,h2:2/db")).toEqual({
      user: undefined,
      password: undefined,
      host: "h1,h2",
      port: "1,2",
      dbname: "db",
    });
    expect(readUri("postgresql://:@h")).toMatchObject({ user: undefined, password: undefined, host: "h" });
    expect(readUri("postgresql://[::1]:5432/db")).toMatchObject({ host: "::1", port: "5432" });
  });

  it("refuses what libpq refuses", () => {
    for (const bad of [
      "postgresql://u:p%zz@h/db",
      "postgresql://u:p%00@h/db",
      "postgresql://u:p%4@h/db",
      "postgresql://h/db?a",
      "postgresql://h/db?a=b=c",
      "postgresql://[::1/db",
      "postgresql://u:p%FF@h/db",
      "mysql://h/db",
    ]) {
      expect(() => readUri(bad), bad).toThrow(ConnectionStringError);
    }
  });

  it("refuses a URI that libpq and WHATWG URL parsers read differently", () => {
    // libpq's userinfo ends at the first @, WHATWG's at the last one.
    expect(() => readUri("postgresql://app:p@x@h:5432/app")).toThrow(/different passwords/);
    // WHATWG stops at #, libpq does not: here WHATWG then finds no valid port.
    expect(() => readUri("postgresql://app:p#x@h:5432/app")).toThrow(/WHATWG URL parser/);
    expect(() => readUri("postgresql://h/db?password=p#x")).toThrow(/different passwords/);
    // URLSearchParams reads + as a space, libpq as a plus.
    expect(() => readUri("postgresql://h/db?password=a+b")).toThrow(/different passwords/);
  });
});

describe("readJdbc (pgJDBC rules)", () => {
  it("decodes values with URLDecoder semantics: + is a space", () => {
    expect(readJdbc("jdbc:postgresql://h:5433/d%2Fb?user=a+b&password=p%2B%40?x")).toEqual({
      user: "a b",
      password: "p+@?x",
      host: "h",
      port: "5433",
      dbname: "d/b",
    });
  });

  it("applies pgJDBC's defaults and overrides", () => {
    expect(readJdbc("jdbc:postgresql://h/")).toEqual({
      user: undefined,
      password: undefined,
      host: "h",
      port: "5432",
      dbname: undefined,
    });
    expect(readJdbc("jdbc:postgresql:db?user=u")).toMatchObject({ host: "localhost", port: "5432", dbname: "db" });
    expect(readJdbc("jdbc:postgresql://h/?user=u")).toMatchObject({ dbname: "u" });
    expect(readJdbc("jdbc:postgresql://h:1/db?HOST=x&port=2&dbname=y")).toMatchObject({
      host: "x",
      port: "2",
      dbname: "y",
    });
    // Keys are not decoded; a token without = sets an empty value; the last one wins.
    expect(readJdbc("jdbc:postgresql://h/db?pass%77ord=x&password=a&password")).toMatchObject({ password: "" });
    expect(readJdbc("jdbc:postgresql://h/db?password=a&&password=b&")).toMatchObject({ password: "b" });
  });

  it("refuses what pgJDBC refuses", () => {
    for (const bad of [
      "jdbc:postgresql://h/a/b",
      "jdbc:postgresql://h",
      "jdbc:postgresql:/db",
      "jdbc:postgresql://h:x/db",
      "jdbc:postgresql://h/db?password=%G1",
      "jdbc:postgresql://h/db?password=%4",
      "jdbc:postgresql://h/db?password=%+1",
      "jdbc:mysql://h/db",
    ]) {
      expect(() => readJdbc(bad), bad).toThrow(ConnectionStringError);
    }
  });
});

describe("readPgpass (libpq rules)", () => {
  it("splits on unescaped colons and unescapes \\: and \\\\", () => {
    expect(readPgpass("h:5432:db:u\\:x:p\\:w\\\\d\n")).toMatchObject({
      host: "h",
      port: "5432",
      dbname: "db",
      user: "u:x",
      password: "p:w\\d",
    });
  });

  it("ignores trailing CR/LF, comments, empty lines and what follows the password", () => {
    expect(readPgpass("# comment\n\nh:1:d:u:pw:ignored\r\nx:2:d:u:other\n").password).toBe("pw");
    expect(readPgpass("h:1:d:u:pw\\").password).toBe("pw\\");
  });

  it("marks bare * fields as wildcards, escaped ones as literal", () => {
    const entry = readPgpass("*:*:*:*:pw");
    expect(entry.wildcard).toEqual({ host: true, port: true, dbname: true, user: true });
    expect(readPgpass("h:1:d:\\*:pw").wildcard.user).toBe(false);
  });

  it("refuses a line with fewer than five fields", () => {
    expect(() => readPgpass("h:5432:db:user\n")).toThrow(ConnectionStringError);
    expect(() => readPgpass("h:5432:db:user\\")).toThrow(ConnectionStringError);
    expect(() => readPgpass("# only a comment\n")).toThrow(ConnectionStringError);
  });
});

describe("rewritePassword", () => {
  it("replaces only the password of CNPG's values", () => {
    const old = buildAppSecretData({ ...SEED, password: "old" });
    const next = buildAppSecretData({ ...SEED, password: "n3w@$-_" });
    for (const key of DERIVED_KEYS) {
      expect(rewritePassword(key, old[key], "n3w@$-_", "app")).toBe(next[key]);
    }
  });

  it("preserves other parameters and their order", () => {
    expect(
      rewritePassword("uri", "postgres://app:old@h1:1,h2:2/db?sslmode=require&application_name=x", "a b", "app"),
    ).toBe("postgres://app:a%20b@h1:1,h2:2/db?sslmode=require&application_name=x");
    expect(rewritePassword("uri", "postgresql://app:old@h/db?password=old&sslmode=require", "p&q")).toBe(
      "postgresql://app:p%26q@h/db?password=p%26q&sslmode=require",
    );
    expect(rewritePassword("uri", "postgresql://app@h/db", "p:q")).toBe("postgresql://app:p%3Aq@h/db");
    expect(rewritePassword("uri", "postgresql://h/db", "p", "app")).toBe("postgresql://app:p@h/db");
    expect(rewritePassword("jdbc-uri", "jdbc:postgresql://h/db?ssl=true&password=o&user=app&x=1", "p+q")).toBe(
      "jdbc:postgresql://h/db?ssl=true&password=p%2Bq&user=app&x=1",
    );
    expect(rewritePassword("fqdn-jdbc-uri", "jdbc:postgresql://h/db?user=app", "p")).toBe(
      "jdbc:postgresql://h/db?user=app&password=p",
    );
    expect(rewritePassword("jdbc-uri", "jdbc:postgresql://h/db", "p")).toBe("jdbc:postgresql://h/db?password=p");
    expect(rewritePassword("pgpass", "# c\nh:1:d:app:old:extra\r\nother:1:d:u:x\nro:1:d:*:y", "n:w", "app")).toBe(
      "# c\nh:1:d:app:n\\:w:extra\r\nother:1:d:u:x\nro:1:d:*:n\\:w",
    );
    expect(rewritePassword("pgpass", "a:1:d:u:x\nb:1:d:v:y\n", "p")).toBe("a:1:d:u:p\nb:1:d:v:p\n");
  });

  it("throws naming the key, never the value", () => {
    const cases: [string, string][] = [
      ["uri", "postgresql://app:s3cr%zz@h/db"],
      ["jdbc-uri", "jdbc:postgresql://h/a/s3cr"],
      ["pgpass", "h:1:s3cr"],
      ["fqdn-uri", "not a uri s3cr"],
    ];
    for (const [key, value] of cases) {
      const error = thrown(() => rewritePassword(key, value, "new"));
      expect(error).toBeInstanceOf(ConnectionStringError);
      expect(error.message.startsWith(key)).toBe(true);
      expect(error.message).not.toContain("s3cr");
    }
    expect(() => rewritePassword("password", "x", "y")).toThrow(/not a derived key/);
    expect(() => rewritePassword("uri", "postgresql://other:x@h/db", "y", "app")).toThrow(/different user/);
    expect(() => rewritePassword("pgpass", "h:1:d:app:x\n", "a\nb")).toThrow(/line break/);
    expect(() => rewritePassword("pgpass", "h:1:d:other:x\n", "y", "app")).toThrow(/no entry for user app/);
  });
});

// Any Unicode text a Kubernetes Secret can hold and a PostgreSQL client can pass.
const unicode = (minLength = 1) =>
  fc
    .string({ unit: "binary", minLength, maxLength: 40 })
    .filter((s) => s.isWellFormed() && !s.includes("\0") && !s.includes("\n") && !s.endsWith("\r"));
const fromSet = (chars: string) => fc.string({ unit: fc.constantFrom(...chars), minLength: 1, maxLength: 40 });
const anyPassword = fc.oneof(
  unicode(),
  fromSet(ESO_DEFAULT_SYMBOLS),
  fromSet("-_$@"),
  // A CR inside a .pgpass password is kept; only a trailing one is stripped by libpq.
  fromSet(`${ESO_DEFAULT_SYMBOLS} %+\t\r'abcXYZ019éß€😀`).filter((s) => !s.endsWith("\r")),
);
const anyUser = fc.oneof(fc.constant("app"), unicode(), fromSet(`${ESO_DEFAULT_SYMBOLS}abc`));
// WHATWG URLs drop "." and ".." path segments (even percent-encoded): no URI can name them.
const anyDbname = anyUser.filter((s) => s !== "." && s !== "..");

describe("properties: every derived key reads back to the same user and password", () => {
  it("through Node's URL/URLSearchParams and the libpq/pgJDBC readers", () => {
    fc.assert(
      fc.property(anyUser, anyPassword, anyDbname, (username, password, dbname) => {
        const data = buildAppSecretData({ ...SEED, username, password, dbname });
        for (const key of ["uri", "fqdn-uri"] as const) {
          const url = new URL(data[key]);
          expect(decodeURIComponent(url.username)).toBe(username);
          expect(decodeURIComponent(url.password)).toBe(password);
          expect(decodeURIComponent(url.pathname.slice(1))).toBe(dbname);
          expect(url.port).toBe("5432");
          expect(readUri(data[key])).toMatchObject({ user: username, password, dbname, port: "5432" });
        }
        for (const key of ["jdbc-uri", "fqdn-jdbc-uri"] as const) {
          const value = data[key];
          const query = new URLSearchParams(value.slice(value.indexOf("?") + 1));
          expect(query.get("password")).toBe(password);
          expect(query.get("user")).toBe(username);
          expect(readJdbc(value)).toMatchObject({ user: username, password, dbname, port: "5432" });
        }
        expect(readUri(data.uri).host).toBe("cluster-example-rw.default");
        expect(readJdbc(data["fqdn-jdbc-uri"]).host).toBe("cluster-example-rw.default.svc.cluster.local");
        expect(data.pgpass.endsWith("\n")).toBe(true);
        expect(readPgpass(data.pgpass)).toMatchObject({
          host: "cluster-example-rw",
          port: "5432",
          dbname,
          user: username,
          password,
        });
      }),
      { numRuns: 400 },
    );
  });

  it("rewritePassword changes the password and nothing else", () => {
    const prefixes = fc.constantFrom(
      "postgresql://",
      "postgres://",
      "jdbc:postgresql://",
    );
    fc.assert(
      fc.property(anyUser, anyPassword, anyPassword, (username, oldPassword, newPassword) => {
        const before = buildAppSecretData({ ...SEED, username, password: oldPassword });
        const after = buildAppSecretData({ ...SEED, username, password: newPassword });
        for (const key of DERIVED_KEYS) {
          expect(rewritePassword(key, before[key], newPassword, username)).toBe(after[key]);
        }
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(prefixes, anyPassword, anyPassword, (prefix, oldPassword, newPassword) => {
        const extra = "sslmode=verify-full&application_name=a%20b&connect_timeout=5";
        const [head, tail] = prefix.startsWith("jdbc")
          ? [`${prefix}h1:5432,h2/db?${extra}&password=`, "&user=app&x=1"]
          : [`${prefix}app:`, `@h1:5432,h2:5433/db?${extra}`];
        const value = head + encodeURIComponent(oldPassword) + tail;
        const key = prefix.startsWith("jdbc") ? "jdbc-uri" : "uri";
        const rewritten = rewritePassword(key, value, newPassword, "app");
        const read = key === "uri" ? readUri : readJdbc;
        expect(read(rewritten)).toEqual({ ...read(value), password: newPassword });
        expect(rewritten.startsWith(head)).toBe(true);
        expect(rewritten.endsWith(tail)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });
});

describe("rewriteCredentials (the alternating strategy's consumer switch)", () => {
  it("gives CNPG's values the other role's user and password, and nothing else changes", () => {
    const blue = buildAppSecretData({ ...SEED, username: "app_blue", password: "old" });
    const green = buildAppSecretData({ ...SEED, username: "app_green", password: "n3w@$-_:/" });
    for (const key of DERIVED_KEYS) expect(rewriteCredentials(key, blue[key], "app_green", "n3w@$-_:/")).toBe(green[key]);
  });

  it("rewrites every place a client reads the user from, and keeps the rest in order", () => {
    expect(rewriteCredentials("uri", "postgresql://app:old@h/db?user=app&sslmode=require", "app_blue", "p&q")).toBe(
      "postgresql://app_blue:p%26q@h/db?user=app_blue&sslmode=require",
    );
    expect(rewriteCredentials("uri", "postgresql://h/db", "app_blue", "p")).toBe("postgresql://app_blue:p@h/db");
    expect(rewriteCredentials("jdbc-uri", "jdbc:postgresql://h/db?ssl=true&password=o&user=app", "app_blue", "p+q")).toBe(
      "jdbc:postgresql://h/db?ssl=true&password=p%2Bq&user=app_blue",
    );
    expect(rewriteCredentials("jdbc-uri", "jdbc:postgresql://h/db", "u", "p")).toBe("jdbc:postgresql://h/db?password=p&user=u");
    expect(rewriteCredentials("pgpass", "h:1:d:app:old\nro:1:d:*:y\n", "app_blue", "n:w")).toBe("h:1:d:app_blue:n\\:w\nro:1:d:app_blue:n\\:w\n");
  });

  it("reads back as the new user and password for any password ESO generates", () => {
    const symbols = [...ESO_DEFAULT_SYMBOLS];
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...symbols, ..."abcXYZ019"), { minLength: 1, maxLength: 40 }).map((a) => a.join("")),
        fc.constantFrom("app_blue", "app_green", "a"),
        (password, user) => {
          const data = buildAppSecretData({ ...SEED, username: "app", password: "old" });
          for (const key of DERIVED_KEYS) {
            const out = rewriteCredentials(key, data[key], user, password);
            const read = key === "pgpass" ? readPgpass(out) : key.includes("jdbc") ? readJdbc(out) : readUri(out);
            expect([read.user, read.password]).toEqual([user, password]);
          }
        },
      ),
    );
  });
});
