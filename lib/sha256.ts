// SHA-256 (HMAC-SHA-256 when given a key) over node:crypto, in the shape the SigV4 signer
// (@smithy/signature-v4) takes as its `sha256`: the Secrets Manager client's (lib/stores/
// aws-client.ts) and the EKS token's (lib/kubernetes/auth/eks.ts). SigV4 HMACs each request
// with the day's signing key and hashes the credentials for its signing-key cache with
// another; Node's createHmac turns a key given as bytes into a KeyObject each time, so the
// KeyObjects of the keys seen lately are kept instead.
import { createHash, createHmac, createSecretKey, type Hash, type Hmac, type KeyObject } from "node:crypto";

export type SourceData = string | ArrayBuffer | ArrayBufferView;

/** HMAC keys seen lately (the day's signing key, the secret key): a handful per process. */
const keysByBytes = new WeakMap<Uint8Array, KeyObject>();
const keysByText = new Map<string, KeyObject>();
const MAX_TEXT_KEYS = 8;

function keyObject(secret: SourceData): KeyObject {
  if (typeof secret === "string") {
    let key = keysByText.get(secret);
    if (!key) {
      if (keysByText.size >= MAX_TEXT_KEYS) keysByText.clear();
      key = createSecretKey(Buffer.from(secret, "utf8"));
      keysByText.set(secret, key);
    }
    return key;
  }
  // The signer hands over the same Uint8Array for a day's key (its own cache): that object is the map's key.
  const bytes =
    secret instanceof Uint8Array
      ? secret
      : ArrayBuffer.isView(secret)
        ? new Uint8Array(secret.buffer, secret.byteOffset, secret.byteLength)
        : new Uint8Array(secret);
  let key = keysByBytes.get(bytes);
  if (!key) {
    key = createSecretKey(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    keysByBytes.set(bytes, key);
  }
  return key;
}

function toBuffer(data: SourceData): Buffer {
  if (typeof data === "string") return Buffer.from(data, "utf8");
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

export class Sha256 {
  readonly #secret: SourceData | undefined;
  #hash: Hash | Hmac;

  constructor(secret?: SourceData) {
    this.#secret = secret;
    this.#hash = this.#create();
  }

  update(data: SourceData): void {
    this.#hash.update(toBuffer(data));
  }

  async digest(): Promise<Uint8Array> {
    const out = this.#hash.digest();
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }

  reset(): void {
    this.#hash = this.#create();
  }

  #create(): Hash | Hmac {
    return this.#secret === undefined ? createHash("sha256") : createHmac("sha256", keyObject(this.#secret));
  }
}
