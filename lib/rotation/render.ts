// What one rotation of an ExternalSecret writes into its target Secret: pure,
// no I/O, shared by the engine and the CLI's `render`.
import { createHash } from "node:crypto";
import {
  checkConnectionString,
  connectionKind,
  DERIVED_KEYS,
  escapeConnectionString,
  isDerivedKey,
  rewriteCredentials,
  rewritePassword,
} from "../cnpg/index.ts";
import { generate } from "../generator/index.ts";
import type { ExternalSecret } from "../manifests/index.ts";
import { renderFragments } from "../template/index.ts";

export interface RenderedTarget {
  /** Every key this rotation writes, decoded. */
  readonly data: Readonly<Record<string, string>>;
  /** Keys rebuilt from the existing Secret because CNPG never rebuilds them itself. */
  readonly derivedKeys: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly type?: string;
}

/** The generators' output, merged in order (a later generator's key wins, as in ESO). */
export function generateValues(es: ExternalSecret): Record<string, string> {
  const values: Record<string, string> = {};
  for (const g of es.generators) Object.assign(values, generate(g.spec));
  return values;
}

/**
 * Renders the target's template with `values`, escaping values interpolated
 * into connection strings for their position, checks each connection string
 * reads back to the new password, and rewrites the derived keys that the
 * existing Secret has but the template does not render.
 */
export function renderTarget(
  es: ExternalSecret,
  values: Readonly<Record<string, string>>,
  existing?: Readonly<Record<string, string>>,
  options: { readonly user?: string } = {},
): RenderedTarget {
  // A run renders the same values onto the same Secret for its checks, its stage and its
  // merge: the last render of each ExternalSecret is kept, frozen, and handed out again.
  const key = JSON.stringify([values, existing ?? null, options.user ?? null]);
  const last = lastRender.get(es);
  if (last?.key === key) return last.rendered;
  const rendered = render(es, values, existing, options);
  Object.freeze(rendered.data);
  Object.freeze(rendered.derivedKeys);
  lastRender.set(es, { key, rendered: Object.freeze(rendered) });
  return rendered;
}

const lastRender = new WeakMap<ExternalSecret, { readonly key: string; readonly rendered: RenderedTarget }>();

function render(
  es: ExternalSecret,
  values: Readonly<Record<string, string>>,
  existing: Readonly<Record<string, string>> | undefined,
  options: { readonly user?: string },
): RenderedTarget {
  const template = es.target.template;
  // The alternating strategy switches the Secret to another role: templates read it as `.username`.
  const input = options.user !== undefined ? { ...values, username: options.user } : values;
  const data: Record<string, string> = {};
  if (!template?.data || template.mergePolicy === "Merge") Object.assign(data, values);
  if (options.user !== undefined) {
    data.username = options.user;
    data.user = options.user;
  }
  for (const [key, parsed] of Object.entries(template?.data ?? {})) {
    data[key] = escapeConnectionString(key, renderFragments(parsed, input));
  }

  const password = data.password ?? values.password;
  const derivedKeys: string[] = [];
  if (password !== undefined) {
    const user = options.user ?? existing?.username;
    for (const [key, value] of Object.entries(data)) {
      if (connectionKind(key, value) || isDerivedKey(key)) checkConnectionString(key, value, { password, ...(user ? { user } : {}) });
    }
    for (const key of DERIVED_KEYS) {
      const current = existing?.[key];
      if (current === undefined || key in data) continue;
      data[key] = options.user !== undefined ? rewriteCredentials(key, current, options.user, password) : rewritePassword(key, current, password, user);
      derivedKeys.push(key);
    }
  }
  return {
    data,
    derivedKeys,
    labels: template?.labels ?? {},
    annotations: template?.annotations ?? {},
    ...(template?.type !== undefined ? { type: template.type } : {}),
  };
}

/** A short, stable fingerprint of a secret value: safe to log, never reversible for generated passwords. */
export function fingerprint(value: string): string {
  return `sha256:${createHash("sha256").update(value, "utf8").digest("hex").slice(0, 16)}`;
}
