// The CNPG escapers (lib/cnpg/escape.ts) read back to the same value through the
// parsers real clients use.

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { pgpassField, pgQuery, pgUserinfo } from "../../lib/cnpg/escape.ts";
import { parseTemplate, renderTemplate } from "../../lib/template/index.ts";

/** Any Unicode text, and text made of the characters passwords are drawn from. */
const anyText = fc.oneof(
  fc.string({ unit: "binary" }),
  fc.string({ unit: "binary-ascii" }),
  fc.string({ unit: fc.constantFrom(..."aZ09-_$@:/?#[]%+&=!'()*;, \\~.") }),
);

/**
 * libpq's reading of one .pgpass line (passwordFromFile): fields end at an
 * unescaped ':', and a backslash makes the next character literal.
 */
function readPgpassLine(line: string): string[] {
  const fields: string[] = [];
  let field = "";
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === "\\" && i + 1 < line.length) {
      field += line[++i];
    } else if (c === ":" && fields.length < 4) {
      fields.push(field);
      field = "";
    } else {
      field += c;
    }
  }
  fields.push(field);
  return fields;
}

describe("pgUserinfo", () => {
  it("leaves only unreserved characters and %XX", () => {
    fc.assert(
      fc.property(anyText, (v) => {
        expect(pgUserinfo(v)).toMatch(/^(?:[A-Za-z0-9\-._~]|%[0-9A-F]{2})*$/);
      }),
    );
  });

  it("round-trips through decodeURIComponent", () => {
    fc.assert(
      fc.property(anyText, (v) => {
        expect(decodeURIComponent(pgUserinfo(v))).toBe(v);
      }),
    );
  });

  it("reads back as the same user and password through the WHATWG URL parser", () => {
    fc.assert(
      fc.property(anyText, anyText, (user, password) => {
        const url = new URL(`postgresql://${pgUserinfo(user)}:${pgUserinfo(password)}@h:5432/db`);
        expect(decodeURIComponent(url.password)).toBe(password);
        expect(decodeURIComponent(url.username)).toBe(user);
        expect(url.hostname).toBe("h");
        expect(url.pathname).toBe("/db");
      }),
    );
  });

  it("encodes the characters that break a URI", () => {
    expect(pgUserinfo("a@b:c/d?e#f%g h")).toBe("a%40b%3Ac%2Fd%3Fe%23f%25g%20h");
    expect(pgUserinfo("é")).toBe("%C3%A9");
    expect(pgUserinfo("")).toBe("");
  });
});

describe("pgQuery", () => {
  it("round-trips through URLSearchParams and never writes '+'", () => {
    fc.assert(
      fc.property(anyText, (v) => {
        const encoded = pgQuery(v);
        expect(encoded).not.toContain("+");
        expect(new URLSearchParams(`password=${encoded}&user=app`).get("password")).toBe(v);
        expect(decodeURIComponent(encoded)).toBe(v);
      }),
    );
  });

  it("encodes what encodeURIComponent leaves, and spaces as %20", () => {
    expect(pgQuery("!'()* +")).toBe("%21%27%28%29%2A%20%2B");
    expect(pgQuery("a&b=c")).toBe("a%26b%3Dc");
  });
});

describe("pgpassField", () => {
  const lineSafe = anyText.filter((s) => !/[\n\r\0]/.test(s));

  it("round-trips through libpq's .pgpass reading", () => {
    fc.assert(
      fc.property(lineSafe, lineSafe, (user, password) => {
        const line = `host:5432:db:${pgpassField(user)}:${pgpassField(password)}`;
        expect(readPgpassLine(line)).toEqual(["host", "5432", "db", user, password]);
      }),
    );
  });

  it("escapes backslash and colon, and a lone * that libpq would read as a wildcard", () => {
    expect(pgpassField("a:b\\c@d")).toBe("a\\:b\\\\c@d");
    expect(pgpassField("*")).toBe("\\*");
    expect(pgpassField("a*")).toBe("a*");
  });
});

describe("escapers inside templates", () => {
  it("give the same result as the functions", () => {
    const uri = parseTemplate("postgresql://app:{{ .password | pgUserinfo }}@h/db?x={{ pgQuery .password }}");
    const pgpass = parseTemplate("h:5432:db:app:{{ .password | pgpassField }}");
    fc.assert(
      fc.property(anyText, (password) => {
        expect(renderTemplate(uri, { password })).toBe(
          `postgresql://app:${pgUserinfo(password)}@h/db?x=${pgQuery(password)}`,
        );
        expect(renderTemplate(pgpass, { password })).toBe(`h:5432:db:app:${pgpassField(password)}`);
      }),
    );
  });

  it("urlquery round-trips through URLSearchParams (space as '+')", () => {
    const t = parseTemplate("{{ urlquery .v }}");
    fc.assert(
      fc.property(anyText, (v) => {
        expect(new URLSearchParams(`v=${renderTemplate(t, { v })}`).get("v")).toBe(v);
      }),
    );
  });
});
