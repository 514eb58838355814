// The shapes the rest of the engine sees; nothing here depends on the client library.

/** A Kubernetes Secret as the engine reads it. */
/** A Secret's metadata without its data (a metadata-only list). */
export interface SecretMetadata {
  readonly name: string;
  readonly uid: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
}

export interface SecretObject {
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly resourceVersion: string;
  readonly type: string;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  /** Decoded as UTF-8. A key holding binary data reads garbled here but is never rewritten unless a change names it. */
  readonly data: Record<string, string>;
  /**
   * The keys whose bytes are not UTF-8 text: `data` holds them with U+FFFD in place of the bytes
   * it could not decode, so their value must never be copied from there (remoteValue refuses to).
   */
  readonly binaryKeys: readonly string[];
}

/** What one write changes; every key, label and annotation it does not name stays byte-identical. */
export interface SecretChange {
  /** Decoded values; only these keys are set. */
  readonly data?: Record<string, string>;
  readonly labels?: Record<string, string>;
  /** `null` removes the annotation. */
  readonly annotations?: Record<string, string | null>;
}

/** Where the kubeconfig comes from. With nothing given, see `connectCluster`. */
export interface ClusterConnection {
  readonly kubeconfigPath?: string;
  readonly kubeconfigYaml?: string;
  /** A context of the kubeconfig other than its current-context. */
  readonly context?: string;
}

export interface UpdateSecretOptions {
  /** Create the Secret when it is missing (CreateOrMerge); without it a missing Secret is a SecretMissingError. */
  readonly create?: { readonly type: string; readonly labels?: Record<string, string> };
  /**
   * A Secret this client's readSecret returned: the first attempt patches against
   * it (one GET fewer); if it is stale the patch gets 409 and the usual re-read follows.
   */
  readonly initial?: SecretObject;
}

export interface UpdateSecretResult {
  /** The Secret as it is after the call (as read when nothing was written). */
  readonly secret: SecretObject;
  /** How many writes were refused with 409 Conflict and redone on a fresh read. */
  readonly conflicts: number;
  readonly written: boolean;
  readonly created: boolean;
}

export interface NewSecret {
  readonly type: string;
  readonly data: Record<string, string>;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

/** A coordination.k8s.io/v1 Lease held by this process. */
export interface LeaseHandle {
  readonly namespace: string;
  readonly name: string;
  readonly holder: string;
  readonly ttlSeconds: number;
  /** When the Lease lapses unless renewed, by this machine's clock. */
  readonly expiresAt: Date;
  /** Extends the Lease by its TTL. False when it was lost (taken over, deleted or released): stop writing. */
  renew(): Promise<boolean>;
  /** Frees the Lease for the next run. A Lease already lost or gone is not an error. */
  release(): Promise<void>;
  /**
   * Instead of release, for a run refused as bad input: puts the Lease back as it was found
   * (its spec as read, or no Lease when this run created it), so such a run changes nothing.
   */
  restore(): Promise<void>;
}

/** One permission, as RBAC names it. `group` is "" for the core API. */
export interface AccessCheck {
  readonly verb: string;
  readonly group: string;
  readonly resource: string;
  readonly name?: string;
}

/** One HTTP request sent to the API server (no query string, no body). */
export interface RequestRecord {
  readonly method: string;
  readonly path: string;
  /** HTTP status, or 0 when no response came back. */
  readonly status: number;
}

/** What the engine reads of a CNPG `postgresql.cnpg.io/v1` Cluster (CNPG v1.30 api/v1 types). */
export interface CnpgCluster {
  readonly name: string;
  readonly namespace: string;
  readonly spec: {
    readonly managed?: {
      readonly roles?: readonly {
        readonly name: string;
        readonly ensure?: "present" | "absent";
        readonly login?: boolean;
        readonly inherit?: boolean;
        readonly inRoles?: readonly string[];
        readonly passwordSecret?: { readonly name: string };
        readonly disablePassword?: boolean;
      }[];
    };
    readonly bootstrap?: { readonly initdb?: { readonly owner?: string; readonly database?: string; readonly secret?: { readonly name: string } } };
    readonly superuserSecret?: { readonly name: string };
  };
  readonly status: {
    /** `status.managedRolesStatus.passwordStatus[role].resourceVersion`: the passwordSecret version applied to the role. */
    readonly managedRolesStatus?: {
      readonly passwordStatus?: Readonly<Record<string, { readonly transactionID?: number; readonly resourceVersion?: string }>>;
      readonly cannotReconcile?: Readonly<Record<string, readonly string[]>>;
    };
    /** `status.secretsResourceVersion.applicationSecretVersion` / `superuserSecretVersion`. */
    readonly secretsResourceVersion?: { readonly applicationSecretVersion?: string; readonly superuserSecretVersion?: string };
  };
}
