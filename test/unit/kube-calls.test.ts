// lib/kubernetes/calls.ts without a server: the requests it builds (verb, path, query,
// headers, body) and how it reads answers, through client-node's own Configuration with an
// HttpLibrary that records each RequestContext and answers from a list.
import { ApiException } from "@kubernetes/client-node/dist/gen/apis/exception.js";
import { createConfiguration } from "@kubernetes/client-node/dist/gen/configuration.js";
import { type RequestContext, ResponseContext, wrapHttpLibrary } from "@kubernetes/client-node/dist/gen/http/http.js";
import { ServerConfiguration } from "@kubernetes/client-node/dist/gen/servers.js";
import { setHeaderMiddleware } from "@kubernetes/client-node/dist/middleware.js";
import { describe, expect, it } from "vitest";
import { KubernetesError } from "../../lib/errors.ts";
import { ApiCalls, METADATA_ONLY } from "../../lib/kubernetes/calls.ts";

interface Sent {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
}

function calls(answers: [number, string, string?][]): { api: ApiCalls; sent: Sent[] } {
  const sent: Sent[] = [];
  const configuration = createConfiguration({
    baseServer: new ServerConfiguration("https://api.example:6443", {}),
    httpApi: wrapHttpLibrary({
      send: async (r: RequestContext) => {
        sent.push({ method: r.getHttpMethod(), url: r.getUrl(), headers: { ...r.getHeaders() }, body: r.getBody() });
        const [status, text, type] = answers.shift() ?? [500, "{}"];
        const data = Buffer.from(text);
        return new ResponseContext(status, { "content-type": type ?? "application/json" }, {
          text: async () => text,
          binary: async () => data,
          stream: () => null,
        });
      },
    }),
    middleware: [setHeaderMiddleware("User-Agent", "cnpg-rotator")],
  });
  return { api: new ApiCalls(configuration, "cnpg-rotator"), sent };
}

describe("Kubernetes calls", () => {
  it("builds each request as the generated client did: path, query, Accept, Content-Type, JSON body", async () => {
    const { api, sent } = calls(Array.from({ length: 9 }, () => [200, "{}"] as [number, string]));
    await api.readSecret("ns 1", "app/x");
    await api.patchSecret("ns", "app", { metadata: { resourceVersion: "7" } });
    await api.patchSecret("ns", "app", [{ op: "remove", path: "/data/x" }], "json");
    await api.patchSecret("ns", "app", { data: {} }, "strategic");
    await api.listSecretMetadata("ns", { labelSelector: "a=b,c in (d)", limit: 500, continue: "t/k=" });
    await api.listSecretMetadata("ns", { labelSelector: "a", fieldSelector: "metadata.name=app", limit: 10 });
    await api.createLease("ns", { metadata: { name: "l" } });
    await api.deleteLease("ns", "l", { uid: "u", resourceVersion: "3" });
    await api.readNamespacedCustomObject("postgresql.cnpg.io", "v1", "ns", "clusters", "pg");
    expect(sent.map((s) => `${s.method} ${s.url}`)).toEqual([
      "GET https://api.example:6443/api/v1/namespaces/ns%201/secrets/app%2Fx",
      "PATCH https://api.example:6443/api/v1/namespaces/ns/secrets/app?fieldManager=cnpg-rotator",
      "PATCH https://api.example:6443/api/v1/namespaces/ns/secrets/app?fieldManager=cnpg-rotator",
      "PATCH https://api.example:6443/api/v1/namespaces/ns/secrets/app?fieldManager=cnpg-rotator",
      "GET https://api.example:6443/api/v1/namespaces/ns/secrets?labelSelector=a%3Db%2Cc+in+%28d%29&limit=500&continue=t%2Fk%3D",
      "GET https://api.example:6443/api/v1/namespaces/ns/secrets?labelSelector=a&fieldSelector=metadata.name%3Dapp&limit=10",
      "POST https://api.example:6443/apis/coordination.k8s.io/v1/namespaces/ns/leases?fieldManager=cnpg-rotator",
      "DELETE https://api.example:6443/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
      "GET https://api.example:6443/apis/postgresql.cnpg.io/v1/namespaces/ns/clusters/pg",
    ]);
    expect(sent[0]!.headers).toEqual({ Accept: "application/json, */*;q=0.8", "User-Agent": "cnpg-rotator" });
    expect(sent[0]!.body).toBeUndefined();
    expect(sent.slice(1, 4).map((s) => s.headers["Content-Type"])).toEqual([
      "application/merge-patch+json",
      "application/json-patch+json",
      "application/strategic-merge-patch+json",
    ]);
    expect(sent[1]!.body).toBe('{"metadata":{"resourceVersion":"7"}}');
    expect(sent[4]!.headers.Accept).toBe(METADATA_ONLY);
    expect(sent[6]!.headers["Content-Type"]).toBe("application/json");
    expect(sent[7]!.body).toBe('{"preconditions":{"uid":"u","resourceVersion":"3"}}');
  });

  it("answers: JSON parsed as sent; an error status is client-node's ApiException with the body as text", async () => {
    const status = '{"kind":"Status","code":409,"reason":"Conflict","message":"modified"}';
    const { api } = calls([
      [200, '{"metadata":{"continue":"x"},"items":[{"metadata":{"name":"a"}}]}', "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"],
      [409, status],
      [401, "Unauthorized", "text/plain"],
    ]);
    expect(await api.listSecretMetadata("ns", {})).toEqual({ metadata: { continue: "x" }, items: [{ metadata: { name: "a" } }] });
    const conflict = await api.readSecret("ns", "a").catch((e: unknown) => e);
    expect(conflict).toBeInstanceOf(ApiException);
    expect((conflict as ApiException<string>).code).toBe(409);
    expect((conflict as ApiException<string>).body).toBe(status);
    const unauthorized = await api.readSecret("ns", "a").catch((e: unknown) => e);
    expect((unauthorized as ApiException<unknown>).code).toBe(401);
  });

  it("a 2xx answer that is not JSON is a KubernetesError naming the call and the content type", async () => {
    const { api } = calls([
      [200, "<html>proxy login</html>", "text/html"],
      [200, "{not json", "application/json"],
    ]);
    await expect(api.readSecret("ns", "a")).rejects.toThrow(KubernetesError);
    await expect(api.readSecret("ns", "a")).rejects.toThrow(
      'GET /api/v1/namespaces/ns/secrets/a: the API server\'s answer (HTTP 200) is not valid JSON',
    );
    const { api: html } = calls([[200, "<html>proxy login</html>", "text/html"]]);
    await expect(html.readSecret("ns", "a")).rejects.toThrow(
      'GET /api/v1/namespaces/ns/secrets/a: the API server answered HTTP 200 with content type "text/html", not JSON',
    );
  });
});
