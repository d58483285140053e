#!/usr/bin/env node
/** kpatch-agent: kpatch-compatible CLI over the node agent's host driver (see node-agent/README.md). */
import { runCli } from "./cli/run.ts";

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
  cwd: process.cwd(),
});
