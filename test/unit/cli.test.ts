import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { main } from "../../lib/cli/main.ts";

const ROOT = join(import.meta.dirname, "../..");
const SEED = join(ROOT, "examples/seed");
const dir = mkdtempSync(join(tmpdir(), "cnpg-rotator-cli-"));

async function run(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    argv,
    (t) => out.push(t),
    (t) => err.push(t),
  );
  return { code, stdout: out.join("\n"), stderr: err.join("\n") };
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const password = readFileSync(join(SEED, "password-generator.yaml"), "utf8");
const externalSecret = readFileSync(join(SEED, "external-secret.yaml"), "utf8");
const both = (es: string, pw = password) => `${pw}---\n${es}`;

describe("cnpg-rotator CLI", () => {
  it("--help everywhere, exit 0", async () => {
    for (const argv of [["--help"], ["generate", "--help"], ["render", "-h"], ["validate", "--help"]]) {
      const r = await run(...argv);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^Usage: cnpg-rotator/);
    }
  });

  it("generate prints one password per line, as the flags ask", async () => {
    const r = await run("generate", "--length", "42", "--digits", "5", "--symbols", "5", "--symbol-characters=-_$@", "--allow-repeat", "--count", "50");
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toHaveLength(50);
    for (const line of lines) {
      expect(line).toHaveLength(42);
      expect(line.replace(/[^0-9]/g, "")).toHaveLength(5);
      expect(line.replace(/[^-_$@]/g, "")).toHaveLength(5);
    }
    expect(new Set(lines).size).toBe(50);
  });

  it("an option's value is the next argument whatever it starts with, as in kubectl", async () => {
    // The seed's own symbol set, typed with a space: parseArgs alone calls it ambiguous.
    const r = await run("generate", "--symbol-characters", "-_$@", "--length", "12", "--symbols", "4", "--allow-repeat", "--count", "20");
    expect(r).toMatchObject({ code: 0, stderr: "" });
    for (const line of r.stdout.split("\n")) expect(line.replace(/[^-_$@]/g, "")).toHaveLength(4);
    // Short options too, and a value that looks like a long flag.
    const ns = await run("render", "-n", "-x", "-f", SEED);
    expect(ns.code).toBe(0);
    expect((await run("generate", "--secret-keys", "--count,b")).stdout).toMatch(/^--count=.+\nb=/);
    // Still refused: a flag nobody declared, a value missing at the end, and a flag where none takes a value.
    expect(await run("generate", "--symbol-characters")).toMatchObject({ code: 2, stderr: expect.stringMatching(/'--symbol-characters <value>' argument missing/) });
    expect(await run("generate", "--length", "8", "--bogus", "x")).toMatchObject({ code: 2, stderr: expect.stringMatching(/Unknown option '--bogus'/) });
    expect(await run("generate", "--allow-repeat", "-_$@")).toMatchObject({ code: 2, stderr: expect.stringMatching(/Unknown option|Unexpected argument/) });
  });

  it("generate reads a Password manifest, with KEY=VALUE lines for several keys", async () => {
    const r = await run("generate", "-f", join(SEED, "password-generator.yaml"));
    expect(r.stdout).toHaveLength(42);
    const two = file("two.yaml", `${password}  secretKeys: [a, b]\n`);
    const r2 = await run("generate", "-f", two, "--name", "pg-password-generator");
    expect(r2.stdout.split("\n").map((l) => l.slice(0, 2))).toEqual(["a=", "b="]);
  });

  it("render masks the password everywhere and shows the label", async () => {
    const r = await run("render", "-f", SEED);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("label cnpg.io/reload: true");
    expect(r.stdout).toContain("uri: postgresql://app:********@cluster-example-rw.default:5432/app");
    expect(r.stdout).toContain("pgpass: cluster-example-rw:5432:app:app:********");
    expect(r.stdout).toContain("jdbc-uri: jdbc:postgresql://cluster-example-rw.default:5432/app?password=********&user=app");
    expect(r.stdout).toMatch(/^ {2}password: \*{8}$/m);
  });

  it("validate accepts the seed", async () => {
    const r = await run("validate", "-f", SEED);
    expect(r).toMatchObject({ code: 0, stdout: "valid: 1 Password, 1 ExternalSecret, 1 PushSecret, 1 SecretStore, 1 Secret" });
  });

  // Two mistakes a new user makes that only a render shows: validate must refuse them as rotate does.
  const refusedByRotate: Array<[string, (es: string) => string, RegExp]> = [
    ["a key the generator does not make", (es) => es.replace('password: "{{ .password }}"', 'password: "{{ .pasword }}"'), /map has no entry for key "pasword"/],
    ["the password where a URI has its user", (es) => es.replace("postgresql://app:{{ .password }}@", "postgresql://{{ .password }}:x@"), /uri: reads back a different/],
  ];

  it.each(refusedByRotate)("validate refuses %s, with render's reason", async (_label, edit, pattern) => {
    const d = mkdtempSync(join(tmpdir(), "cnpg-rotator-cli-validate-"));
    for (const f of ["password-generator.yaml", "push-secret.yaml", "vault-secret-store.yaml"]) writeFileSync(join(d, f), readFileSync(join(SEED, f)));
    writeFileSync(join(d, "external-secret.yaml"), edit(externalSecret));
    const validate = await run("validate", "-f", d);
    const render = await run("render", "-f", d);
    expect(validate).toMatchObject({ code: 2, stdout: "" });
    expect(validate.stderr).toMatch(pattern);
    expect(validate.stderr.replace("validate:", "")).toBe(render.stderr.replace("render:", ""));
  });

  const malformed: Array<[string, string, RegExp]> = [
    ["bad YAML", "kind: [unclosed", /invalid YAML/],
    ["wrong apiVersion", password.replace("generators.external-secrets.io/v1alpha1", "v1"), /apiVersion: expected generators/],
    ["wrong kind", password.replace("kind: Password", "kind: Passwd"), /unsupported kind "Passwd"/],
    ["missing generatorRef", both(externalSecret.replace(/ {6}generatorRef:[\s\S]*$/, "      {}\n")), /generatorRef: missing/],
    ["negative length", password.replace("length: 42", "length: 42\n  digits: -1").replace("  digits: 5\n", ""), /spec\.digits: must not be negative/],
    ["unknown creationPolicy", both(externalSecret.replace("creationPolicy: Merge", "creationPolicy: Always")), /creationPolicy: expected one of/],
    ["unknown template function", both(externalSecret.replace("{{ .password }}\"\n        pgpass", "{{ .password | shout }}\"\n        pgpass")), /function "shout" not defined/],
    ["duplicate secretKeys", `${password}  secretKeys: [password, password]\n`, /duplicate key "password"/],
    ["env in a template", both(externalSecret.replace("{{ .password }}\"\n        pgpass", "{{ env \\\"HOME\\\" }}\"\n        pgpass")), /env/],
    ["symbols exhausted", password.replace("allowRepeat: true", "allowRepeat: false"), /symbols exhausted/],
    ["bad refreshInterval", both(externalSecret.replace('refreshInterval: "24h"', 'refreshInterval: "1 day"')), /refreshInterval: expected a Go duration/],
    ["generator not in the manifests", externalSecret, /no Password "pg-password-generator" in namespace default/],
    ["missing target name", both(externalSecret.replace("    name: cluster-example-app\n", "")), /spec\.target\.name/],
  ];

  it.each(malformed)("validate: %s → exit 2 with the specific error", async (_label, text, pattern) => {
    const path = file(`${_label.replace(/\W+/g, "-")}.yaml`, text);
    const r = await run("validate", "-f", path);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).toContain(path);
    expect(r.stdout).toBe("");
  });

  const badFlags: Array<[string, string[], RegExp]> = [
    ["unknown command", ["rotat"], /unknown command "rotat"/],
    ["unknown flag", ["generate", "--lenght", "4"], /Unknown option '--lenght'/],
    ["non-integer", ["generate", "--length", "ten"], /--length: expected an integer, found "ten"/],
    ["count 0", ["generate", "--count", "0"], /--count: expected at least 1/],
    ["bad encoding", ["generate", "--encoding", "rot13"], /encoding: expected one of/],
    ["-f with spec flags", ["generate", "-f", join(SEED, "password-generator.yaml"), "--length", "8"], /give either -f or the spec flags/],
    ["missing -f", ["render"], /missing -f/],
    ["missing file", ["validate", "-f", "/nonexistent.yaml"], /no such file or directory/],
  ];

  it.each(badFlags)("%s → exit 2", async (_label, argv, pattern) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(pattern);
  });

  it("runs as the bin declared in package.json, on the project's own Node", async () => {
    const { stdout } = await promisify(execFile)(join(ROOT, "bin/cnpg-rotator.js"), ["--help"], {
      env: { ...process.env, PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}` },
    });
    expect(stdout).toMatch(/^Usage: cnpg-rotator <command>/);
    const bad = await promisify(execFile)(join(ROOT, "bin/cnpg-rotator.js"), ["validate", "-f", "/nope"], {
      env: { ...process.env, PATH: `${join(ROOT, "node_modules/.bin")}:${process.env.PATH}` },
    }).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2 });
  });
});
