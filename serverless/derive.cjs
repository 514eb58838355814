// osls's door to the manifests: serverless.yml reads ${file(./serverless/derive.cjs):planEvents},
// :planSpreadSeconds, :pushEvents and :iamStatements. The manifests are read and checked by lib/manifests (the
// function's own reader: a manifest the function would refuse fails the package), and what is
// derived from them — schedules, IAM — is deploy/aws/derive.ts. This file only finds the
// settings in serverless.yml and hands the results over.
//
// CommonJS because osls loads variables files with require(); Node 24 (the project's, which
// npx puts first on PATH) require()s the TypeScript ES modules directly.
//
// Preview without the framework:  npx node serverless/derive.cjs [manifests-dir]
"use strict";

const { mkdirSync, rmSync, writeFileSync } = require("node:fs");
const { dirname, join, relative, resolve } = require("node:path");
const derive = require("../deploy/aws/derive.ts");
const { compileManifests, readManifests } = require("../lib/rotation/files.ts");
const { splitCompiled } = require("../lib/fleet/compiled.ts");

const SERVICE_DIR = resolve(__dirname, "..");
/**
 * What the functions read (CNPG_ROTATOR_MANIFESTS): the manifests compiled at package time
 * (lib/fleet/compiled.ts): JSON instead of YAML, and one part per target, so a consumer reads
 * only its messages' targets whatever the fleet's size; the planner reads plan.json.
 */
const COMPILED = "dist/aws/manifests";

/** custom.rotator in serverless.yml: manifests (comma-separated, relative to it), namespace, schedule. */
async function settings({ resolveConfigurationProperty }) {
  const rotator = (await resolveConfigurationProperty(["custom", "rotator"])) || {};
  return {
    paths: String(rotator.manifests || "manifests")
      .split(",")
      .filter(Boolean)
      .map((p) => resolve(__dirname, "..", p)),
    namespace: rotator.namespace || "default",
    schedule: rotator.schedule || "",
  };
}

// osls resolves the three variables separately; read the manifests once per settings.
const loaded = new Map();
async function manifests(framework) {
  const s = await settings(framework);
  const key = JSON.stringify(s);
  if (!loaded.has(key)) {
    const { set, files } = compileManifests(s.paths, { namespace: s.namespace }, (p) => relative(SERVICE_DIR, p));
    const out = resolve(SERVICE_DIR, COMPILED);
    rmSync(out, { recursive: true, force: true });
    for (const [part, text] of splitCompiled(set, files)) {
      mkdirSync(dirname(join(out, part)), { recursive: true });
      writeFileSync(join(out, part), text);
    }
    loaded.set(key, set);
  }
  return { set: loaded.get(key), options: { schedule: s.schedule } };
}

module.exports = {
  compiledManifests: async (framework) => {
    await manifests(framework);
    return COMPILED;
  },
  planEvents: async (framework) => {
    const { set, options } = await manifests(framework);
    return derive.scheduleEvents(derive.plannerSchedule(set, options));
  },
  planSpreadSeconds: async (framework) => {
    const { set, options } = await manifests(framework);
    return String(derive.plannerSpreadSeconds(derive.plannerSchedule(set, options)));
  },
  pushEvents: async (framework) => {
    const { set, options } = await manifests(framework);
    return derive.scheduleEvents(derive.pushSchedule(set, options));
  },
  iamStatements: async (framework) => {
    const { set } = await manifests(framework);
    return [...derive.iamStatements(set), derive.queueStatement()];
  },
};

if (require.main === module) {
  const paths = process.argv.slice(2);
  const namespace = process.env.CNPG_ROTATOR_NAMESPACE;
  const set = readManifests(paths.length > 0 ? paths : ["manifests"], namespace ? { namespace } : {});
  const options = { schedule: process.env.CNPG_ROTATOR_SCHEDULE || "" };
  const plan = derive.plannerSchedule(set, options);
  const push = derive.pushSchedule(set, options);
  const out = {
    plan,
    push,
    awsSecrets: derive.awsSecrets(set),
    clusterSecrets: derive.clusterSecrets(set),
    planEvents: derive.scheduleEvents(plan),
    pushEvents: derive.scheduleEvents(push),
    iamStatements: derive.iamStatements(set),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}
