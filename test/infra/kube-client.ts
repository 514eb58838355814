// Small clients for tests to poke the test cluster directly: the REST API over TLS verified
// against the test CA (global fetch cannot take a CA without the undici package), kubectl,
// and ServiceAccount tokens for users made up at run time.
import { execFile } from "node:child_process";
import { request as httpsRequest } from "node:https";
import { promisify } from "node:util";
import type { InfraConnection } from "./servers.ts";

const execFileAsync = promisify(execFile);

export interface KubeResponse<T = unknown> {
  status: number;
  /** Parsed JSON when the body is JSON, else the raw text. */
  body: T;
}

export interface KubeRequestOptions {
  method?: string;
  /** Bearer token; default the admin token. */
  token?: string;
  /** Sent as JSON unless it is a string. */
  body?: unknown;
  contentType?: string;
}

/** One call to the apiserver, e.g. `kubeRequest(infra, "/api/v1/namespaces", { method: "POST", body })`. */
export function kubeRequest<T = unknown>(
  conn: Pick<InfraConnection, "server" | "caPem" | "adminToken">,
  apiPath: string,
  options: KubeRequestOptions = {},
): Promise<KubeResponse<T>> {
  const payload =
    options.body === undefined
      ? undefined
      : typeof options.body === "string"
        ? options.body
        : JSON.stringify(options.body);
  const headers: Record<string, string> = {
    authorization: `Bearer ${options.token ?? conn.adminToken}`,
    accept: "application/json",
  };
  if (payload !== undefined) {
    headers["content-type"] = options.contentType ?? "application/json";
    headers["content-length"] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      new URL(apiPath, conn.server),
      { method: options.method ?? "GET", ca: conn.caPem, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: unknown = text;
          if ((res.headers["content-type"] ?? "").includes("json")) body = JSON.parse(text);
          resolve({ status: res.statusCode ?? 0, body: body as T });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`timeout: ${options.method ?? "GET"} ${apiPath}`)));
    req.end(payload);
  });
}

/** Runs kubectl with the given kubeconfig; rejects (with kubectl's stderr) on a non-zero exit. */
export async function kubectl(kubeconfig: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync("kubectl", ["--kubeconfig", kubeconfig, ...args], {
      env: { ...process.env, KUBECONFIG: kubeconfig },
      timeout: 60_000,
    });
    return stdout;
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`kubectl ${args.join(" ")} failed: ${stderr.trim() || String(error)}`);
  }
}

/**
 * A bearer token for ServiceAccount `namespace/name` (created if missing) via the
 * TokenRequest API: a way to get fresh, unprivileged identities beyond the static users.
 * Its RBAC subject is `{ kind: "ServiceAccount", name, namespace }`.
 */
export async function serviceAccountToken(
  conn: Pick<InfraConnection, "server" | "caPem" | "adminToken">,
  namespace: string,
  name: string,
  expirationSeconds = 3600,
): Promise<string> {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/serviceaccounts`;
  const created = await kubeRequest(conn, base, {
    method: "POST",
    body: { apiVersion: "v1", kind: "ServiceAccount", metadata: { name } },
  });
  if (created.status !== 201 && created.status !== 409) {
    throw new Error(`creating ServiceAccount ${namespace}/${name}: expected 201 or 409, got ${created.status}`);
  }
  const response = await kubeRequest<{ status?: { token?: string } }>(
    conn,
    `${base}/${encodeURIComponent(name)}/token`,
    {
      method: "POST",
      body: {
        apiVersion: "authentication.k8s.io/v1",
        kind: "TokenRequest",
        spec: { expirationSeconds },
      },
    },
  );
  const token = response.body.status?.token;
  if (response.status !== 201 || !token) {
    throw new Error(`TokenRequest for ${namespace}/${name}: expected 201 with a token, got ${response.status}`);
  }
  return token;
}
