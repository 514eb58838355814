// A bearer token for the API server, obtained from a cloud identity when a request needs
// one and reused until shortly before it expires. Nothing long-lived is configured.
import { KubernetesError, RotatorError } from "../../errors.ts";

/** One token as a cloud's identity service hands it out. */
export interface Token {
  readonly value: string;
  /** When the API server stops accepting it. */
  readonly expiresAt: Date;
  /** When the issuer suggests asking again (Entra ID sends one); earlier than expiresAt. */
  readonly refreshAt?: Date;
}

/** Fetches a new token; called only when the cached one is due for refresh. */
export type TokenSource = () => Promise<Token>;

export interface TokenProviderOptions {
  /** Milliseconds since the epoch; a test seam. */
  readonly now?: () => number;
  /** Refresh this long before expiry, so a token never expires in flight. Default 60 s. */
  readonly refreshBeforeMs?: number;
}

const DEFAULT_REFRESH_BEFORE_MS = 60_000;

/**
 * Hands out a cached bearer token, fetching a new one from `source` when the cached one
 * is within `refreshBeforeMs` of expiry. Concurrent callers share one fetch; a failed
 * fetch is not cached, so the next request tries again.
 */
export class TokenProvider {
  /** What the token is, for messages: `an EKS token (IAM) for cluster "prod"`. Never a secret. */
  readonly description: string;
  readonly #source: TokenSource;
  readonly #now: () => number;
  readonly #refreshBeforeMs: number;
  #cached: { value: string; refreshAt: number } | undefined;
  #pending: Promise<string> | undefined;
  #fetches = 0;

  constructor(description: string, source: TokenSource, options: TokenProviderOptions = {}) {
    this.description = description;
    this.#source = source;
    this.#now = options.now ?? Date.now;
    this.#refreshBeforeMs = options.refreshBeforeMs ?? DEFAULT_REFRESH_BEFORE_MS;
  }

  /** How many tokens were fetched so far (refreshes included). */
  get fetchCount(): number {
    return this.#fetches;
  }

  /** A token valid for at least `refreshBeforeMs` more (when the source's expiry allows). */
  token(): Promise<string> {
    const cached = this.#cached;
    if (cached && this.#now() < cached.refreshAt) return Promise.resolve(cached.value);
    this.#pending ??= this.#refresh().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /** Drops the cached token, e.g. after the API server refused it; the next request fetches a new one. */
  invalidate(): void {
    this.#cached = undefined;
  }

  async #refresh(): Promise<string> {
    this.#fetches++;
    let token: Token;
    try {
      token = await this.#source();
    } catch (e) {
      throw tokenError(this.description, e);
    }
    const now = this.#now();
    const expiresAt = token.expiresAt.getTime();
    // A header value with a line break would let the token smuggle headers in.
    if (!token.value || /[\s\0]/.test(token.value)) {
      throw new KubernetesError(`cannot get ${this.description}: the identity service returned an empty or malformed token`);
    }
    if (!(expiresAt > now)) {
      throw new KubernetesError(
        `cannot get ${this.description}: the identity service returned a token that expired at ${token.expiresAt.toISOString()}` +
          ` (now ${new Date(now).toISOString()}); check this machine's clock`,
      );
    }
    const refreshAt = Math.min(token.refreshAt?.getTime() ?? Number.POSITIVE_INFINITY, expiresAt - this.#refreshBeforeMs);
    this.#cached = { value: token.value, refreshAt };
    return token.value;
  }
}

/**
 * The SDKs' credential errors name the missing source ("Could not load credentials from
 * any providers"), never a secret; a JWT-looking run is masked all the same, in case one
 * quotes a token it was given.
 */
export function tokenError(description: string, e: unknown): RotatorError {
  if (e instanceof RotatorError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const name = err.name && err.name !== "Error" ? `${err.name}: ` : "";
  const message = redact(`${name}${err.message}`.split("\n")[0]!.slice(0, 500));
  return new KubernetesError(`cannot get ${description}: ${message}`, { cause: err });
}

function redact(text: string): string {
  return text.replace(/eyJ[\w-]*\.[\w-]+\.[\w-]*/g, "[redacted token]");
}
