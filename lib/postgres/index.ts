// Talking to PostgreSQL itself: only to prove a password works (SPEC §5.4).
// The rotator never changes a role's password: CNPG does, from the Secret (SPEC §4).
export {
  type LoginOptions,
  type LoginParams,
  type LoginResult,
  type LoginStatus,
  SSL_MODES,
  type SslMode,
  tryLogin,
} from "./login.ts";
