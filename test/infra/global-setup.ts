// vitest globalSetup: starts etcd + kube-apiserver + moto once per run, hands the connection
// to tests (`inject("infra")`, and env vars for tools and SDKs) and stops them at the end.
import type { TestProject } from "vitest/node";
import { type InfraConnection, startTestInfra } from "./servers.ts";

declare module "vitest" {
  export interface ProvidedContext {
    infra: InfraConnection;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const infra = await startTestInfra();
  const { stop, ...connection } = infra;
  project.provide("infra", connection);

  // Workers are forked after this runs and inherit these, so kubectl and (later) the AWS SDK
  // reach the test servers without per-test wiring. The AWS credentials are dummies moto
  // accepts; setting them also keeps a developer's real ones out of the tests.
  Object.assign(process.env, {
    KUBECONFIG: infra.kubeconfigPath,
    CNPG_ROTATOR_TEST_KUBECONFIG: infra.kubeconfigPath,
    CNPG_ROTATOR_TEST_KUBE_SERVER: infra.server,
    CNPG_ROTATOR_TEST_KUBE_CA_FILE: infra.caFile,
    AWS_ENDPOINT_URL_SECRETS_MANAGER: infra.awsEndpoint,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_SESSION_TOKEN: "testing",
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
  });

  return stop;
}
