import { execFile } from "node:child_process";
import { constants, promises as fs } from "node:fs";
import { kmodErrno, sysfsWriteErrno } from "./kmod-errors.ts";
import { resolveHostPath } from "./node-host-fs.ts";
import { LoaderError, type ModuleLoader } from "./ports.ts";

export interface KmodLoaderOptions {
  hostRoot: string;
  /** insmod binary (default "insmod" from PATH: kmod or busybox). */
  insmod?: string;
  /** rmmod binary (default "rmmod" from PATH). */
  rmmod?: string;
  /** Kill insmod/rmmod after this long (default 120 s). */
  timeoutMs?: number;
}

interface RunResult {
  code: number | string | null;
  stderr: string;
}

function run(command: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, encoding: "utf8" }, (error, _stdout, stderr) => {
      if (!error) return resolve({ code: 0, stderr });
      resolve({ code: error.code ?? null, stderr: stderr || error.message });
    });
  });
}

/**
 * The real kernel through kmod's insmod/rmmod and plain sysfs writes. insmod gets the module's
 * path as this process sees it (host root joined), which is what finit_module needs: the kernel
 * does not care where the file lives.
 */
export function createKmodLoader(options: KmodLoaderOptions): ModuleLoader {
  const timeoutMs = options.timeoutMs ?? 120_000;
  const insmod = options.insmod ?? "insmod";
  const rmmod = options.rmmod ?? "rmmod";

  async function exec(op: "insmod" | "rmmod", command: string, target: string): Promise<void> {
    const result = await run(command, [target], timeoutMs);
    if (result.code === 0) return;
    if (typeof result.code === "string") {
      // spawn failure (ENOENT: binary missing), not the kernel's answer
      throw new LoaderError("EIO", op, target, `${command}: ${result.code}`);
    }
    const text = result.stderr.trim().split("\n").pop() ?? "";
    throw new LoaderError(kmodErrno(op, text), op, target, text || `${command} exited with ${String(result.code)}`);
  }

  return {
    kind: "kmod",
    insmod: (file) => exec("insmod", insmod, file),
    rmmod: (name) => exec("rmmod", rmmod, name),
    async writeSysfs(path, value) {
      const file = resolveHostPath(options.hostRoot, path);
      let handle: fs.FileHandle | undefined;
      try {
        handle = await fs.open(file, constants.O_WRONLY); // never O_CREAT: sysfs attributes exist or not
        await handle.write(value);
      } catch (error) {
        const code = typeof error === "object" && error && "code" in error ? String(error.code) : undefined;
        throw new LoaderError(sysfsWriteErrno(code), "write", path, `write ${value} to ${path}: ${code ?? String(error)}`, {
          cause: error,
        });
      } finally {
        await handle?.close();
      }
    },
  };
}
