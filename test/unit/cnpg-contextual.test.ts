import { randomInt } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  buildAppSecretData,
  checkConnectionString,
  connectionKind,
  DERIVED_KEYS,
  escapeConnectionString,
  type Fragment,
  locateActions,
  MASK,
  maskSecret,
  pgpassField,
  pgQuery,
  pgUserinfo,
  readJdbc,
  readPgpass,
  readUri,
} from "../../lib/cnpg/index.ts";
import { ConnectionStringError } from "../../lib/errors.ts";

const text = (t: string): Fragment => ({ kind: "text", text: t });
const action = (value: string, escapedBy?: string): Fragment =>
  escapedBy === undefined ? { kind: "action", value } : { kind: "action", value, escapedBy };

/** The seed's ExternalSecret template values, split where `{{ .password }}` sits. */
function seedTemplates(password: string, escapedBy?: string): Record<string, Fragment[]> {
  const p = action(password, escapedBy);
  return {
    password: [p],
    pgpass: [text("cluster-example-rw:5432:app:app:"), p],
    "jdbc-uri": [text("jdbc:postgresql://cluster-example-rw.default:5432/app?password="), p, text("&user=app")],
    uri: [text("postgresql://app:"), p, text("@cluster-example-rw.default:5432/app")],
  };
}

/** The seed's Password generator: length 42, 5 digits, 5 symbols from "-_$@", repeats allowed. */
function seedPassword(): string {
  const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const pick = (set: string, n: number) => Array.from({ length: n }, () => set[randomInt(set.length)]!);
  const chars = [...pick(letters, 32), ...pick("0123456789", 5), ...pick("-_$@", 5)];
  for (let i = chars.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [chars[i], chars[j]] = [chars[j]!, chars[i]!];
  }
  return chars.join("");
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a throw");
}

describe("the seed's templates with 1,000 generated passwords", () => {
  it("always yield connection strings every client reads back", () => {
    let withAt = 0;
    let rawBroken = 0;
    for (let n = 0; n < 1000; n++) {
      const password = seedPassword();
      expect(password).toHaveLength(42);
      if (password.includes("@")) withAt++;
      const out = Object.fromEntries(
        Object.entries(seedTemplates(password)).map(([key, fragments]) => [
          key,
          escapeConnectionString(key, fragments),
        ]),
      ) as Record<string, string>;

      expect(out.password).toBe(password);

      const url = new URL(out.uri!);
      expect(url.username).toBe("app");
      expect(decodeURIComponent(url.password)).toBe(password);
      expect(url.hostname).toBe("cluster-example-rw.default");
      expect(url.port).toBe("5432");
      expect(url.pathname).toBe("/app");
      expect(readUri(out.uri!)).toEqual({
        user: "app",
        password,
        host: "cluster-example-rw.default",
        port: "5432",
        dbname: "app",
      });

      const jdbc = out["jdbc-uri"]!;
      const query = new URLSearchParams(jdbc.slice(jdbc.indexOf("?") + 1));
      expect(query.get("password")).toBe(password);
      expect(query.get("user")).toBe("app");
      expect(readJdbc(jdbc)).toEqual({
        user: "app",
        password,
        host: "cluster-example-rw.default",
        port: "5432",
        dbname: "app",
      });

      expect(readPgpass(out.pgpass!)).toMatchObject({
        host: "cluster-example-rw",
        port: "5432",
        dbname: "app",
        user: "app",
        password,
      });

      for (const key of ["pgpass", "jdbc-uri", "uri"]) {
        checkConnectionString(key, out[key]!, { password, user: "app" });
      }
      // What ESO writes (no escaping) is refused whenever the password has an @.
      const raw = seedTemplates(password).uri!.map((f) => (f.kind === "text" ? f.text : f.value)).join("");
      try {
        checkConnectionString("uri", raw, { password, user: "app" });
      } catch (error) {
        expect(error).toBeInstanceOf(ConnectionStringError);
        rawBroken++;
      }
    }
    // About 3 runs in 4 draw an @ among 5 symbols from "-_$@" (1 - (3/4)^5 ≈ 0.76).
    expect(withAt).toBeGreaterThan(650);
    expect(rawBroken).toBe(withAt);
  });
});

describe("escapeConnectionString", () => {
  it("finds each action's position from a skeleton", () => {
    expect(locateActions("uri", seedTemplates("p").uri!)).toEqual([
      undefined,
      { position: "userinfo-password" },
      undefined,
    ]);
    expect(locateActions("pgpass", seedTemplates("p").pgpass!)).toEqual([
      undefined,
      { position: "pgpass-field", field: 4 },
    ]);
    const all = [
      text("postgresql://"),
      action("u"),
      text(":"),
      action("p"),
      text("@"),
      action("h"),
      text(":"),
      action("5432"),
      text("/"),
      action("db"),
      text("?"),
      action("k"),
      text("="),
      action("v"),
      text("#"),
      action("f"),
    ];
    expect(locateActions("x", all)!.filter(Boolean).map((a) => a!.position)).toEqual([
      "userinfo-user",
      "userinfo-password",
      "host",
      "port",
      "path",
      "query-key",
      "query-value",
      "fragment",
    ]);
    const jdbc = [
      text("jdbc:postgresql://"),
      action("h"),
      text(":"),
      action("1"),
      text("/"),
      action("db"),
      text("?"),
      action("k"),
      text("="),
      action("v"),
    ];
    expect(locateActions("x", jdbc)!.filter(Boolean).map((a) => a!.position)).toEqual([
      "host",
      "port",
      "path",
      "query-key",
      "query-value",
    ]);
  });

  it("escapes by position and leaves hosts, ports and JDBC keys alone", () => {
    const v = "a b/@:?&=#%+";
    expect(
      escapeConnectionString("uri", [
        text("postgresql://"),
        action(v),
        text(":"),
        action(v),
        text("@h:5432/"),
        action(v),
        text("?application_name="),
        action(v),
      ]),
    ).toBe(
      `postgresql://${pgUserinfo(v)}:${pgUserinfo(v)}@h:5432/${pgQuery(v)}?application_name=${pgQuery(v)}`,
    );
    expect(escapeConnectionString("jdbc-uri", [text("jdbc:postgresql://"), action("h:1"), text("/db?"), action("k+"), text("="), action(v)])).toBe(
      `jdbc:postgresql://h:1/db?k+=${pgQuery(v)}`,
    );
    expect(escapeConnectionString("pgpass", [action("h:x"), text(":5432:*:"), action("u\\"), text(":"), action(v)])).toBe(
      `h\\:x:5432:*:u\\\\:${pgpassField(v)}`,
    );
  });

  it("returns the plain concatenation for anything that is no connection string", () => {
    const fragments = [text("user="), action("a@b:c"), text(" host=h")];
    expect(connectionKind("dsn", "user=a@b:c host=h")).toBeUndefined();
    expect(escapeConnectionString("dsn", fragments)).toBe("user=a@b:c host=h");
    expect(escapeConnectionString("password", [action("p@ss")])).toBe("p@ss");
    // The whole URI comes from an action: it carries the structure, nothing to escape.
    const whole = "postgresql://app:p@ss@h/db";
    expect(escapeConnectionString("uri", [action(whole)])).toBe(whole);
    expect(escapeConnectionString("uri", [action("postgresql://app:"), action("p@ss"), text("@h/db")])).toBe(
      "postgresql://app:p@ss@h/db",
    );
  });

  it("never escapes twice: a pipeline ending in an escaping function is left alone", () => {
    for (let n = 0; n < 50; n++) {
      const password = seedPassword();
      const cases: [string, Fragment[], string][] = [
        ["uri", seedTemplates(pgUserinfo(password), "pgUserinfo").uri!, "uri"],
        ["jdbc-uri", seedTemplates(pgQuery(password), "pgQuery")["jdbc-uri"]!, "jdbc"],
        ["pgpass", seedTemplates(pgpassField(password), "pgpassField").pgpass!, "pgpass"],
        // Go's urlquery escapes @ and $ as %40 and %24, which both readers decode.
        ["jdbc-uri", seedTemplates(encodeURIComponent(password), "urlquery")["jdbc-uri"]!, "jdbc"],
      ];
      for (const [key, fragments] of cases) {
        const out = escapeConnectionString(key, fragments);
        expect(out).toBe(fragments.map((f) => (f.kind === "text" ? f.text : f.value)).join(""));
        checkConnectionString(key, out, { password, user: "app" });
      }
    }
  });
});

describe("checkConnectionString", () => {
  const password = "s3cr-t@$_pw";
  const expected = { password, user: "app" };

  function refused(key: string, rendered: string, message: RegExp, exp = expected): void {
    const error = thrown(() => checkConnectionString(key, rendered, exp));
    expect(error).toBeInstanceOf(ConnectionStringError);
    expect(error.message).toMatch(message);
    expect(error.message.startsWith(`${key}:`)).toBe(true);
    expect(error.message).not.toContain(password);
    expect(error.message).not.toContain(pgUserinfo(password));
    expect(error.message).not.toContain(rendered);
  }

  it("refuses a hand-written wrong escape", () => {
    const b64 = Buffer.from(password).toString("base64");
    const uri = escapeConnectionString("uri", seedTemplates(b64, "b64enc").uri!);
    refused("uri", uri, /reads back a different password.*pgUserinfo/);
    const jdbc = escapeConnectionString("jdbc-uri", seedTemplates(b64, "b64enc")["jdbc-uri"]!);
    refused("jdbc-uri", jdbc, /reads back a different password.*pgQuery/);
    // urlquery writes a space as +, which libpq reads as a plus in userinfo.
    const spaced = "a b";
    const withPlus = escapeConnectionString("uri", seedTemplates("a+b", "urlquery").uri!);
    refused("uri", withPlus, /different password/, { password: spaced, user: "app" });
    // Escaping twice.
    const twice = escapeConnectionString("uri", seedTemplates(pgUserinfo(pgUserinfo(password)), "pgUserinfo").uri!);
    refused("uri", twice, /different password/);
    refused("pgpass", `h:5432:app:app:${pgpassField(pgpassField("a:b"))}\n`, /different password/, {
      password: "a:b",
      user: "app",
    });
  });

  it("refuses the password in the host position, or a missing password", () => {
    const hostTemplate = [text("postgresql://app@"), action(password), text(":5432/app")];
    // libpq reads no password (and a host with an @); a WHATWG parser a different user.
    refused("uri", escapeConnectionString("uri", hostTemplate), /no password|different user/);
    const hostOnly = [text("postgresql://app@"), action("pw-without-at"), text(":5432/app")];
    refused("uri", escapeConnectionString("uri", hostOnly), /reads back no password/);
    const hostJdbc = [text("jdbc:postgresql://"), action(password), text(":5432/app?user=app")];
    refused("jdbc-uri", escapeConnectionString("jdbc-uri", hostJdbc), /no password/);
    refused("uri", "postgresql://app@h:5432/app", /no password/);
    refused("pgpass", "h:5432:app:app:\n", /no password/);
  });

  it("refuses a different user, naming the expected one only", () => {
    refused("uri", `postgresql://other:${pgUserinfo(password)}@h/app`, /user differs: expected app/);
    refused("jdbc-uri", `jdbc:postgresql://h/app?password=${pgQuery(password)}`, /user differs: expected app/);
    refused("pgpass", `h:1:app:other:${pgpassField(password)}`, /user differs/);
    // The user in the password's place must not leak either.
    refused("uri", `postgresql://${pgUserinfo(password)}@h/app`, /no password/);
    // A .pgpass `*` user matches any user.
    checkConnectionString("pgpass", `h:1:app:*:${pgpassField(password)}`, expected);
  });

  it("refuses unparsable values and derived keys holding another syntax", () => {
    refused("uri", `postgresql://app:${password}%zz@h/app`, /percent-encoded.*pgUserinfo/);
    refused("jdbc-uri", "jdbc:postgresql://h/a/b?password=x", /too many/);
    refused("pgpass", "h:5432:app", /field/);
    refused("uri", Buffer.from(`postgresql://app:${password}@h/app`).toString("base64"), /expected a postgresql:\/\//);
    refused("fqdn-jdbc-uri", `postgresql://app:${pgUserinfo(password)}@h/app`, /expected a jdbc:postgresql: URL/);
    // A key of our own is checked only when its value is a connection string.
    checkConnectionString("note", "hello", expected);
    refused("my-dsn", `postgres://app:x@h/app`, /different password/);
  });
});

describe("maskSecret", () => {
  const noStar = fc
    .string({ unit: "binary", minLength: 1, maxLength: 30 })
    .filter((s) => s.isWellFormed() && !/[\0\n*]/.test(s) && !s.endsWith("\r"));
  const symbols = fc.string({
    unit: fc.constantFrom(..."~!@#$%^&()_+`-={}|[]\\:\"<>?,./ abc"),
    minLength: 1,
    maxLength: 30,
  });

  it("hides the password and every encoded form of it in every derived key", () => {
    fc.assert(
      fc.property(fc.oneof(noStar, symbols), (password) => {
        const data = buildAppSecretData({
          clusterName: "cluster-example",
          namespace: "default",
          username: "app",
          dbname: "app",
          password,
        });
        for (const key of DERIVED_KEYS) {
          const masked = maskSecret(data[key], password);
          expect(masked).toContain(MASK);
          for (const form of [password, pgUserinfo(password), pgQuery(password), pgpassField(password)]) {
            expect(masked).not.toContain(form);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("keeps everything else", () => {
    const data = buildAppSecretData({
      clusterName: "c",
      namespace: "ns",
      username: "app",
      dbname: "app",
      password: "p@ss:w0rd",
    });
    expect(maskSecret(data.uri, "p@ss:w0rd")).toBe(`postgresql://app:${MASK}@c-rw.ns:5432/app`);
    expect(maskSecret(data["jdbc-uri"], "p@ss:w0rd")).toBe(`jdbc:postgresql://c-rw.ns:5432/app?password=${MASK}&user=app`);
    expect(maskSecret(data.pgpass, "p@ss:w0rd")).toBe(`c-rw:5432:app:app:${MASK}\n`);
    expect(maskSecret("nothing here", "")).toBe("nothing here");
  });
});

describe("multi-line .pgpass values", () => {
  it("escapes every entry and checks the entries for the user", () => {
    const fragments = [
      text("# rw and ro\nc-rw:5432:app:app:"),
      action("a:b\\c"),
      text("\nc-ro:5432:app:app:"),
      action("a:b\\c"),
      text("\nc-rw:5432:app:other:x\n"),
    ];
    const out = escapeConnectionString("pgpass", fragments);
    expect(out).toBe("# rw and ro\nc-rw:5432:app:app:a\\:b\\\\c\nc-ro:5432:app:app:a\\:b\\\\c\nc-rw:5432:app:other:x\n");
    checkConnectionString("pgpass", out, { password: "a:b\\c", user: "app" });
    const stale = out.replace("c-ro:5432:app:app:a\\:b\\\\c", "c-ro:5432:app:app:old");
    expect(() => checkConnectionString("pgpass", stale, { password: "a:b\\c", user: "app" })).toThrow(
      /different password/,
    );
    expect(() => checkConnectionString("pgpass", "h:1:d:other:x\n", { password: "x", user: "app" })).toThrow(
      /user differs: expected app/,
    );
  });
});
