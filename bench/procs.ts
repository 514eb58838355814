// CPU time of the servers this process started (its child processes), from
// /proc/<pid>/stat: on a 2-core machine the servers share the cores with us, so
// their CPU per rotation bounds the throughput as much as ours does.
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc's utime/stime (USER_HZ; 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** CPU ms (user + system) so far of each child process but `exclude`, keyed by its command name. */
export function childCpuMs(exclude: readonly number[] = [], parent = process.pid): Record<string, number> {
  const out: Record<string, number> = {};
  let entries: string[];
  try {
    entries = readdirSync("/proc").filter((e) => /^\d+$/.test(e));
  } catch {
    return out; // not Linux
  }
  for (const pid of entries) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ... : comm may hold spaces and parentheses, so split after the last ")".
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(open + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    if (Number(fields[1]) !== parent || exclude.includes(Number(pid))) continue;
    const ticks = Number(fields[11]) + Number(fields[12]);
    if (comm === "sh" || !Number.isFinite(ticks)) continue; // the servers' watchdogs
    out[comm] = (out[comm] ?? 0) + (ticks * 1000) / TICKS_PER_SECOND;
  }
  return out;
}

/** CPU ms each child used between two childCpuMs() readings. */
export function cpuDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, ms] of Object.entries(after)) out[name] = ms - (before[name] ?? 0);
  return out;
}
