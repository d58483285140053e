// Runs a short-lived command (openssl, kubectl) and collects its output.
import { execFile } from "node:child_process";
import type { KubectlResult } from "./types.ts";

export interface RunOptions {
  input?: string | undefined;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  timeoutMs?: number;
}

/** Resolves with the exit code and output; rejects only when the command cannot start. */
export function run(file: string, args: string[], opts: RunOptions = {}): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 64 * 1024 * 1024, timeout: opts.timeoutMs ?? 120_000, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === "string") {
          // spawn failure (ENOENT, EACCES...), not a non-zero exit
          reject(err);
          return;
        }
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Like run(), but a non-zero exit throws with the command's output. */
export async function runOk(file: string, args: string[], what: string, opts: RunOptions = {}): Promise<KubectlResult> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${file} ${args.join(" ")}\n${r.stderr}${r.stdout}`);
  return r;
}
