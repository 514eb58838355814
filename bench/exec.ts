// Child processes with a time limit, their output collected.
import { spawn } from "node:child_process";

export interface Exec {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with a time limit; never throws for a non-zero exit (the caller decides). */
export function exec(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<Exec> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr = (stderr + d).slice(-20_000);
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      stderr += `\n[bench] killed after ${options.timeoutMs / 1000}s`;
    }, options.timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
