// The API calls the cluster client makes, each a verb, a path and a JSON body, sent through
// client-node's own request layer (the Configuration's server, middleware and HttpLibrary,
// its RequestContext and ApiException) instead of its generated API classes: those and the
// ObjectSerializer they use reference every model of the API (~236 KB of bundle) and turn
// every answer into model instances. Requests and answers are the same on the wire.
import type { V1ObjectMeta } from "@kubernetes/client-node/dist/gen/models/V1ObjectMeta.js";
import type { V1Secret } from "@kubernetes/client-node/dist/gen/models/V1Secret.js";
import { ApiException } from "@kubernetes/client-node/dist/gen/apis/exception.js";
import type { Configuration } from "@kubernetes/client-node/dist/gen/configuration.js";
import type { HttpMethod, RequestContext, ResponseContext } from "@kubernetes/client-node/dist/gen/http/http.js";
import { KubernetesError } from "../errors.ts";

/** A patch's Content-Type names its strategy. */
export const PATCH_TYPES = {
  merge: "application/merge-patch+json",
  strategic: "application/strategic-merge-patch+json",
  json: "application/json-patch+json",
} as const;
export type PatchType = keyof typeof PATCH_TYPES;

/** Lists answered as metadata only (names, labels, annotations): a Secret's data never crosses the wire. */
export const METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const ACCEPT_JSON = "application/json, */*;q=0.8";

/** One request: query values left undefined are not sent. */
export interface Call {
  readonly method: HttpMethod;
  readonly path: string;
  readonly query?: Readonly<Record<string, string | number | undefined>>;
  readonly body?: unknown;
  /** Of the body; JSON unless a patch says otherwise. */
  readonly contentType?: string;
  readonly accept?: string;
}

/** A coordination.k8s.io/v1 Lease as on the wire (its times are RFC 3339 strings with microseconds). */
export interface Lease {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: V1ObjectMeta;
  readonly spec?: LeaseSpec;
}

export interface LeaseSpec {
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string;
  readonly renewTime?: string;
  readonly leaseTransitions?: number;
}

/** A list page as the API sends it (metadata-only or whole objects). */
export interface ListAnswer<T> {
  readonly metadata?: { readonly continue?: string; readonly resourceVersion?: string };
  readonly items?: readonly T[];
}

/** An item of a metadata-only list; `data` would only be there if the server ignored the Accept header. */
export interface MetadataItem {
  readonly metadata?: V1ObjectMeta;
  readonly data?: unknown;
}

export interface ListQuery {
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  readonly limit?: number;
  readonly continue?: string;
}

/** Object names go into paths encoded, as the generated client does. */
const e = encodeURIComponent;
const core = (namespace: string, resource: string, name?: string) =>
  `/api/v1/namespaces/${e(namespace)}/${resource}${name === undefined ? "" : `/${e(name)}`}`;
const leases = (namespace: string, name?: string) =>
  `/apis/coordination.k8s.io/v1/namespaces/${e(namespace)}/leases${name === undefined ? "" : `/${e(name)}`}`;

/**
 * The calls of the Secret, Namespace, Lease, SelfSubjectAccessReview and custom object
 * APIs the client uses. Every one resolves to the parsed answer for a 2xx and rejects with
 * client-node's ApiException (status code, body as text) otherwise, as the generated API did.
 */
export class ApiCalls {
  readonly #config: Configuration;
  readonly #fieldManager: string;

  constructor(config: Configuration, fieldManager: string) {
    this.#config = config;
    this.#fieldManager = fieldManager;
  }

  readSecret(namespace: string, name: string): Promise<V1Secret> {
    return this.send({ method: "GET", path: core(namespace, "secrets", name) });
  }

  createSecret(namespace: string, body: V1Secret): Promise<V1Secret> {
    return this.send({ method: "POST", path: core(namespace, "secrets"), query: this.#managed(), body });
  }

  patchSecret(namespace: string, name: string, patch: unknown, type: PatchType = "merge"): Promise<V1Secret> {
    return this.send({
      method: "PATCH",
      path: core(namespace, "secrets", name),
      query: this.#managed(),
      body: patch,
      contentType: PATCH_TYPES[type],
    });
  }

  deleteSecret(namespace: string, name: string): Promise<unknown> {
    return this.send({ method: "DELETE", path: core(namespace, "secrets", name) });
  }

  /** One page of Secrets' metadata only (PartialObjectMetadataList). */
  listSecretMetadata(namespace: string, query: ListQuery): Promise<ListAnswer<MetadataItem>> {
    return this.send({ method: "GET", path: core(namespace, "secrets"), query: { ...query }, accept: METADATA_ONLY });
  }

  readNamespace(name: string): Promise<unknown> {
    return this.send({ method: "GET", path: `/api/v1/namespaces/${e(name)}` });
  }

  createNamespace(name: string): Promise<unknown> {
    return this.send({ method: "POST", path: "/api/v1/namespaces", query: this.#managed(), body: { metadata: { name } } });
  }

  readLease(namespace: string, name: string): Promise<Lease> {
    return this.send({ method: "GET", path: leases(namespace, name) });
  }

  createLease(namespace: string, body: Lease): Promise<Lease> {
    return this.send({ method: "POST", path: leases(namespace), query: this.#managed(), body });
  }

  replaceLease(namespace: string, name: string, body: Lease): Promise<Lease> {
    return this.send({ method: "PUT", path: leases(namespace, name), query: this.#managed(), body });
  }

  /** DELETE with preconditions: refused with 409 when the Lease is no longer the one named. */
  deleteLease(namespace: string, name: string, preconditions: { uid?: string; resourceVersion?: string }): Promise<unknown> {
    return this.send({ method: "DELETE", path: leases(namespace, name), body: { preconditions } });
  }

  createSelfSubjectAccessReview(body: unknown): Promise<{ status?: { allowed?: boolean } }> {
    return this.send({ method: "POST", path: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body });
  }

  readNamespacedCustomObject(group: string, version: string, namespace: string, plural: string, name: string): Promise<unknown> {
    return this.send({ method: "GET", path: `/apis/${e(group)}/${e(version)}/namespaces/${e(namespace)}/${e(plural)}/${e(name)}` });
  }

  /** Sends one call through the configuration's middleware and HttpLibrary; parses the answer. */
  async send<T>(call: Call): Promise<T> {
    const config = this.#config;
    let request: RequestContext = config.baseServer.makeRequestContext(call.path, call.method);
    request.setHeaderParam("Accept", call.accept ?? ACCEPT_JSON);
    for (const [name, value] of Object.entries(call.query ?? {})) {
      if (value !== undefined) request.setQueryParam(name, String(value));
    }
    if (call.body !== undefined) {
      request.setHeaderParam("Content-Type", call.contentType ?? "application/json");
      request.setBody(JSON.stringify(call.body));
    }
    for (const m of config.middleware) request = await m.pre(request).toPromise();
    let response: ResponseContext = await config.httpApi.send(request).toPromise();
    for (let i = config.middleware.length - 1; i >= 0; i--) response = await config.middleware[i]!.post(response).toPromise();
    return parseAnswer<T>(response, call);
  }

  #managed(): Record<string, string> {
    return { fieldManager: this.#fieldManager };
  }
}

async function parseAnswer<T>(response: ResponseContext, call: Call): Promise<T> {
  const code = response.httpStatusCode;
  if (code === 401) throw new ApiException(code, "Unauthorized", undefined, response.headers);
  const text = await response.body.text();
  if (code < 200 || code > 299) throw new ApiException(code, `HTTP ${code}`, text, response.headers);
  const type = (response.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase();
  // What the API server sends for every call here; anything else is not an answer to read as an object.
  if (type !== "application/json" && !type.endsWith("+json")) {
    throw new KubernetesError(
      `${call.method} ${call.path}: the API server answered HTTP ${code} with content type "${type || "(none)"}", not JSON`,
    );
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new KubernetesError(`${call.method} ${call.path}: the API server's answer (HTTP ${code}) is not valid JSON`);
  }
}
