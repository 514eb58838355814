export {
  DEFAULT_LENGTH,
  DEFAULT_SECRET_KEYS,
  DEFAULT_SYMBOL_CHARACTERS,
  ENCODINGS,
  type Encoding,
  encodePassword,
  generate,
  generatePassword,
  type PasswordSpec,
  type ResolvedPasswordSpec,
  resolvePasswordSpec,
} from "./password.ts";
export { CryptoRandom, cryptoRandom, type RandomSource } from "./random.ts";
