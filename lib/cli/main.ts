import { InputError, RotatorError } from "../errors.ts";
import { redact } from "../redact.ts";
import { generateCommand } from "./generate.ts";
import { renderCommand } from "./render.ts";
import { validateCommand } from "./validate.ts";

type Command = (argv: string[], out: (line: string) => void) => number | Promise<number>;

/** A command of cluster.ts, loaded on use: the cluster and store clients are not needed to generate or validate. */
function clusterCommand(name: "rotateCommand" | "pushCommand" | "rollbackCommand" | "statusCommand", summary: string): { run: Command; summary: string } {
  return { run: async (argv, out) => (await import("./cluster.ts"))[name](argv, out), summary };
}

const commands: Record<string, { run: Command; summary: string }> = {
  generate: { run: generateCommand, summary: "print passwords made like an ESO Password generator" },
  render: { run: renderCommand, summary: "show what a rotation would write, password masked" },
  validate: { run: validateCommand, summary: "check manifests without writing anything" },
  rotate: clusterCommand("rotateCommand", "rotate the passwords that are due (stage, merge, promote)"),
  push: clusterCommand("pushCommand", "copy Secrets to their stores per PushSecret"),
  rollback: clusterCommand("rollbackCommand", "undo a merged, unpromoted rotation (e.g. failed verification)"),
  status: clusterCommand("statusCommand", "where each rotation stands: ready, last rotation, drift"),
};

export const mainHelp = `Usage: cnpg-rotator <command> [flags]

Rotates CloudNativePG passwords from External Secrets Operator manifests.

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join("\n")}

Run 'cnpg-rotator <command> --help' for a command's flags.
Exit codes: 0 ok, 2 bad input (nothing was written), 1 any other failure.
`;

/** Runs the CLI; returns the exit code. */
export async function main(
  argv: string[],
  out: (text: string) => void = (t) => process.stdout.write(t.endsWith("\n") ? t : `${t}\n`),
  err: (text: string) => void = (t) => process.stderr.write(t.endsWith("\n") ? t : `${t}\n`),
): Promise<number> {
  // The one secret boundary (lib/redact.ts): nothing the engine handled leaves unmasked.
  // (`generate` prints the password asked for: it is never remembered as a secret.)
  const write = out;
  const writeErr = err;
  out = (t) => write(redact(t));
  err = (t) => writeErr(redact(t));
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    (name === undefined ? err : out)(mainHelp);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    err(`cnpg-rotator: unknown command "${name}"; expected one of ${Object.keys(commands).join(", ")}`);
    return 2;
  }
  try {
    return await command.run(rest, out);
  } catch (e) {
    if (e instanceof InputError) {
      err(`cnpg-rotator ${name}: ${e.message}`);
      return 2;
    }
    if (e instanceof RotatorError) {
      err(`cnpg-rotator ${name}: ${e.message}`);
      return 1;
    }
    err(`cnpg-rotator ${name}: unexpected failure: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}
