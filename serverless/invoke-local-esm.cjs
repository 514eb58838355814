// Lets `serverless invoke local` load the bundled .mjs handler.
// osls 4.3.1's invoke local require()s the handler path without an extension and then
// tries only ".cjs", so it never finds functions/aws/rotate.mjs, although Lambda does.
// After serverless-esbuild has bundled (this plugin is listed after it), point the
// function at the .mjs file for this run only; Node >= 22.12 require()s ES modules.
"use strict";

const { existsSync } = require("node:fs");
const { join } = require("node:path");

class InvokeLocalEsm {
  constructor(serverless, options) {
    this.hooks = {
      "before:invoke:local:invoke": () => {
        const fn = options.functionObj;
        if (!fn || typeof fn.handler !== "string") return;
        const dot = fn.handler.lastIndexOf(".");
        const path = fn.handler.slice(0, dot);
        if (dot < 0 || path.endsWith(".mjs")) return;
        const built = join(serverless.serviceDir || serverless.config.servicePath, options.extraServicePath || "", `${path}.mjs`);
        if (existsSync(built)) fn.handler = `${path}.mjs${fn.handler.slice(dot)}`;
      },
    };
  }
}

module.exports = InvokeLocalEsm;
