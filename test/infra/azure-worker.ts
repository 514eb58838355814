// A stand-in for the Azure Functions Node worker: the worker hands @azure/functions its core
// API (require("@azure/functions-core")), the app registers its functions with it, and each
// invocation goes through the library's ProgrammingModel (RPC input → trigger value →
// handler → RPC output). Here the stand-in records the registrations and plays the worker's
// part for the tests.
import { randomUUID } from "node:crypto";
import Module from "node:module";

export interface Binding {
  readonly type: string;
  readonly direction: "in" | "out";
  readonly [setting: string]: unknown;
}
export interface FunctionMetadata {
  readonly name: string;
  readonly bindings: Record<string, Binding>;
  readonly retryOptions?: Record<string, unknown>;
}
type Callback = (...args: unknown[]) => unknown;
interface InvocationModel {
  getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
  invokeFunction(context: unknown, inputs: unknown[], callback: Callback): Promise<unknown>;
  getResponse(context: unknown, result: unknown): Promise<{ returnValue?: { http?: RpcHttp } | null }>;
}
export interface RpcHttp {
  statusCode?: string;
  headers?: Record<string, string>;
  body?: { bytes?: Uint8Array; string?: string };
}

export const registered = new Map<string, { metadata: FunctionMetadata; callback: Callback }>();
let programmingModel: { getInvocationModel(ctx: unknown): InvocationModel } | undefined;
export const hostLog: string[] = [];
const core = {
  setProgrammingModel: (model: typeof programmingModel) => {
    programmingModel = model;
  },
  registerFunction: (metadata: FunctionMetadata, callback: Callback) => {
    registered.set(metadata.name, { metadata, callback });
    return { dispose: () => registered.delete(metadata.name) };
  },
  registerHook: () => ({ dispose: () => undefined }),
  log: (level: string, category: string, message: string) => hostLog.push(`${level} ${category} ${message}`),
};

// The worker provides the module the same way: by answering require("@azure/functions-core").
const realRequire = Module.prototype.require;
const requireWithCore = function (this: NodeJS.Module, id: string) {
  return id === "@azure/functions-core" ? core : realRequire.call(this, id);
};

/** One invocation, as the worker makes it: RPC input data through the library's InvocationModel. */
export async function invoke(name: string, input: Record<string, unknown>, triggerMetadata: Record<string, unknown> = {}) {
  const fn = registered.get(name);
  if (!fn || !programmingModel) throw new Error(`function ${name} is not registered`);
  const trigger = Object.entries(fn.metadata.bindings).find(([, b]) => /trigger$/i.test(b.type))!;
  const model = programmingModel.getInvocationModel({
    invocationId: randomUUID(),
    metadata: fn.metadata,
    request: { inputData: [{ name: trigger[0], data: input }], triggerMetadata },
    state: "invocation",
    log: (level: string, category: string, message: string) => hostLog.push(`${level} ${category} ${message}`),
  });
  const { context, inputs } = await model.getArguments();
  const result = await model.invokeFunction(context, inputs, fn.callback);
  return { result, rpc: await model.getResponse(context, result) };
}


/** Loads the app (functions/azure/index.ts) as the worker does, with the core API answered. */
export async function loadAzureApp(): Promise<void> {
  Module.prototype.require = requireWithCore as typeof realRequire;
  // After the hook: the library looks for the core API when the app registers its first function.
  await import("../../functions/azure/index.ts");
}

export function unloadAzureApp(): void {
  Module.prototype.require = realRequire;
}
