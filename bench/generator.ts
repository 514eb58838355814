// Passwords per second for the seed's Password spec: lib/generator here, and
// sethvargo/go-password (what ESO's Password generator runs) in a small Go program,
// in alternating time-boxed rounds of the same run, so both see the same machine load.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generatePassword, type PasswordSpec, resolvePasswordSpec } from "../lib/generator/index.ts";
import { exec } from "./exec.ts";
import { median, round } from "./stats.ts";

/** examples/seed/password-generator.yaml */
export const SEED_SPEC = {
  length: 42,
  digits: 5,
  symbols: 5,
  symbolCharacters: "-_$@",
  noUpper: false,
  allowRepeat: true,
} as const satisfies PasswordSpec;

export interface GeneratorResult {
  spec: PasswordSpec;
  oursPerSecond: number;
  goPasswordPerSecond: number | null;
  /** ours / go-password: above 1 means ours is faster. */
  ratio: number | null;
  rounds: { ours: number; goPassword: number | null }[];
  secondsPerRound: number;
  goError?: string;
}

/** Our generator for `seconds` after `warmup` seconds; passwords per second. */
export function oursPerSecond(seconds: number, warmup = 0.5): number {
  // Resolved once, as the manifests are loaded once; go-password's NewGenerator is likewise outside its loop.
  const spec = resolvePasswordSpec(SEED_SPEC);
  const run = (ms: number) => {
    let count = 0;
    let chars = 0;
    const start = performance.now();
    const deadline = start + ms;
    for (;;) {
      for (let i = 0; i < 64; i++) chars += generatePassword(spec).length;
      count += 64;
      const now = performance.now();
      if (now >= deadline) {
        if (chars !== count * SEED_SPEC.length) throw new Error(`generated ${chars} characters for ${count} passwords`);
        return count / ((now - start) / 1000);
      }
    }
  };
  run(warmup * 1000);
  return run(seconds * 1000);
}

/** Builds bench/go-password once (the module comes from the Go proxy, pinned in its go.mod/go.sum). */
export async function buildGoPassword(dir: string): Promise<string> {
  const binary = join(dir, "go-password-bench");
  const r = await exec("go", ["build", "-o", binary, "."], { cwd: join(import.meta.dirname, "go-password"), timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`go build of bench/go-password failed (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  return binary;
}

async function goPerSecond(binary: string, seconds: number): Promise<number> {
  const args = [
    `-length=${SEED_SPEC.length}`,
    `-digits=${SEED_SPEC.digits}`,
    `-symbols=${SEED_SPEC.symbols}`,
    `-symbol-characters=${SEED_SPEC.symbolCharacters}`,
    `-no-upper=${SEED_SPEC.noUpper}`,
    `-allow-repeat=${SEED_SPEC.allowRepeat}`,
    `-seconds=${seconds}`,
    "-warmup=0.5",
  ];
  const r = await exec(binary, args, { timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`go-password bench failed (exit ${r.code}): ${r.stderr.slice(-2000)}`);
  return (JSON.parse(r.stdout.trim()) as { passwordsPerSecond: number }).passwordsPerSecond;
}

export async function benchGenerator(options: { seconds: number; rounds: number; log?: (line: string) => void }): Promise<GeneratorResult> {
  const say = options.log ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), "cnpg-rotator-bench-go-"));
  try {
    let binary: string | undefined;
    let goError: string | undefined;
    try {
      say("generator: go build bench/go-password...");
      binary = await buildGoPassword(dir);
    } catch (e) {
      goError = (e as Error).message;
    }
    const rounds: GeneratorResult["rounds"] = [];
    for (let i = 0; i < options.rounds; i++) {
      const ours = oursPerSecond(options.seconds);
      let go: number | null = null;
      if (binary) {
        try {
          go = await goPerSecond(binary, options.seconds);
        } catch (e) {
          goError = (e as Error).message;
        }
      }
      rounds.push({ ours: round(ours, 0), goPassword: go === null ? null : round(go, 0) });
      say(`generator: round ${i + 1}: ours ${round(ours, 0)}/s, go-password ${go === null ? "n/a" : `${round(go, 0)}/s`}`);
    }
    const ours = median(rounds.map((r) => r.ours));
    const goRounds = rounds.map((r) => r.goPassword).filter((g): g is number => g !== null);
    const go = goRounds.length === rounds.length ? median(goRounds) : null;
    return {
      spec: { ...SEED_SPEC },
      oursPerSecond: round(ours, 0),
      goPasswordPerSecond: go === null ? null : round(go, 0),
      ratio: go === null ? null : round(ours / go, 2),
      rounds,
      secondsPerRound: options.seconds,
      ...(goError ? { goError } : {}),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
