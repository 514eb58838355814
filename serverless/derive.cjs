// osls's door to the manifests: serverless.yml reads ${file(./serverless/derive.cjs):rotateEvents},
// :pushEvents and :iamStatements. The manifests are read and checked by lib/manifests (the
// function's own reader: a manifest the function would refuse fails the package), and what is
// derived from them — schedules, IAM — is deploy/aws/derive.ts. This file only finds the
// settings in serverless.yml and hands the results over.
//
// CommonJS because osls loads variables files with require(); Node 24 (the project's, which
// npx puts first on PATH) require()s the TypeScript ES modules directly.
//
// Preview without the framework:  npx node serverless/derive.cjs [manifests-dir]
"use strict";

const { resolve } = require("node:path");
const derive = require("../deploy/aws/derive.ts");
const { readManifests } = require("../lib/rotation/files.ts");

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
  if (!loaded.has(key)) loaded.set(key, readManifests(s.paths, { namespace: s.namespace }));
  return { set: loaded.get(key), options: { schedule: s.schedule } };
}

module.exports = {
  rotateEvents: async (framework) => {
    const { set, options } = await manifests(framework);
    return derive.scheduleEvents(derive.rotateSchedules(set, options));
  },
  pushEvents: async (framework) => {
    const { set, options } = await manifests(framework);
    return derive.scheduleEvents(derive.pushSchedules(set, options));
  },
  iamStatements: async (framework) => {
    const { set } = await manifests(framework);
    return derive.iamStatements(set);
  },
};

if (require.main === module) {
  const paths = process.argv.slice(2);
  const namespace = process.env.CNPG_ROTATOR_NAMESPACE;
  const set = readManifests(paths.length > 0 ? paths : ["manifests"], namespace ? { namespace } : {});
  const options = { schedule: process.env.CNPG_ROTATOR_SCHEDULE || "" };
  const rotate = derive.rotateSchedules(set, options);
  const push = derive.pushSchedules(set, options);
  const out = {
    rotate,
    push,
    awsSecrets: derive.awsSecrets(set),
    rotateEvents: derive.scheduleEvents(rotate),
    pushEvents: derive.scheduleEvents(push),
    iamStatements: derive.iamStatements(set),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}
