#!/usr/bin/env node
// Runs the TypeScript CLI directly: Node >= 24 strips types natively.
import { main } from "../lib/cli/main.ts";

process.exitCode = await main(process.argv.slice(2));
