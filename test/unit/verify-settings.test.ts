// Verified rotation's settings (pure: no server): environment and annotations,
// and the InputError a bad value gives before anything runs.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../lib/errors.ts";
import { loadManifests } from "../../lib/manifests/index.ts";
import { VERIFY_ANNOTATIONS, verificationFromEnvironment, verifySettingsFor } from "../../lib/rotation/verify.ts";

const SEED = join(import.meta.dirname, "../../examples/seed");
function externalSecret(annotations: Record<string, string> = {}) {
  const es = readFileSync(join(SEED, "external-secret.yaml"), "utf8").replace(
    "  name: cluster-example-app-secret\n",
    `  name: cluster-example-app-secret\n  annotations: ${JSON.stringify(annotations)}\n`,
  );
  return loadManifests([
    { file: "p.yaml", text: readFileSync(join(SEED, "password-generator.yaml"), "utf8") },
    { file: "es.yaml", text: es },
  ]).externalSecrets[0]!;
}

describe("verified rotation settings", () => {
  it("is off unless asked for; annotations win over the environment", () => {
    expect(verificationFromEnvironment({}, [externalSecret()])).toEqual({ rollbackOnFailure: true });
    const on = verificationFromEnvironment({ CNPG_ROTATOR_VERIFY: "true" }, [externalSecret()]);
    expect(typeof on.verify).toBe("function");
    const optedOut = verificationFromEnvironment({ CNPG_ROTATOR_VERIFY: "true" }, [
      externalSecret({ [VERIFY_ANNOTATIONS.verify]: "false" }),
    ]);
    expect(optedOut.verify).toBeUndefined();
    const s = verifySettingsFor(externalSecret({ [VERIFY_ANNOTATIONS.host]: "db.example.com", [VERIFY_ANNOTATIONS.port]: "6432" }), {
      enabled: true,
      host: "ignored.example.com",
      port: 5432,
    });
    expect(s).toEqual({ enabled: true, host: "db.example.com", port: 6432, sslMode: "verify-full" }); // the default (issue 12: verify-full, CA from <cluster>-ca)
    expect(verificationFromEnvironment({ CNPG_ROTATOR_ROLLBACK_ON_VERIFY_FAILURE: "false" }, []).rollbackOnFailure).toBe(false);
  });

  it.each([
    [{ CNPG_ROTATOR_VERIFY: "yes" }, /CNPG_ROTATOR_VERIFY: expected true or false, found "yes"/],
    [{ CNPG_ROTATOR_VERIFY_PORT: "70000" }, /CNPG_ROTATOR_VERIFY_PORT: expected a port number from 1 to 65535/],
    [{ CNPG_ROTATOR_VERIFY_SSLMODE: "prefer" }, /CNPG_ROTATOR_VERIFY_SSLMODE: expected one of/],
    [{ CNPG_ROTATOR_VERIFY_HOST: "not a host" }, /CNPG_ROTATOR_VERIFY_HOST: expected a host name or IP address/],
    [{ CNPG_ROTATOR_VERIFY_TIMEOUT: "soon" }, /CNPG_ROTATOR_VERIFY_TIMEOUT/],
  ] as const)("refuses %o before any run", (env, pattern) => {
    expect(() => verificationFromEnvironment(env, [externalSecret()])).toThrow(InputError);
    expect(() => verificationFromEnvironment(env, [externalSecret()])).toThrow(pattern);
  });

  it("names the ExternalSecret and annotation of a bad per-target value", () => {
    expect(() => verifySettingsFor(externalSecret({ [VERIFY_ANNOTATIONS.port]: "x" }))).toThrow(
      /ExternalSecret default\/cluster-example-app-secret: annotation cnpg-rotator\.io\/verify-port: expected a port number/,
    );
  });
});
