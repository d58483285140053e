import { pino, type Logger } from "pino";
import { createLoader } from "../create-loader.ts";
import { createHostDriver } from "../host/driver.ts";
import { isHostError } from "../host/host-error.ts";
import { parseCli, type GlobalOptions } from "./args.ts";
import { runHostCommand, type Output } from "./commands.ts";
import { runSimHost } from "./sim-host.ts";
import { USAGE } from "./usage.ts";

export const EXIT = { OK: 0, FAILED: 1, USAGE: 2 } as const;

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  cwd: string;
  /** Logger to use instead of pino on stderr at --log-level (tests pass a silent one). */
  log?: Logger;
}

function stderrLogger(level: GlobalOptions["logLevel"]): Logger {
  return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: true }));
}

function fail(io: CliIo, json: boolean, reason: string, message: string, details?: unknown): void {
  io.stderr(`kpatch-agent: ${reason}: ${message}\n`);
  if (json) io.stdout(JSON.stringify({ ok: false, reason, message, ...(details === undefined ? {} : { details }) }) + "\n");
}

/** The kpatch-agent CLI: returns the exit code (0 ok, 1 operation failed, 2 usage error). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCli(argv, io.env);
  if (!parsed.ok) {
    fail(io, parsed.json, "UsageError", `${parsed.message} (see kpatch-agent --help)`);
    return EXIT.USAGE;
  }
  const { global, command } = parsed;
  if (command.verb === "help") {
    io.stdout(USAGE);
    return EXIT.OK;
  }
  let output: Output;
  try {
    if (command.verb === "sim-host") {
      output = await runSimHost(command, global, io.cwd);
    } else {
      const log = io.log ?? stderrLogger(global.logLevel);
      const loader = createLoader(global.hostRoot, global.loader);
      const driver = createHostDriver({ hostRoot: global.hostRoot, loader, log });
      output = await runHostCommand(driver, command, global, io.cwd);
    }
  } catch (error) {
    if (isHostError(error)) fail(io, global.json, error.reason, error.message, error.details);
    else fail(io, global.json, "InternalError", error instanceof Error ? error.message : String(error));
    return EXIT.FAILED;
  }
  io.stdout(global.json ? JSON.stringify({ ok: true, ...output.json }) + "\n" : output.text);
  return EXIT.OK;
}
