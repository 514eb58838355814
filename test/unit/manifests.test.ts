import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ManifestError } from "../../lib/errors.ts";
import { formatDuration, loadManifests, parseDuration } from "../../lib/manifests/index.ts";
import { renderTemplate } from "../../lib/template/index.ts";

const ROOT = join(import.meta.dirname, "../..");
const SEED_PAGE = join(ROOT, "../shared/seed/cnpg-external-secrets.md");
const EXAMPLES = join(ROOT, "examples/seed");
const SEED_FILES = ["password-generator.yaml", "external-secret.yaml", "vault-secret-store.yaml", "push-secret.yaml"];

function seedBlocks(): string[] {
  const page = readFileSync(SEED_PAGE, "utf8");
  return [...page.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

const load = (text: string, file = "test.yaml") => loadManifests([{ file, text }]);

function errorOf(text: string): string {
  try {
    load(text);
  } catch (e) {
    expect(e).toBeInstanceOf(ManifestError);
    return (e as Error).message;
  }
  throw new Error("expected a ManifestError");
}

const PASSWORD = `apiVersion: generators.external-secrets.io/v1alpha1
kind: Password
metadata:
  name: gen
spec:
  length: 42
  digits: 5
  symbols: 5
  symbolCharacters: "-_$@"
  allowRepeat: true
`;

const es = (spec: string) => `${PASSWORD}---
apiVersion: external-secrets.io/v1
kind: ExternalSecret
metadata:
  name: es
spec:
${spec}`;

const GOOD_ES_SPEC = `  refreshInterval: 24h
  target:
    name: cluster-example-app
    creationPolicy: Merge
  dataFrom:
    - sourceRef:
        generatorRef:
          apiVersion: generators.external-secrets.io/v1alpha1
          kind: Password
          name: gen
`;

describe("manifests: the seed page loads verbatim", () => {
  // The page lives beside the checkout (../shared/seed); a checkout elsewhere has only its copy.
  it.runIf(existsSync(SEED_PAGE) || process.env.CI === "true")("examples/seed holds the page's YAML byte for byte", () => {
    const blocks = seedBlocks();
    expect(blocks).toHaveLength(4);
    for (const [i, f] of SEED_FILES.entries()) expect(readFileSync(join(EXAMPLES, f), "utf8")).toBe(blocks[i]);
  });

  it("every document of the seed page loads, with refs resolved", () => {
    const files = SEED_FILES.map((f) => ({ file: f, text: readFileSync(join(EXAMPLES, f), "utf8") }));
    const set = loadManifests(files);
    expect(set.passwords).toHaveLength(1);
    expect(set.passwords[0]!.spec).toMatchObject({ length: 42, digits: 5, symbols: 5, letters: 32, allowRepeat: true });
    const [es] = set.externalSecrets;
    expect(es).toMatchObject({
      metadata: { name: "cluster-example-app-secret", namespace: "default" },
      target: { name: "cluster-example-app", creationPolicy: "Merge" },
      refreshInterval: "24h",
      refreshIntervalMs: 86_400_000,
      refreshPolicy: "Periodic",
    });
    expect(es!.generators[0]!.metadata.name).toBe("pg-password-generator");
    expect(es!.target.template!.labels).toEqual({ "cnpg.io/reload": "true" });
    expect(Object.keys(es!.target.template!.data!)).toEqual(["password", "pgpass", "jdbc-uri", "uri"]);
    expect(renderTemplate(es!.target.template!.data!.pgpass!, { password: "x" })).toBe(
      "cluster-example-rw:5432:app:app:x",
    );
    expect(set.secretStores[0]).toMatchObject({
      kind: "SecretStore",
      metadata: { name: "vault-backend" },
      provider: { name: "vault", config: { server: "http://vault.vault.svc:8200", path: "secrets", version: "v2" } },
    });
    expect(set.secrets[0]!.data.token).toBe("hvs.*******");
    expect(set.pushSecrets[0]).toMatchObject({
      secretName: "cluster-example-app",
      deletionPolicy: "Delete",
      updatePolicy: "Replace",
      data: [{ remoteKey: "cluster-example-app" }],
    });
    expect(set.pushSecrets[0]!.stores[0]!.metadata.name).toBe("vault-backend");
    expect(set.warnings).toEqual([]);
  });

  it("applies a namespace to documents that name none, as kubectl -n does", () => {
    const set = loadManifests([{ file: "x", text: es(GOOD_ES_SPEC) }], { namespace: "prod" });
    expect(set.externalSecrets[0]!.metadata.namespace).toBe("prod");
  });
});

describe("manifests: malformed input gives the specific error", () => {
  const cases: Array<[string, string, RegExp]> = [
    ["bad YAML", "kind: Password\n  metadata: [", /test\.yaml: document 1: invalid YAML/],
    ["not a mapping", "- a\n- b\n", /document 1: expected a Kubernetes object/],
    ["missing kind", "apiVersion: v1\nmetadata: {name: a}\n", /document 1: kind: missing/],
    ["unsupported kind", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n", /unsupported kind "ConfigMap"/],
    [
      "wrong apiVersion",
      PASSWORD.replace("generators.external-secrets.io/v1alpha1", "external-secrets.io/v1"),
      /\(Password\/gen\): apiVersion: expected generators\.external-secrets\.io\/v1alpha1 for kind Password, found "external-secrets\.io\/v1"/,
    ],
    ["bad name", PASSWORD.replace("name: gen", "name: Gen_1"), /metadata\.name: expected a lower-case DNS name/],
    ["negative digits", PASSWORD.replace("digits: 5", "digits: -3"), /\(Password\/gen\): spec\.digits: must not be negative/],
    ["digits exceed", PASSWORD.replace("digits: 5", "digits: 50"), /\(Password\/gen\): spec: digits and symbols exceed length/],
    ["string length", PASSWORD.replace("length: 42", 'length: "42"'), /spec\.length: expected number, received string/],
    [
      "duplicate secretKeys",
      PASSWORD + "  secretKeys: [a, a]\n",
      /\(Password\/gen\): spec\.secretKeys\[1\]: duplicate key "a"/,
    ],
    ["unknown Password field", PASSWORD + "  uppercase: true\n", /spec: unknown field "uppercase"/],
    ["unknown encoding", PASSWORD + "  encoding: rot13\n", /spec\.encoding: expected one of raw/],
    [
      "missing generatorRef",
      es("  target:\n    name: t\n    creationPolicy: Merge\n  dataFrom:\n    - sourceRef: {}\n"),
      /\(ExternalSecret\/es\): spec\.dataFrom\[0\]\.sourceRef\.generatorRef: missing/,
    ],
    [
      "generatorRef to an unknown Password",
      es(GOOD_ES_SPEC.replace("name: gen", "name: nope")),
      /spec\.dataFrom\[0\]\.sourceRef\.generatorRef\.name: no Password "nope" in namespace default/,
    ],
    [
      "another generator kind",
      es(GOOD_ES_SPEC.replace("kind: Password", "kind: UUID")),
      /generatorRef\.kind: expected Password, found "UUID"/,
    ],
    [
      "unknown creationPolicy",
      es(GOOD_ES_SPEC.replace("creationPolicy: Merge", "creationPolicy: Sometimes")),
      /spec\.target\.creationPolicy: expected one of "Owner", "Orphan", "Merge", "None", "CreateOrMerge"/,
    ],
    [
      "Owner refused with a reason",
      es(GOOD_ES_SPEC.replace("creationPolicy: Merge", "creationPolicy: Owner")),
      /spec\.target\.creationPolicy: Owner is not supported \(.*\); use Merge/,
    ],
    [
      "bad refreshInterval",
      es(GOOD_ES_SPEC.replace("24h", "daily")),
      /spec\.refreshInterval: expected a Go duration/,
    ],
    [
      "unknown template function",
      es(GOOD_ES_SPEC.replace(
        "    creationPolicy: Merge\n",
        '    creationPolicy: Merge\n    template:\n      data:\n        password: "{{ .password | frobnicate }}"\n',
      )),
      /spec\.target\.template\.data\.password: .*frobnicate/,
    ],
    [
      "env in a template",
      es(GOOD_ES_SPEC.replace(
        "    creationPolicy: Merge\n",
        '    creationPolicy: Merge\n    template:\n      data:\n        password: "{{ env \\"HOME\\" }}"\n',
      )),
      /spec\.target\.template\.data\.password: .*env/,
    ],
    [
      "reading from a store",
      es(GOOD_ES_SPEC + "  data:\n    - secretKey: x\n      remoteRef: {key: y}\n"),
      /spec\.data: reading values from a SecretStore is not supported/,
    ],
    [
      "PushSecret to a missing store",
      `apiVersion: external-secrets.io/v1alpha1
kind: PushSecret
metadata: {name: p}
spec:
  secretStoreRefs: [{name: nowhere, kind: SecretStore}]
  selector: {secret: {name: s}}
  data: [{match: {remoteRef: {remoteKey: k}}}]
`,
      /\(PushSecret\/p\): spec\.secretStoreRefs\[0\]\.name: no SecretStore "nowhere" in namespace default/,
    ],
    [
      "unknown provider",
      "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: s}\nspec:\n  provider:\n    ibm: {}\n",
      /spec\.provider\.ibm: unsupported provider; expected one of file, aws, gcpsm, azurekv, vault/,
    ],
    [
      "Vault KV v1",
      "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: s}\nspec:\n  provider:\n    vault:\n      server: http://127.0.0.1:8200\n      version: v1\n      auth: {tokenSecretRef: {name: t, key: token}}\n",
      /spec\.provider\.vault\.version: KV v1 keeps no versions/,
    ],
    [
      "Vault without tokenSecretRef",
      "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: s}\nspec:\n  provider:\n    vault:\n      server: http://127.0.0.1:8200\n      auth: {}\n",
      /spec\.provider\.vault\.auth\.tokenSecretRef: /,
    ],
    ["duplicate names", `${PASSWORD}---\n${PASSWORD}`, /document 2 \(Password\/gen\): metadata\.name: duplicate Password "gen"/],
  ];

  it.each(cases)("%s", (_label, text, pattern) => {
    expect(errorOf(text)).toMatch(pattern);
  });

  it("reports every problem of a file at once", () => {
    const message = errorOf(`${PASSWORD.replace("digits: 5", "digits: -1")}---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n`);
    expect(message).toMatch(/^2 problems in the manifests:/);
  });

  it("never echoes a Secret's value in an error", () => {
    const message = errorOf("apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ndata:\n  token: 'not base64 hunter2!'\n");
    expect(message).toMatch(/data\.token: expected base64/);
    expect(message).not.toContain("hunter2");
  });

  it("warns about a Password that ESO reads differently: length <= 0 (means 24), multi-byte symbolCharacters (bytes)", () => {
    for (const length of [0, -3]) {
      const set = load(PASSWORD.replace("length: 42", `length: ${length}`).replace("  digits: 5\n  symbols: 5\n", ""));
      expect(set.warnings).toEqual([expect.stringMatching(new RegExp(`\\(Password/gen\\): spec\\.length: ${length} means the default length, 24`))]);
      expect(set.passwords[0]!.spec.length).toBe(24);
    }
    const set = load(PASSWORD.replace('symbolCharacters: "-_$@"', 'symbolCharacters: "-_é€$"'));
    expect(set.warnings).toEqual([expect.stringMatching(/spec\.symbolCharacters: has multi-byte characters \(é €\): ESO's generator treats symbolCharacters as bytes/)]);
    // ASCII symbols and an omitted length: nothing to say.
    expect(load(PASSWORD).warnings).toEqual([]);
    expect(load(PASSWORD.replace("  length: 42\n", "")).warnings).toEqual([]);
  });

  it("warns where ESO would accept a field that has no effect here", () => {
    const set = load(es(`${GOOD_ES_SPEC}  secretStoreRef: {name: x, kind: SecretStore}\n`));
    expect(set.warnings[0]).toMatch(/spec\.secretStoreRef: has no effect/);
  });
});

describe("AWS write rate", () => {
  it("warns when a rotation publishing to an aws store runs more often than every 10 minutes", () => {
    const store = "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {name: sm}\nspec:\n  provider:\n    aws: {service: SecretsManager, region: us-east-1}\n";
    const push = "apiVersion: external-secrets.io/v1alpha1\nkind: PushSecret\nmetadata: {name: p}\nspec:\n  secretStoreRefs: [{name: sm}]\n  selector: {secret: {name: cluster-example-app}}\n  data: [{match: {remoteRef: {remoteKey: k}}}]\n";
    const fast = loadManifests([{ file: "m.yaml", text: `${es(GOOD_ES_SPEC.replace("24h", "30s"))}---\n${store}---\n${push}` }]);
    expect(fast.warnings).toHaveLength(1);
    expect(fast.warnings[0]).toMatch(/spec\.refreshInterval: 30s rotates more often than AWS advises.*PushSecret p/);
    const daily = loadManifests([{ file: "m.yaml", text: `${es(GOOD_ES_SPEC)}---\n${store}---\n${push}` }]);
    expect(daily.warnings).toEqual([]);
  });
});

describe("Go durations", () => {
  it("parses what ESO accepts", () => {
    expect(parseDuration("24h")).toBe(86_400_000);
    expect(parseDuration("30s")).toBe(30_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("1.5h")).toBe(5_400_000);
    expect(parseDuration("0")).toBe(0);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1d")).toBeUndefined();
    expect(parseDuration("")).toBeUndefined();
    expect(formatDuration(5_400_000)).toBe("1h30m");
  });
});
