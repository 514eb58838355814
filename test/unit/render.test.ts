import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildAppSecretData, readPgpass } from "../../lib/cnpg/index.ts";
import { ConnectionStringError } from "../../lib/errors.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { generateValues, renderTarget } from "../../lib/rotation/render.ts";

const SEED = join(import.meta.dirname, "../../examples/seed");
const seedSet = () =>
  loadManifests(
    ["password-generator.yaml", "external-secret.yaml"].map((f) => ({
      file: f,
      text: readFileSync(join(SEED, f), "utf8"),
    })),
  );

describe("the seed's ExternalSecret, rendered with generated passwords", () => {
  const es = seedSet().externalSecrets[0]!;
  const runs = Array.from({ length: 1_000 }, () => {
    const values = generateValues(es);
    return { password: values.password!, data: renderTarget(es, values).data };
  });

  it("most generated passwords contain @ (the case ESO gets wrong)", () => {
    const withAt = runs.filter((r) => r.password.includes("@")).length;
    expect(withAt).toBeGreaterThan(600);
  });

  it("renders exactly the four templated keys", () => {
    for (const r of runs.slice(0, 10)) expect(Object.keys(r.data)).toEqual(["password", "pgpass", "jdbc-uri", "uri"]);
  });

  it("every uri parses with Node's URL back to user app and the exact password", () => {
    const bad = runs.filter(({ password, data }) => {
      const url = new URL(data.uri!);
      return (
        decodeURIComponent(url.username) !== "app" ||
        decodeURIComponent(url.password) !== password ||
        url.host !== "cluster-example-rw.default:5432" ||
        url.pathname !== "/app"
      );
    });
    expect(bad).toHaveLength(0);
  });

  it("every jdbc-uri query gives back the exact password and user", () => {
    const bad = runs.filter(({ password, data }) => {
      const jdbc = data["jdbc-uri"]!;
      expect(jdbc.startsWith("jdbc:postgresql://cluster-example-rw.default:5432/app?")).toBe(true);
      const query = new URLSearchParams(jdbc.slice(jdbc.indexOf("?") + 1));
      return query.get("password") !== password || query.get("user") !== "app" || [...query.keys()].length !== 2;
    });
    expect(bad).toHaveLength(0);
  });

  it("every pgpass line reads back per libpq's rules", () => {
    const bad = runs.filter(({ password, data }) => {
      const entry = readPgpass(data.pgpass!);
      return (
        entry.password !== password ||
        entry.user !== "app" ||
        entry.host !== "cluster-example-rw" ||
        entry.port !== "5432" ||
        entry.dbname !== "app"
      );
    });
    expect(bad).toHaveLength(0);
  });

  it("the password key itself is the raw password", () => {
    for (const r of runs) if (r.data.password !== r.password) throw new Error("password key differs");
  });
});

describe("renderTarget against an existing CNPG Secret", () => {
  const es = seedSet().externalSecrets[0]!;
  const existing = buildAppSecretData({
    clusterName: "cluster-example",
    namespace: "default",
    username: "app",
    dbname: "app",
    password: "old-password-from-cnpg",
  });

  it("rewrites the derived keys the template does not render (fqdn-*) with the new password", () => {
    const values = { password: "n3w@pass:w/rd%" };
    const rendered = renderTarget(es, values, existing);
    expect([...rendered.derivedKeys].sort()).toEqual(["fqdn-jdbc-uri", "fqdn-uri"]);
    const fqdn = new URL(rendered.data["fqdn-uri"]!);
    expect(decodeURIComponent(fqdn.password)).toBe(values.password);
    expect(fqdn.host).toBe("cluster-example-rw.default.svc.cluster.local:5432");
    const jdbc = rendered.data["fqdn-jdbc-uri"]!;
    expect(new URLSearchParams(jdbc.slice(jdbc.indexOf("?") + 1)).get("password")).toBe(values.password);
    expect(Object.keys(rendered.data)).not.toContain("username");
    expect(rendered.labels).toEqual({ "cnpg.io/reload": "true" });
  });

  it("refuses a template whose connection string would read back another user", () => {
    const broken = loadManifests([
      {
        file: "x.yaml",
        text: readFileSync(join(SEED, "password-generator.yaml"), "utf8").concat(
          "---\n",
          readFileSync(join(SEED, "external-secret.yaml"), "utf8").replace(
            "postgresql://app:{{ .password }}@",
            "postgresql://{{ .password | b64enc }}@",
          ),
        ),
      },
    ]).externalSecrets[0]!;
    expect(() => renderTarget(broken, { password: "abc" }, existing)).toThrow(ConnectionStringError);
    try {
      renderTarget(broken, { password: "abc-secret" }, existing);
    } catch (e) {
      expect((e as Error).message).not.toContain("abc-secret");
      expect((e as Error).message).toMatch(/uri/);
    }
  });
});

describe("renderTarget's last render per ExternalSecret", () => {
  it("hands the same frozen result back for the same values, Secret and user, and renders anew otherwise", () => {
    const es = seedSet().externalSecrets[0]!;
    const values = generateValues(es);
    const existing = buildAppSecretData({ clusterName: "cluster-example", namespace: "default", username: "app", dbname: "app", password: "old-password-0" });
    const first = renderTarget(es, values, existing);
    expect(renderTarget(es, { ...values }, { ...existing })).toBe(first);
    expect(Object.isFrozen(first.data)).toBe(true);
    expect(() => {
      (first.data as Record<string, string>).password = "changed";
    }).toThrow(TypeError);
    // Another Secret, other values, another user or another ExternalSecret: rendered again, as a fresh render.
    const other = renderTarget(es, values, { ...existing, "fqdn-uri": `${existing["fqdn-uri"]}x` });
    expect(other).not.toBe(first);
    const fresh = generateValues(es);
    expect(renderTarget(es, fresh, existing).data.password).toBe(fresh.password);
    expect(renderTarget(es, values, existing, { user: "app" })).not.toBe(first);
    const twin = seedSet().externalSecrets[0]!;
    const again = renderTarget(twin, values, existing);
    expect(again).not.toBe(first);
    expect(again).toEqual(first);
  });
});
