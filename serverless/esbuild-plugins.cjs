// The esbuild plugins of every cloud's bundle: serverless-esbuild loads this file
// (serverless.yml custom.esbuild.plugins) for AWS, deploy/build.ts for GCP and Azure.
"use strict";

// node:http and node:https reach the bundle's code through the CommonJS loader. An ESM
// `import` of them (what esbuild leaves for a built-in) makes Node 24 build their module
// namespace, which reads every export, the lazy WebSocket, CloseEvent and MessageEvent
// getters included, and those load Node's internal undici: 35-55 ms of cold start, against
// 5-7 ms through the CommonJS loader. Only these two have such getters.
const builtinsThroughRequire = {
  name: "cnpg-builtins-through-require",
  setup(build) {
    build.onResolve({ filter: /^(node:)?https?$/ }, (args) => ({
      path: args.path.replace(/^node:/, ""),
      namespace: "cnpg-builtin",
    }));
    build.onLoad({ filter: /.*/, namespace: "cnpg-builtin" }, (args) => ({
      contents: `module.exports = process.getBuiltinModule(${JSON.stringify(`node:${args.path}`)});`,
      loader: "js",
    }));
  },
};

// The Kubernetes client's requests go over node:https (lib/kubernetes/transport.ts), so
// the copy of undici that @kubernetes/client-node imports (for its default fetch and its
// dispatchers, about 750 KB of bundle) never runs: the bundle gets these instead, which
// fail loudly should anything ever reach them. A name not listed here fails the build.
const NO_UNDICI = `
const reason = (what) => "cnpg-rotator's bundles send Kubernetes requests over node:https " +
  "(lib/kubernetes/transport.ts); undici's " + what + " is not in them";
export class Agent { constructor() { throw new Error(reason("Agent")); } }
export class ProxyAgent { constructor() { throw new Error(reason("ProxyAgent")); } }
export function fetch() { return Promise.reject(new Error(reason("fetch"))); }
`;

const noUndici = {
  name: "cnpg-no-undici",
  setup(build) {
    build.onResolve({ filter: /^undici$/ }, () => ({ path: "undici", namespace: "cnpg-no-undici" }));
    build.onLoad({ filter: /.*/, namespace: "cnpg-no-undici" }, () => ({ contents: NO_UNDICI, loader: "js" }));
  },
};

// client-node's KubeConfig (dist/config.js) takes two names from its generated code's index,
// which re-exports every API class and model: ~350 KB of bundle that esbuild cannot drop (the
// models' static type maps count as side effects) and that our calls never use
// (lib/kubernetes/calls.ts). The import is pointed at the two modules those names live in;
// should a client-node release import anything else from there, the build fails here.
const CONFIG_GEN_IMPORT = /import \{ createConfiguration, ServerConfiguration, \} from '\.\/gen\/index\.js';/;
const GEN_NAMES = `export { createConfiguration } from "./configuration.js";
export { ServerConfiguration } from "./servers.js";
`;

const narrowGenIndex = {
  name: "cnpg-client-node-gen-index",
  setup(build) {
    const path = require("node:path");
    const fs = require("node:fs");
    build.onResolve({ filter: /^\.\/gen\/index\.js$/ }, (args) => {
      if (!/[\\/]@kubernetes[\\/]client-node[\\/]dist[\\/]config\.js$/.test(args.importer)) return undefined;
      const source = fs.readFileSync(args.importer, "utf8");
      const imports = source.match(/from '\.\/gen\/index\.js'/g) ?? [];
      if (imports.length !== 1 || !CONFIG_GEN_IMPORT.test(source)) {
        return {
          errors: [
            {
              text:
                "@kubernetes/client-node's dist/config.js no longer imports exactly { createConfiguration, ServerConfiguration } " +
                "from ./gen/index.js: update serverless/esbuild-plugins.cjs (cnpg-client-node-gen-index)",
            },
          ],
        };
      }
      return { path: path.join(path.dirname(args.importer), "gen", "cnpg-config-names.js"), namespace: "cnpg-gen-names" };
    });
    build.onLoad({ filter: /.*/, namespace: "cnpg-gen-names" }, (args) => ({
      contents: GEN_NAMES,
      loader: "js",
      resolveDir: path.dirname(args.path),
    }));
  },
};

module.exports = [builtinsThroughRequire, noUndici, narrowGenIndex];
