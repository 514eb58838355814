// What the alternating strategy needs of the CNPG Cluster, checked before anything is written.
import { describe, expect, it } from "vitest";
import { InputError } from "../../lib/errors.ts";
import type { CnpgCluster } from "../../lib/kubernetes/index.ts";
import { appliedSignal, checkAlternatingCluster } from "../../lib/rotation/applied.ts";

const ROLES = [
  { role: "app_blue", secretName: "c-blue" },
  { role: "app_green", secretName: "c-green" },
];
const role = (name: string, secret: string, extra: Record<string, unknown> = {}) => ({ name, login: true, inherit: true, inRoles: ["app"], passwordSecret: { name: secret }, ...extra });
const cluster = (roles: object[], owner?: string): CnpgCluster => ({
  name: "c",
  namespace: "ns",
  spec: { managed: { roles: roles as never }, ...(owner ? { bootstrap: { initdb: { owner } } } : {}) },
  status: {},
});

describe("checkAlternatingCluster", () => {
  it("accepts two login roles in the owner with the passwordSecrets named", () => {
    expect(() => checkAlternatingCluster(cluster([role("app_blue", "c-blue"), role("app_green", "c-green")]), "ns", "c", ROLES)).not.toThrow();
  });
  const cases: [string, CnpgCluster | undefined, RegExp][] = [
    ["no such Cluster", undefined, /Cluster ns\/c .* does not exist/],
    ["a role missing", cluster([role("app_blue", "c-blue")]), /has no role app_green/],
    ["another passwordSecret", cluster([role("app_blue", "c-blue"), role("app_green", "other")]), /passwordSecret\.name is "other"/],
    ["not a login role", cluster([role("app_blue", "c-blue"), role("app_green", "c-green", { login: false })]), /login is not true/],
    ["not a member of the owner", cluster([role("app_blue", "c-blue", { inRoles: [] }), role("app_green", "c-green")]), /inRoles does not contain app/],
    ["a member of another role than the owner", cluster([role("app_blue", "c-blue"), role("app_green", "c-green")], "owner_role"), /does not contain owner_role/],
    ["password disabled", cluster([role("app_blue", "c-blue", { disablePassword: true }), role("app_green", "c-green")]), /disablePassword/],
  ];
  for (const [what, c, message] of cases) {
    it(`refuses ${what}, saying nothing was written`, () => {
      expect(() => checkAlternatingCluster(c, "ns", "c", ROLES)).toThrow(InputError);
      expect(() => checkAlternatingCluster(c, "ns", "c", ROLES)).toThrow(message);
      expect(() => checkAlternatingCluster(c, "ns", "c", ROLES)).toThrow(/nothing was written/);
    });
  }
});

describe("appliedSignal", () => {
  it("names CNPG's own field for each kind of Secret", () => {
    const c = cluster([role("app_blue", "c-blue")]);
    expect(appliedSignal(c, "c-blue")?.field).toBe("status.managedRolesStatus.passwordStatus.app_blue.resourceVersion");
    expect(appliedSignal(c, "c-app")?.field).toBe("status.secretsResourceVersion.applicationSecretVersion");
    expect(appliedSignal(c, "c-superuser")?.field).toBe("status.secretsResourceVersion.superuserSecretVersion");
    expect(appliedSignal(c, "unrelated")).toBeUndefined();
  });
});
