// CA certificates as users give them: PEM, or base64 of the PEM (a kubeconfig's
// certificate-authority-data, a Vault SecretStore's caBundle, what the EKS and GKE consoles
// show). Checked when read, so a garbled one is a clear error naming where it came from
// instead of a TLS failure at the first request.
import { X509Certificate } from "node:crypto";
import { InputError } from "./errors.ts";

/** The PEM of `value` (PEM or base64 of it); an InputError naming `where` when it holds no certificate that parses. */
export function parseCaPem(value: string, where: string): string {
  const text = value.trim();
  const pem = text.includes("-----BEGIN") ? text : Buffer.from(text.replace(/\s+/g, ""), "base64").toString("utf8");
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new InputError(`${where}: expected a CA certificate as PEM or base64 of the PEM; found neither`);
  }
  try {
    new X509Certificate(pem);
  } catch (e) {
    throw new InputError(`${where}: the CA certificate does not parse (${(e as Error).message})`);
  }
  return `${pem.trim()}\n`;
}
