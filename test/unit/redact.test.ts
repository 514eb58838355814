import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { pgpassField, pgQuery, pgUserinfo } from "../../lib/cnpg/index.ts";
import { createLogger } from "../../lib/log.ts";
import { encodings, forgetSecrets, redact, redactDeep, redactError, rememberSecret } from "../../lib/redact.ts";

// ESO's default symbol set: `"` and `\` change a password's JSON form, `:` and `\` its .pgpass form.
const PASSWORD = 'ab"c\\d:e@f/g%h?i#j~!$^&*()_+`-={}|[]<>,.';

afterEach(() => forgetSecrets());

describe("the secret boundary", () => {
  const planted: [string, (p: string) => string][] = [
    ["raw", (p) => p],
    ["JSON-escaped", (p) => JSON.stringify(p).slice(1, -1)],
    ["JSON inside JSON", (p) => JSON.stringify(JSON.stringify({ password: p }))],
    ["base64", (p) => Buffer.from(p).toString("base64")],
    ["base64url", (p) => Buffer.from(p).toString("base64url")],
    ["percent-encoded", (p) => encodeURIComponent(p)],
    ["URI userinfo", (p) => `postgresql://app:${pgUserinfo(p)}@h/db`],
    ["query value", (p) => `jdbc:postgresql://h/db?password=${pgQuery(p)}&user=app`],
    ["pgpass-escaped", (p) => `h:5432:db:app:${pgpassField(p)}`],
    ["pgpass-escaped in a JSON string", (p) => JSON.stringify(`h:5432:db:app:${pgpassField(p)}`).slice(1, -1)],
  ];
  for (const [form, encode] of planted) {
    it(`masks a remembered password written ${form}`, () => {
      rememberSecret(PASSWORD);
      const line = `{"msg":"oops","detail":"${encode(PASSWORD)}"}`;
      const out = redact(line);
      expect(out).toContain("[redacted]");
      for (const f of encodings(PASSWORD)) expect(out).not.toContain(f);
    });
  }

  it("leaves text without secrets alone, and unremembered values are not touched", () => {
    rememberSecret(PASSWORD);
    expect(redact("rotation 1234 of default/app rotated")).toBe("rotation 1234 of default/app rotated");
    expect(redact("another-password-value")).toBe("another-password-value");
  });

  it("any generated password is masked in every form, among many remembered ones", () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(..."abcXYZ0189~!@#$%^&*()_+`-={}|[]\\:\"<>?,./"), { minLength: 8, maxLength: 42 }), (chars) => {
        const p = chars.join("");
        rememberSecret(p, `other-${p.length}-value`);
        for (const [, encode] of planted) for (const f of encodings(p)) expect(redact(`x ${encode(p)} y`)).not.toContain(f);
      }),
    );
  });

  it("forgets the oldest value past 20,000 and keeps masking the others, a form two values share included", () => {
    const first = "first-value-0000";
    rememberSecret(first);
    // Its base64 is itself a remembered value: the form stays masked while either is remembered.
    const shared = Buffer.from(first).toString("base64");
    rememberSecret(shared);
    // Generated passwords differ from their first characters on, as these do.
    const value = (i: number) => `${createHash("sha256").update(String(i)).digest("hex").slice(0, 12)}-value`;
    for (let i = 0; i < 19_998; i++) rememberSecret(value(i));
    expect(redact(`a ${first} b ${shared} c`)).toBe("a [redacted] b [redacted] c");
    rememberSecret("the-newest-value");
    expect(redact(`a ${first} b`)).toBe(`a ${first} b`);
    expect(redact(`a ${shared} b`)).toBe("a [redacted] b");
    expect(redact(`x ${value(0)} ${value(19_997)} the-newest-value y`)).toBe("x [redacted] [redacted] [redacted] y");
  });

  it("masks the longest of overlapping forms whole, whatever order they were remembered in", () => {
    rememberSecret("abcdef-short");
    rememberSecret("abcdef-short-and-longer");
    rememberSecret("abcdef-s");
    expect(redact("<abcdef-short-and-longer>")).toBe("<[redacted]>");
    expect(redact("<abcdef-short-and>")).toBe("<[redacted]-and>");
  });

  it("results, errors and log lines pass it", () => {
    rememberSecret(PASSWORD);
    expect(redactDeep({ results: [{ reason: `bad ${PASSWORD}` }] })).toEqual({ results: [{ reason: "bad [redacted]" }] });
    const e = redactError(new Error(`wrapped`, { cause: new Error(`inner ${encodeURIComponent(PASSWORD)}`) }));
    expect((e.cause as Error).message).toBe("inner [redacted]");
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    createLogger({ destination: sink as unknown as NodeJS.WritableStream & { write(s: string): boolean } }).info({ value: PASSWORD }, "leak?");
    expect(lines.join("")).toContain("[redacted]");
    expect(lines.join("")).not.toContain(JSON.stringify(PASSWORD).slice(1, -1));
  });
});
