// One structured logger for the engine, functions and CLI: JSON lines on
// stderr. Callers log ids, names, outcomes and fingerprints — never values.
import { type DestinationStream, type Logger, pino } from "pino";
import { InputError } from "./errors.ts";
import { redact } from "./redact.ts";

export type { Logger };

export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  const level = options.level ?? (process.env.CNPG_ROTATOR_LOG_LEVEL?.trim() || "info");
  if (level !== "silent" && !(level in pino.levels.values)) {
    throw new InputError(
      `CNPG_ROTATOR_LOG_LEVEL: expected one of ${[...Object.keys(pino.levels.values), "silent"].join(", ")}, found "${level}"`,
    );
  }
  return pino(
    {
      level,
      base: { service: "cnpg-rotator" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // process.stderr (synchronous for files and pipes on Linux) rather than a raw fd, so
    // a host that wraps stderr (a test harness, a log shipper) sees every line.
    redacting(options.destination ?? process.stderr),
  );
}

/** A logger that drops everything, for library callers that pass none. */
export const silentLogger: Logger = pino({ level: "silent" });

/** Every line through the one secret boundary (lib/redact.ts) on its way out. */
function redacting(destination: DestinationStream): DestinationStream {
  return { write: (line: string) => destination.write(redact(line)) };
}
