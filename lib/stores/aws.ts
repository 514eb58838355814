// AWS Secrets Manager, driven the way AWS's own rotation functions drive it:
// a rotation's value is a version whose VersionId is the rotation id (sent as
// ClientRequestToken, so a retried write is a no-op), staged under AWSPENDING
// and promoted by moving AWSCURRENT to it; AWS then moves AWSPREVIOUS itself.
//
// One wrinkle AWS imposes: the first version of a secret always gets
// AWSCURRENT, whatever labels the write asks for. So when a rotation stages
// into a secret that has no value yet, we also label that version
// CNPG_ROTATOR_UNPROMOTED and read it as pending only, not current, until it
// is promoted. Consumers reading AWSCURRENT directly do see it meanwhile; a
// discard deletes such a secret, so none is left holding a value nobody accepted.
import { createHash } from "node:crypto";
import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  type DescribeSecretCommandOutput,
  GetSecretValueCommand,
  type GetSecretValueCommandOutput,
  PutSecretValueCommand,
  RestoreSecretCommand,
  type SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from "@aws-sdk/client-secrets-manager";
import * as z from "zod";
import { InputError, OwnershipError, RotatorError, StoreError, StoreStateError } from "../errors.ts";
import type { AwsProvider } from "../manifests/schema.ts";
import { createSecretsManagerClient } from "./aws-client.ts";
import {
  MANAGED_BY_KEY,
  MANAGED_BY_VALUE,
  type PushResult,
  type RemoteState,
  type SecretStoreClient,
  type StoreDeps,
  type StoredVersion,
  type VersionRef,
} from "./types.ts";

export const PENDING = "AWSPENDING";
export const CURRENT = "AWSCURRENT";
export const PREVIOUS = "AWSPREVIOUS";
/** Ours: on a first version that AWS made current although it was only staged. */
export const UNPROMOTED = "CNPG_ROTATOR_UNPROMOTED";
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

type Description = DescribeSecretCommandOutput;
type Stages = Readonly<Record<string, readonly string[]>>;

/**
 * What this client last saw of a secret (its own DescribeSecret, or that plus its own
 * writes since), so that the stage and promote of a rotation need not describe it again.
 * Values are kept by VersionId, which AWS never changes. The labels may be stale, which
 * is safe: a repeated PutSecretValue is a no-op (ClientRequestToken), and a label move
 * naming a version that no longer holds the label (RemoveFromVersionId) is refused, after
 * which we describe afresh. The one change no AWS check catches, the staged version
 * discarded by someone else before our promote, only a rollback makes, and it holds the
 * Secret's Lease (in this process it goes through this client: discardPending forgets).
 * Kept briefly only.
 */
interface Known {
  readonly secret: Description;
  readonly at: number;
  readonly values: Map<string, string>;
}

/** How long what a DescribeSecret saw is acted on without describing again. */
const KNOWN_TTL_MS = 30_000;

export function createAwsStore(config: AwsProvider, _deps: StoreDeps = {}): SecretStoreClient {
  if (config.service !== "SecretsManager") {
    throw new InputError(`spec.provider.aws.service: expected "SecretsManager", found "${config.service}"`);
  }
  if (config.role !== undefined) {
    throw new InputError(
      "spec.provider.aws.role: assuming a role is not supported; the function uses its own credentials, so grant its role access to the secrets",
    );
  }
  const options = secretsManagerSchema.safeParse(config.secretsManager ?? {});
  if (!options.success) {
    const issue = options.error.issues[0]!;
    throw new InputError(
      `spec.provider.aws.secretsManager${issue.path.map((p) => `.${String(p)}`).join("")}: ${issue.message}`,
    );
  }
  // Endpoint (AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL) and credentials come from the SDK's own chain.
  const client = createSecretsManagerClient(config.region);
  return new AwsStore(client, config.region, config.prefix ?? "", options.data);
}

class AwsStore implements SecretStoreClient {
  readonly provider = "aws";
  readonly description: string;
  readonly #client: SecretsManagerClient;
  readonly #prefix: string;
  readonly #deletion: { ForceDeleteWithoutRecovery: true } | { RecoveryWindowInDays?: number };
  readonly #known = new Map<string, Known>();

  constructor(
    client: SecretsManagerClient,
    region: string,
    prefix: string,
    options: z.infer<typeof secretsManagerSchema>,
  ) {
    this.#client = client;
    this.#prefix = prefix;
    this.description = `aws secretsmanager ${region}${prefix ? ` prefix ${prefix}` : ""}`;
    this.#deletion = options.forceDeleteWithoutRecovery
      ? { ForceDeleteWithoutRecovery: true }
      : options.recoveryWindowInDays === undefined
        ? {}
        : { RecoveryWindowInDays: options.recoveryWindowInDays };
  }

  async describe(key: string): Promise<RemoteState> {
    const name = this.#prefix + key;
    const secret = await this.#describe(name);
    if (!secret) {
      this.#known.delete(name);
      return { exists: false, owned: false };
    }
    this.#remember(name, secret);
    const owned = isOwned(secret);
    if (secret.DeletedDate) return { exists: false, owned };
    const stages: Stages = secret.VersionIdsToStages ?? {};
    const current = Object.keys(stages).find((id) => isPromoted(stages, id));
    const pending = holderOf(stages, PENDING);
    return {
      exists: true,
      owned,
      ...(current !== undefined ? { current: versionRef(current) } : {}),
      ...(pending !== undefined ? { pending: versionRef(pending) } : {}),
    };
  }

  async stagePending(key: string, value: string, rotationId: string): Promise<StoredVersion> {
    const name = this.#prefix + key;
    if (rotationId.length < 32 || rotationId.length > 64) {
      throw new StoreError(
        `cannot stage into "${name}" in ${this.description}: expected a rotation id of 32 to 64 characters (it becomes the ClientRequestToken), found ${rotationId.length}`,
      );
    }
    const known = this.#recall(name);
    this.#known.delete(name);
    // Already staged or promoted by what we remember: make sure with a fresh look before writing nothing.
    const remembered: Stages = known?.secret.VersionIdsToStages ?? {};
    const fresh = !known || isPending(remembered, rotationId) || isPromoted(remembered, rotationId);
    const secret =
      (fresh ? undefined : known?.secret) ?? (await this.#describe(name)) ?? (await this.#createEmpty(name));
    this.#assertOwned(name, secret, "stage a pending version in");
    if (secret.DeletedDate) await this.#restore(name);
    const stages: Stages = secret.VersionIdsToStages ?? {};
    if (isPending(stages, rotationId) || isPromoted(stages, rotationId)) {
      const seen = known?.values.get(rotationId);
      if (seen !== undefined) return rotationVersion(rotationId, seen);
      return toStored(await this.#getVersion(name, { VersionId: rotationId }));
    }
    // The token makes a repeat of this write a no-op; a different value for it is refused, so the first staged value stays.
    const labels = holderOf(stages, CURRENT) === undefined ? [PENDING, UNPROMOTED] : [PENDING];
    const put = await this.#try(
      "PutSecretValue",
      name,
      () =>
        this.#client.send(
          new PutSecretValueCommand({
            SecretId: name,
            ClientRequestToken: rotationId,
            SecretString: value,
            VersionStages: labels,
          }),
        ),
      ["ResourceExistsException"],
    );
    if (!(put instanceof Refused) && put.VersionId === rotationId && put.VersionStages?.includes(PENDING)) {
      // A new version, labelled as asked: its value is the one sent, and AWS moved our labels off the others.
      const after: Record<string, string[]> = {};
      for (const [id, on] of Object.entries(stages)) after[id] = on.filter((l) => !labels.includes(l));
      after[rotationId] = put.VersionStages;
      this.#remember(name, { ...secret, DeletedDate: undefined, VersionIdsToStages: after }, [[rotationId, value]]);
      return rotationVersion(rotationId, value);
    }
    // Refused (the token holds another value) or a repeat: read what that version holds and carries.
    const version = await this.#getVersion(name, { VersionId: rotationId });
    const now: Stages = { [rotationId]: version.VersionStages ?? [] };
    if (!isPending(now, rotationId) && !isPromoted(now, rotationId)) {
      // A version of this rotation staged before and replaced or discarded since: AWS does not relabel it on a repeated write.
      await this.#relabel(name, PENDING, { moveTo: rotationId, removeFrom: holderOf(stages, PENDING) });
    }
    return toStored(version);
  }

  async getPending(key: string): Promise<StoredVersion | undefined> {
    const name = this.#prefix + key;
    const version = await this.#getByStage(name, PENDING);
    return version && this.#noteValue(name, toStored(version));
  }

  async promote(key: string, rotationId: string): Promise<StoredVersion> {
    const name = this.#prefix + key;
    const known = this.#recall(name);
    this.#known.delete(name);
    // What the stage (or the engine's describe) saw is enough to move the labels: AWS refuses a move
    // that names a version no longer holding the label, and then we describe and go on from there.
    if (known && !known.secret.DeletedDate && isOwned(known.secret)) {
      const stages: Stages = known.secret.VersionIdsToStages ?? {};
      if (
        (isPending(stages, rotationId) || isPromoted(stages, rotationId)) &&
        (await promoteSteps(rotationId, stages, (stage, change) => this.#relabelOnce(name, stage, change)))
      ) {
        return this.#versionOf(name, rotationId, known);
      }
    }
    const secret = await this.#describe(name);
    if (!secret || secret.DeletedDate) {
      throw new StoreStateError(
        `cannot promote rotation ${rotationId} of "${name}" in ${this.description}: expected it pending, found no such secret`,
      );
    }
    this.#assertOwned(name, secret, "promote a version of");
    const stages: Stages = secret.VersionIdsToStages ?? {};
    if (!isPending(stages, rotationId) && !isPromoted(stages, rotationId)) {
      const pending = holderOf(stages, PENDING);
      throw new StoreStateError(
        `cannot promote rotation ${rotationId} of "${name}" in ${this.description}: expected it pending, found ${
          pending === undefined ? "nothing pending" : `version ${pending} pending`
        }`,
      );
    }
    await promoteSteps(rotationId, stages, async (stage, change) => {
      await this.#relabel(name, stage, change);
      return true;
    });
    return this.#versionOf(name, rotationId, known);
  }

  /** A rotation's version: its value as remembered (versions never change), else read. */
  async #versionOf(name: string, rotationId: string, known: Known | undefined): Promise<StoredVersion> {
    const value = known?.values.get(rotationId);
    if (value !== undefined) return rotationVersion(rotationId, value);
    return toStored(await this.#getVersion(name, { VersionId: rotationId }));
  }

  async discardPending(key: string, rotationId: string): Promise<void> {
    const name = this.#prefix + key;
    this.#known.delete(name);
    const secret = await this.#describe(name);
    // Nothing of ours can be pending in a foreign or deleted secret.
    if (!secret || secret.DeletedDate || !isOwned(secret)) return;
    const stages: Stages = secret.VersionIdsToStages ?? {};
    if (!isPending(stages, rotationId)) return;
    const current = holderOf(stages, CURRENT);
    if (current !== undefined && !isPromoted(stages, current)) {
      // Never promoted, so AWSCURRENT holds a value nobody accepted: the only way back to "no value" is no secret.
      await this.#send("DeleteSecret", name, () =>
        this.#client.send(new DeleteSecretCommand({ SecretId: name, ForceDeleteWithoutRecovery: true })),
      );
      return;
    }
    await this.#relabel(name, PENDING, { removeFrom: rotationId });
  }

  async getCurrent(key: string): Promise<StoredVersion | undefined> {
    const name = this.#prefix + key;
    const version = await this.#getByStage(name, CURRENT);
    return version && !version.VersionStages?.includes(UNPROMOTED) ? this.#noteValue(name, toStored(version)) : undefined;
  }

  async getPrevious(key: string): Promise<StoredVersion | undefined> {
    const version = await this.#getByStage(this.#prefix + key, PREVIOUS);
    return version && !version.VersionStages?.includes(UNPROMOTED) ? toStored(version) : undefined;
  }

  async push(key: string, value: string, options: { ifNotExists?: boolean } = {}): Promise<PushResult> {
    const name = this.#prefix + key;
    this.#known.delete(name);
    let secret = await this.#describe(name);
    if (!secret) {
      const token = pushToken(undefined, value);
      if (await this.#create(name, { SecretString: value, ClientRequestToken: token })) {
        return { changed: true, versionId: token };
      }
      secret = await this.#describe(name); // Created meanwhile by someone else: go on as if it had been there.
      if (!secret) throw new StoreError(`cannot push to "${name}" in ${this.description}: it exists and is gone`);
    }
    const stages: Stages = secret.VersionIdsToStages ?? {};
    const current = Object.keys(stages).find((id) => isPromoted(stages, id));
    // Like ESO's updatePolicy IfNotExists: an existing secret, ours or not, is left alone.
    if (options.ifNotExists && !secret.DeletedDate) return { changed: false, versionId: current };
    this.#assertOwned(name, secret, "push to");
    if (secret.DeletedDate) await this.#restore(name);
    if (current !== undefined && (await this.#getVersion(name, { VersionId: current })).SecretString === value) {
      return { changed: false, versionId: current };
    }
    const token = pushToken(current, value);
    const put = await this.#send("PutSecretValue", name, () =>
      this.#client.send(new PutSecretValueCommand({ SecretId: name, ClientRequestToken: token, SecretString: value })),
    );
    if (!put.VersionStages?.includes(CURRENT)) {
      // The token named an old version (this value on top of the same current, pushed once before): AWS
      // treats the write as a repeat and moves no label, so move AWSCURRENT back to it.
      await this.#relabel(name, CURRENT, { moveTo: token, removeFrom: holderOf(stages, CURRENT) });
    }
    return { changed: true, versionId: token };
  }

  async exists(key: string): Promise<boolean> {
    const secret = await this.#describe(this.#prefix + key);
    return secret !== undefined && !secret.DeletedDate;
  }

  async delete(key: string): Promise<void> {
    const name = this.#prefix + key;
    this.#known.delete(name);
    const secret = await this.#describe(name);
    if (!secret || secret.DeletedDate) return;
    this.#assertOwned(name, secret, "delete");
    await this.#try(
      "DeleteSecret",
      name,
      () => this.#client.send(new DeleteSecretCommand({ SecretId: name, ...this.#deletion })),
      ["ResourceNotFoundException"],
    );
  }

  async close(): Promise<void> {
    this.#known.clear();
    this.#client.destroy();
  }

  #remember(name: string, secret: Description, values: Iterable<[string, string]> = []): void {
    this.#known.set(name, { secret, at: Date.now(), values: new Map(values) });
  }

  /** What we saw of `name`, if recent enough to act on. */
  #recall(name: string): Known | undefined {
    const known = this.#known.get(name);
    if (known && Date.now() - known.at > KNOWN_TTL_MS) {
      this.#known.delete(name);
      return undefined;
    }
    return known;
  }

  /** A value read after a describe: a promote that follows returns it without reading it again. */
  #noteValue(name: string, version: StoredVersion): StoredVersion {
    this.#recall(name)?.values.set(version.versionId, version.value);
    return version;
  }

  #assertOwned(name: string, secret: Description, action: string): void {
    if (isOwned(secret)) return;
    const found = secret.Tags?.find((t) => t.Key === MANAGED_BY_KEY);
    throw new OwnershipError(
      `refusing to ${action} "${name}" in ${this.description}: expected tag ${MANAGED_BY_KEY}=${MANAGED_BY_VALUE}, found ${
        found ? `${MANAGED_BY_KEY}=${found.Value ?? ""}` : "no such tag"
      }; it was not created by cnpg-rotator`,
    );
  }

  async #describe(name: string): Promise<Description | undefined> {
    const out = await this.#try(
      "DescribeSecret",
      name,
      () => this.#client.send(new DescribeSecretCommand({ SecretId: name })),
      ["ResourceNotFoundException"],
    );
    return out instanceof Refused ? undefined : out;
  }

  /** Creates the secret with our tag; false if it exists already (made meanwhile by a concurrent call). */
  async #create(name: string, first: { SecretString?: string; ClientRequestToken?: string } = {}): Promise<boolean> {
    const out = await this.#try(
      "CreateSecret",
      name,
      () =>
        this.#client.send(
          new CreateSecretCommand({
            Name: name,
            Description: DESCRIPTION,
            Tags: [{ Key: MANAGED_BY_KEY, Value: MANAGED_BY_VALUE }],
            ...first,
          }),
        ),
      ["ResourceExistsException"],
    );
    return !(out instanceof Refused);
  }

  /** Creates the secret without a value, so that the first value written can be a staged one. */
  async #createEmpty(name: string): Promise<Description> {
    if (await this.#create(name)) return { Name: name, Tags: [{ Key: MANAGED_BY_KEY, Value: MANAGED_BY_VALUE }], $metadata: {} };
    const secret = await this.#describe(name);
    if (!secret) throw new StoreError(`cannot create "${name}" in ${this.description}: it exists and is gone`);
    return secret;
  }

  /** A secret deleted with a recovery window is still there; writing to it again means restoring it first. */
  async #restore(name: string): Promise<void> {
    await this.#send("RestoreSecret", name, () => this.#client.send(new RestoreSecretCommand({ SecretId: name })));
  }

  async #getVersion(name: string, which: { VersionId: string }): Promise<GetSecretValueCommandOutput> {
    return this.#send("GetSecretValue", name, () =>
      this.#client.send(new GetSecretValueCommand({ SecretId: name, ...which })),
    );
  }

  async #getByStage(name: string, stage: string): Promise<GetSecretValueCommandOutput | undefined> {
    const out = await this.#try(
      "GetSecretValue",
      name,
      () => this.#client.send(new GetSecretValueCommand({ SecretId: name, VersionStage: stage })),
      ["ResourceNotFoundException", "InvalidRequestException"],
    );
    if (!(out instanceof Refused)) return out;
    if (out.code === "ResourceNotFoundException") return undefined;
    // Refused for a secret deleted with a recovery window, which reads as gone; anything else is an error.
    if ((await this.#describe(name))?.DeletedDate) return undefined;
    throw new StoreError(`reading ${stage} of "${name}" in ${this.description} failed: ${out.message}`, {
      cause: out.error,
    });
  }

  /**
   * Moves or removes a staging label. When AWS refuses, a concurrent call may
   * already have made the change: only fail if the label is not where we wanted it.
   */
  async #relabel(name: string, stage: string, change: { moveTo?: string; removeFrom?: string }): Promise<void> {
    const out = await this.#sendRelabel(name, stage, change);
    if (!(out instanceof Refused)) return;
    const stages: Stages = (await this.#describe(name))?.VersionIdsToStages ?? {};
    const done =
      change.moveTo !== undefined
        ? stages[change.moveTo]?.includes(stage)
        : change.removeFrom !== undefined && !stages[change.removeFrom]?.includes(stage);
    if (!done) {
      throw new StoreError(`moving ${stage} of "${name}" in ${this.description} failed: ${out.message}`, {
        cause: out.error,
      });
    }
  }

  /** Moves or removes a staging label; false when AWS refuses (the labels are not where we thought). */
  async #relabelOnce(name: string, stage: string, change: { moveTo?: string; removeFrom?: string }): Promise<boolean> {
    return !((await this.#sendRelabel(name, stage, change)) instanceof Refused);
  }

  async #sendRelabel(name: string, stage: string, change: { moveTo?: string; removeFrom?: string }): Promise<unknown> {
    return this.#try(
      "UpdateSecretVersionStage",
      name,
      () =>
        this.#client.send(
          new UpdateSecretVersionStageCommand({
            SecretId: name,
            VersionStage: stage,
            MoveToVersionId: change.moveTo,
            RemoveFromVersionId: change.removeFrom,
          }),
        ),
      ["InvalidParameterException", "InvalidRequestException"],
    );
  }

  /** Sends one call; any error becomes a StoreError naming the call and the secret (AWS messages do not echo values). */
  async #send<T>(call: string, name: string, send: () => Promise<T>): Promise<T> {
    const out = await this.#try(call, name, send, []);
    if (out instanceof Refused) throw out.error; // Unreachable: nothing is expected.
    return out;
  }

  /** Like #send, but the errors named in `expected` come back as a Refused. */
  async #try<T>(call: string, name: string, send: () => Promise<T>, expected: readonly string[]): Promise<T | Refused> {
    try {
      return await send();
    } catch (error) {
      if (error instanceof RotatorError) throw error;
      const refused = new Refused(error);
      if (expected.includes(refused.code)) return refused;
      throw new StoreError(`${call} of "${name}" in ${this.description} failed: ${refused.message}`, { cause: error });
    }
  }
}

/** An AWS error a caller expected and handles. */
class Refused {
  readonly code: string;
  readonly message: string;
  readonly error: unknown;

  constructor(error: unknown) {
    this.code = error instanceof Error ? error.name : "Error";
    this.message = `${this.code}: ${error instanceof Error ? error.message : String(error)}`;
    this.error = error;
  }
}

function isOwned(secret: Description): boolean {
  return secret.Tags?.some((t) => t.Key === MANAGED_BY_KEY && t.Value === MANAGED_BY_VALUE) ?? false;
}

function isPending(stages: Stages, versionId: string): boolean {
  return stages[versionId]?.includes(PENDING) ?? false;
}

/** Current in our sense: AWSCURRENT on a version that is not a never-promoted first one. */
function isPromoted(stages: Stages, versionId: string): boolean {
  const labels = stages[versionId] ?? [];
  return labels.includes(CURRENT) && !labels.includes(UNPROMOTED);
}

function holderOf(stages: Stages, stage: string): string | undefined {
  return Object.keys(stages).find((id) => stages[id]?.includes(stage));
}

/**
 * The ClientRequestToken of a direct push: the same push retried makes no second
 * version, and it depends on the version it replaces so that pushing A, B, A
 * again writes a third version rather than hitting A's old token.
 */
function pushToken(replaces: string | undefined, value: string): string {
  const hash = createHash("sha256").update(`${replaces ?? ""}\n${value}`).digest("hex");
  return (PUSH_TOKEN_PREFIX + hash).slice(0, 64);
}

/**
 * Moves AWSCURRENT to the rotation's version, then takes our other labels off it. Each step
 * is safe to repeat: a promote that stopped half way is finished by the next one. False as
 * soon as `relabel` reports a refused move.
 */
async function promoteSteps(
  rotationId: string,
  stages: Stages,
  relabel: (stage: string, change: { moveTo?: string; removeFrom?: string }) => Promise<boolean>,
): Promise<boolean> {
  const mine = stages[rotationId] ?? [];
  const current = holderOf(stages, CURRENT);
  if (current !== rotationId && !(await relabel(CURRENT, { moveTo: rotationId, removeFrom: current }))) return false;
  if (mine.includes(UNPROMOTED) && !(await relabel(UNPROMOTED, { removeFrom: rotationId }))) return false;
  if (mine.includes(PENDING) && !(await relabel(PENDING, { removeFrom: rotationId }))) return false;
  return true;
}

/** A rotation's version: its VersionId is the rotation id. */
function rotationVersion(rotationId: string, value: string): StoredVersion {
  return { versionId: rotationId, value, rotationId };
}

function versionRef(versionId: string): VersionRef {
  return versionId.startsWith(PUSH_TOKEN_PREFIX) ? { versionId } : { versionId, rotationId: versionId };
}

function toStored(version: GetSecretValueCommandOutput): StoredVersion {
  if (version.SecretString === undefined || version.VersionId === undefined) {
    throw new StoreStateError(
      `secret "${version.Name ?? "?"}" version ${version.VersionId ?? "?"} holds a binary value; expected a string`,
    );
  }
  const isPush = version.VersionId.startsWith(PUSH_TOKEN_PREFIX);
  return {
    versionId: version.VersionId,
    value: version.SecretString,
    ...(isPush ? {} : { rotationId: version.VersionId }),
  };
}
