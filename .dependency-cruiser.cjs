// Which way the imports run (../shared/STYLE.md), checked by `npm run deps` in `npm run check`:
//
//   front ends (functions/, lib/cli/, bin/, deploy/, serverless/, scripts/, bench/)
//     → lib/rotation/ (the engine)
//       → lib/manifests/, lib/generator/, lib/template/ (→ lib/cnpg/)   pure: no I/O
//       → lib/protocol/ (the rotation protocol, once, over the stores' primitives)
//         → lib/stores/ (the primitives: never the protocol that drives them)
//       → lib/stores/, lib/kubernetes/, lib/postgres/                   I/O: never each other
//   lib/errors.ts, lib/log.ts, lib/retry.ts, lib/sha256.ts, lib/pem.ts: importable from anywhere, import no folder of lib/.
//
// Each rule below forbids one wrong direction. Violations that predate a rule are listed in
// .dependency-cruiser-known-violations.json (npm run deps ignores them; `npm run deps:baseline`
// rewrites the list): that list should only ever shrink. Type-only imports count too.

/** Where lib/<folder>/ may import from in lib/, besides itself. */
const LIB_ALLOWED = {
  generator: ["errors.ts"],
  cnpg: ["errors.ts"],
  template: ["cnpg/", "errors.ts"],
  manifests: ["generator/", "template/", "errors.ts"],
  protocol: ["stores/", "errors.ts", "manifests/"],
  stores: ["errors.ts", "log.ts", "retry.ts", "sha256.ts", "pem.ts", "manifests/"],
  kubernetes: ["errors.ts", "log.ts", "retry.ts", "sha256.ts", "pem.ts"],
  postgres: ["errors.ts", "log.ts", "retry.ts"],
  queues: ["errors.ts", "log.ts", "retry.ts"],
};

const alternatives = (paths) => paths.map((p) => p.replaceAll(".", "\\.") + (p.endsWith("/") ? "" : "$")).join("|");

const layerRules = Object.entries(LIB_ALLOWED).map(([folder, allowed]) => ({
  name: `${folder}-imports-only-below`,
  comment: `lib/${folder}/ may import from lib/ only ${allowed.map((a) => `lib/${a}`).join(", ")}`,
  severity: "error",
  from: { path: `^lib/${folder}/` },
  to: {
    path: "^lib/",
    pathNot: `^lib/(?:${folder}/|${alternatives(allowed)})`,
  },
}));

/** The folders that do no I/O: pure functions of their input, tested without servers. */
const PURE = "^lib/(?:generator|template|cnpg|manifests)/";

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "no import cycles, anywhere: each module sits on one side of every other",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "lib-imports-no-front-end",
      comment: "lib/ imports nothing outside lib/ (functions/, the trigger front ends, deploy/, test/ ...)",
      severity: "error",
      from: { path: "^lib/" },
      to: { path: "^(?!lib/|node_modules/)", dependencyTypesNot: ["core", "npm", "npm-dev", "npm-optional", "npm-peer"] },
    },
    {
      name: "lib-imports-no-cli",
      comment: "the CLI is a front end: nothing else in lib/ imports it",
      severity: "error",
      from: { path: "^lib/", pathNot: "^lib/cli/" },
      to: { path: "^lib/cli/" },
    },
    {
      name: "shared-modules-import-no-folder",
      comment:
        "lib/errors.ts, lib/log.ts, lib/retry.ts, lib/redact.ts, lib/sha256.ts, lib/pem.ts are below every folder of lib/ " +
        "(redact.ts knows a value's encodings from lib/cnpg's pure escapers, nothing more)",
      severity: "error",
      from: { path: "^lib/[^/]+$" },
      to: { path: "^lib/[^/]+/", pathNot: "^lib/cnpg/(?:index|escape|connection|contextual)\\.ts$" },
    },
    ...layerRules,
    {
      name: "stores-never-import-the-protocol",
      comment: "lib/stores/ holds the primitives the protocol (lib/protocol/) drives: a store knows nothing of it",
      severity: "error",
      from: { path: "^lib/stores/" },
      to: { path: "^lib/protocol/" },
    },
    {
      name: "stores-take-manifest-types-only",
      comment: "a store (and the protocol over it) is configured by its manifest: the provider's config types, no code",
      severity: "error",
      from: { path: "^lib/(?:stores|protocol)/" },
      // (and the one Go-duration parser, for a store timeout given as "10s")
      to: { path: "^lib/manifests/", pathNot: "^lib/manifests/duration\\.ts$", dependencyTypesNot: ["type-only"] },
    },
    {
      name: "functions-call-only-the-engine",
      comment: "handlers translate an event into one call of the engine: lib/rotation/, errors, log",
      severity: "error",
      from: { path: "^functions/" },
      to: { path: "^lib/", pathNot: "^lib/(?:rotation/|errors\\.ts$|log\\.ts$)" },
    },
    {
      name: "cli-reaches-servers-through-the-engine",
      comment: "stores, the cluster client and PostgreSQL meet only in the engine, for the CLI too",
      severity: "error",
      from: { path: "^lib/cli/" },
      to: { path: "^lib/(?:protocol|stores|kubernetes|postgres)/" },
    },
    {
      name: "pure-folders-no-io-core-modules",
      comment: "generator, template, cnpg and manifests do no I/O: of Node's modules only crypto, buffer, util, path, url",
      severity: "error",
      from: { path: PURE },
      to: { dependencyTypes: ["core"], pathNot: "^(?:crypto|buffer|util|path|url)$" },
    },
    {
      name: "pure-folders-only-pure-packages",
      comment: "generator, template, cnpg and manifests use only libraries that do no I/O (no SDKs, no logging)",
      severity: "error",
      from: { path: PURE },
      to: { path: "^node_modules/", pathNot: "^node_modules/(?:yaml|zod|rfc4648)/" },
    },
    {
      name: "secret-store-sdks-only-in-stores",
      comment: "the secret managers' SDKs are the stores' business (the cluster client gets a kubeconfig kept in a store from the engine)",
      severity: "error",
      from: { path: "^(?:lib|functions)/", pathNot: "^lib/stores/" },
      to: {
        path: "^node_modules/(?:@aws-sdk/client-secrets-manager|@google-cloud/secret-manager|@azure/keyvault-secrets|node-vault)/",
      },
    },
    {
      name: "trigger-sdks-only-in-front-ends",
      comment: "cloud event shapes and function frameworks are the triggers' business, not the engine's",
      severity: "error",
      from: { path: "^lib/" },
      to: { path: "^node_modules/(?:@azure/functions|@google-cloud/functions-framework|@types/aws-lambda|aws-lambda)/" },
    },
  ],
  options: {
    // The whole tree is cruised (`depcruise .`), so a new folder is checked without a config change.
    exclude: { path: "^(?:\\.serverless|dist|bench/results)/" },
    // Also node_modules reached through a symlink (a git worktree sharing the main checkout's).
    doNotFollow: { path: "(?:^|/)node_modules/" },
    // Type-only imports are dependencies too: they fix which way the layers run.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    moduleSystems: ["es6", "cjs"],
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      mainFields: ["module", "main", "types"],
    },
  },
};
