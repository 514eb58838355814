// The suite's log guard (test/integration/log-guard.ts, through leaks.ts) catches a password
// planted in a log line in each form it can take in text, and nothing else.
import { describe, expect, it } from "vitest";
import { pgpassField, pgQuery, pgUserinfo } from "../../lib/cnpg/index.ts";
import { leakingLines } from "../integration/leaks.ts";

// ESO's default symbol set: `"` and `\` change a password's JSON form, `:` and `\` its .pgpass form.
const PASSWORD = 'Zq"7\\k:p@w/r%d?x#y~!$^&*()_+`-={}|[]<>,.';

const planted: [string, (p: string) => string][] = [
  ["raw", (p) => p],
  ["JSON-escaped", (p) => JSON.stringify({ msg: "oops", password: p })],
  ["JSON inside JSON", (p) => JSON.stringify({ body: JSON.stringify({ password: p }) })],
  ["base64", (p) => `data: ${Buffer.from(p).toString("base64")}`],
  ["base64 without padding", (p) => Buffer.from(p).toString("base64").replace(/=+$/, "")],
  ["base64url", (p) => Buffer.from(p).toString("base64url")],
  ["percent-encoded", (p) => `?password=${encodeURIComponent(p)}`],
  ["URI userinfo", (p) => `postgresql://app:${pgUserinfo(p)}@h:5432/db`],
  ["query value", (p) => `jdbc:postgresql://h/db?password=${pgQuery(p)}&user=app`],
  ["pgpass-escaped", (p) => `h:5432:db:app:${pgpassField(p)}`],
];
// (JSON inside JSON escaped once more is three levels deep: no message here nests that far.)

describe("the log guard", () => {
  for (const [form, encode] of planted) {
    it(`catches a password leaked ${form}`, () => {
      // As written, and as a string field of a JSON log line (escaped once more).
      const lines = ['{"level":30,"msg":"rotation finished"}', encode(PASSWORD), `{"level":50,"msg":"failed","detail":${JSON.stringify(encode(PASSWORD))}}`];
      expect(leakingLines(lines, [PASSWORD])).toEqual(form === "JSON inside JSON" ? [1] : [1, 2]);
    });
  }

  it("passes lines without any form of a secret, and ignores values too short to look for", () => {
    const lines = ['{"msg":"rotated","fingerprint":"sha256:1a2b"}', "postgresql://app:[redacted]@h/db", "the word secret"];
    expect(leakingLines(lines, [PASSWORD, "secret"])).toEqual([]);
    expect(leakingLines(lines, [])).toEqual([]);
  });
});
