import { randomFillSync } from "node:crypto";

/** Source of uniformly distributed integers, backed by the OS CSPRNG. */
export interface RandomSource {
  /** A uniform integer in [0, bound). `bound` must be in [1, 2^32]. */
  below(bound: number): number;
}

const POOL_WORDS = 2048;

/**
 * Draws 32-bit words from a pool refilled by `crypto.randomFillSync`, so one
 * system call serves thousands of characters. Bounded draws use rejection
 * sampling: a word at or above the largest multiple of `bound` is thrown away,
 * so every result is exactly equally likely (no modulo bias).
 */
export class CryptoRandom implements RandomSource {
  #pool = new Uint32Array(POOL_WORDS);
  #next = POOL_WORDS;

  #word(): number {
    if (this.#next === POOL_WORDS) {
      randomFillSync(this.#pool);
      this.#next = 0;
    }
    return this.#pool[this.#next++]!;
  }

  below(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 2 ** 32) {
      throw new RangeError(`bound must be an integer in [1, 2^32], got ${bound}`);
    }
    const limit = 2 ** 32 - (2 ** 32 % bound);
    for (;;) {
      const w = this.#word();
      if (w < limit) return w % bound;
    }
  }
}

export const cryptoRandom: RandomSource = new CryptoRandom();
