// AWS Secrets Manager primitives. The service has native staging: a rotation's value is a
// version whose VersionId is the rotation id (sent as ClientRequestToken, so a repeated write is
// a no-op and a reused token with another value is refused), labelled AWSPENDING, made current by
// moving AWSCURRENT (AWS then moves AWSPREVIOUS itself). The protocol is in lib/protocol/.
//
// One wrinkle AWS imposes: the first version of a secret always gets AWSCURRENT, whatever labels
// the write asks for; the protocol marks it CNPG_ROTATOR_UNPROMOTED and reads it as pending only
// until it is promoted. Consumers reading AWSCURRENT directly do see it meanwhile; a discard
// deletes such a secret, so none is left holding a value nobody accepted.
import { createHash } from "node:crypto";
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  type GetSecretValueCommandOutput,
  PutSecretValueCommand,
  RestoreSecretCommand,
  UpdateSecretVersionStageCommand,
} from "@aws-sdk/client-secrets-manager";
import * as z from "zod";
import { InputError, StoreConflictError, StoreStateError } from "../errors.ts";
import type { AwsProvider } from "../manifests/schema.ts";
import { isNetworkError, isTransientStatus } from "../retry.ts";
import { createSecretsManagerClient } from "./aws-client.ts";
import { errorIs, OURS, requestTimeoutMs, storeCalls } from "./primitives.ts";
import { MANAGED_BY_KEY, MANAGED_BY_VALUE, type NativePrimitives, type StoreDeps } from "./types.ts";

/** VersionIds of direct pushes start with this, so they are not mistaken for rotation ids. */
export const PUSH_TOKEN_PREFIX = "push-";

const DESCRIPTION = `Written by cnpg-rotator (tag ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}); it rotates this value, so edits by hand do not last.`;

/** ESO's `spec.provider.aws.secretsManager`: how PushSecret deletion deletes. */
const secretsManagerSchema = z
  .strictObject({
    forceDeleteWithoutRecovery: z.boolean().optional(),
    recoveryWindowInDays: z.int().min(7).max(30).optional(),
  })
  .refine((o) => !(o.forceDeleteWithoutRecovery && o.recoveryWindowInDays !== undefined), {
    message: "set forceDeleteWithoutRecovery or recoveryWindowInDays, not both",
  });

const is = errorIs((error) => (error instanceof Error ? error.name : ""));
const NOT_FOUND = "ResourceNotFoundException";
const EXISTS = "ResourceExistsException";

export function awsPrimitives(config: AwsProvider, _deps: StoreDeps = {}): NativePrimitives {
  if (config.service !== "SecretsManager") {
    throw new InputError(`spec.provider.aws.service: expected "SecretsManager", found "${config.service}"`);
  }
  if (config.role !== undefined) {
    throw new InputError(
      "spec.provider.aws.role: assuming a role is not supported; the function uses its own credentials, so grant its role access to the secrets",
    );
  }
  const parsed = secretsManagerSchema.safeParse(config.secretsManager ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InputError(`spec.provider.aws.secretsManager${issue.path.map((p) => `.${String(p)}`).join("")}: ${issue.message}`);
  }
  const timeout = requestTimeoutMs();
  // Endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL) and credentials come from the SDK's own
  // chain. One attempt per call: storeCalls retries, so retries never multiply; a request that hangs
  // (a blackholed connection) fails after the timeout instead of holding the function to its end.
  // The trimmed client of aws-client.ts (cached middleware, one credential chain per container).
  const client = createSecretsManagerClient(config.region, {
    maxAttempts: 1,
    // One deadline per request, connecting included: the handler's separate connection and
    // socket-idle timers (each a timer per request) could only fire after it.
    requestHandler: { requestTimeout: timeout, throwOnRequestTimeout: true, socketTimeout: 0 },
  });
  const prefix = config.prefix ?? "";
  const options = parsed.data;
  const deletion = options.forceDeleteWithoutRecovery
    ? { ForceDeleteWithoutRecovery: true }
    : options.recoveryWindowInDays === undefined
      ? {}
      : { RecoveryWindowInDays: options.recoveryWindowInDays };
  const description = `aws secretsmanager ${config.region}${prefix ? ` prefix ${prefix}` : ""}`;
  const send = storeCalls(description, {
    transient: (e) =>
      isNetworkError(e) ||
      isTransientStatus((e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode) ||
      is("ThrottlingException", "InternalServiceError")(e),
  });
  const versionOf = (out: GetSecretValueCommandOutput) => {
    if (out.SecretString === undefined || out.VersionId === undefined) {
      throw new StoreStateError(`secret "${out.Name ?? "?"}" version ${out.VersionId ?? "?"} holds a binary value; expected a string`);
    }
    return { ...rotationOf(out.VersionId), value: out.SecretString, labels: out.VersionStages ?? [] };
  };

  const primitives: NativePrimitives = {
    staging: "native",
    provider: "aws",
    description,
    markKind: "tag",
    compareAndSwap: true,
    names: (key) => ({ key: prefix + key }),

    async describe(name) {
      const out = await send("DescribeSecret", name, () => client.send(new DescribeSecretCommand({ SecretId: name })), is(NOT_FOUND));
      if (!out) return undefined;
      return {
        deleted: out.DeletedDate !== undefined,
        marks: Object.fromEntries((out.Tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""])),
        versions: Object.entries(out.VersionIdsToStages ?? {}).map(([id, labels]) => ({ ...rotationOf(id), labels })),
      };
    },

    async read(name, which) {
      const query = "label" in which ? { VersionStage: which.label } : { VersionId: which.versionId };
      const get = new GetSecretValueCommand({ SecretId: name, ...query });
      const out = await send("GetSecretValue", name, () => client.send(get), is(NOT_FOUND, "InvalidRequestException"));
      if (out) return versionOf(out);
      // Refused for a secret deleted with a recovery window, which reads as gone; anything else is an error.
      const secret = await primitives.describe(name);
      if (!secret || secret.deleted || "label" in which) return undefined;
      throw new StoreStateError(`version ${which.versionId} of "${name}" in ${description} cannot be read`);
    },

    async create(name, first) {
      const token = first && pushToken(undefined, first.value);
      const create = new CreateSecretCommand({
        Name: name,
        Description: DESCRIPTION,
        Tags: Object.entries(OURS).map(([Key, Value]) => ({ Key, Value })),
        ...(first ? { SecretString: first.value, ClientRequestToken: token } : {}),
      });
      const created = await send("CreateSecret", name, () => client.send(create), is(EXISTS));
      return created ? (token ? { versionId: token } : {}) : false;
    },

    async put(name, value, options) {
      const token = options.rotationId ?? pushToken(options.replaces, value);
      const put = new PutSecretValueCommand({
        SecretId: name,
        ClientRequestToken: token,
        SecretString: value,
        ...(options.labels ? { VersionStages: [...options.labels] } : {}),
      });
      const out = await send("PutSecretValue", name, () => client.send(put), is(EXISTS));
      // A repeat labels nothing new; a token already used with another value is refused: read what it holds.
      if (out?.VersionId === token && (options.labels ?? []).every((l) => out.VersionStages?.includes(l))) {
        return { ...rotationOf(token), value, labels: out.VersionStages ?? [] };
      }
      const version = await primitives.read(name, { versionId: token });
      if (!version) throw new StoreStateError(`version ${token} of "${name}" in ${description} is gone`);
      return version;
    },

    async move(name, label, change) {
      const move = new UpdateSecretVersionStageCommand({ SecretId: name, VersionStage: label, MoveToVersionId: change.to, RemoveFromVersionId: change.from });
      // An attempt without an answer may have been applied: a refusal after it says so (afterLostAnswer).
      let lost = false;
      await send("UpdateSecretVersionStage", name, () =>
        client.send(move).catch((error: unknown) => {
          // AWS refuses a move that names, as holding the label, a version that no longer does: the compare-and-swap.
          if (!is("InvalidParameterException", "InvalidRequestException")(error)) {
            if (isNetworkError(error)) lost = true;
            throw error;
          }
          const refused = new StoreConflictError(
            `moving ${label} of "${name}" in ${description}${change.from ? ` off version ${change.from}` : ""} was refused: it moved since observed; nothing was written`,
            { cause: error },
          );
          refused.afterLostAnswer = lost;
          throw refused;
        }),
      );
    },

    async restore(name) {
      await send("RestoreSecret", name, () => client.send(new RestoreSecretCommand({ SecretId: name })));
    },

    async remove(name, how) {
      const options = how === "now" ? { ForceDeleteWithoutRecovery: true } : deletion;
      await send("DeleteSecret", name, () => client.send(new DeleteSecretCommand({ SecretId: name, ...options })), is(NOT_FOUND));
    },

    async close() {
      client.destroy();
    },
  };
  return primitives;
}

/** A rotation's version has the rotation id as VersionId; a direct push's has our push token. */
function rotationOf(versionId: string): { versionId: string; rotationId?: string } {
  return versionId.startsWith(PUSH_TOKEN_PREFIX) ? { versionId } : { versionId, rotationId: versionId };
}

/**
 * The ClientRequestToken of a direct push: the same push retried makes no second version, and it
 * depends on the version it replaces so that pushing A, B, A again writes a third version rather
 * than hitting A's old token.
 */
function pushToken(replaces: string | undefined, value: string): string {
  const hash = createHash("sha256").update(`${replaces ?? ""}\n${value}`).digest("hex");
  return (PUSH_TOKEN_PREFIX + hash).slice(0, 64);
}
