// A long-running component (etcd, kube-apiserver, ...): started with its output in a log file,
// waited for until a health check passes, stopped with SIGTERM then SIGKILL.
import { spawn, type ChildProcess } from "node:child_process";
import { open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { killOnExit } from "../kill-on-exit.ts";

const STOP_GRACE_MS = 10_000;

export interface Proc {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<number | null>;
  exitCode: number | null | undefined; // undefined while running
}

/** Spawns `bin` with stdout/stderr appended to `<logDir>/<name>.log`; killed if this process exits first. */
export async function startProcess(name: string, bin: string, args: string[], logDir: string): Promise<Proc> {
  const logPath = path.join(logDir, `${name}.log`);
  const fh = await open(logPath, "a");
  await fh.write(`\n===== ${new Date().toISOString()} ${bin} ${args.join(" ")}\n`);
  const child = spawn(bin, args, { stdio: ["ignore", fh.fd, fh.fd], env: { ...process.env, KUBECONFIG: "" } });
  await fh.close(); // the child has its own copy of the descriptor
  killOnExit(child);
  const proc: Proc = { name, child, logPath, exitCode: undefined, exited: Promise.resolve(null) };
  proc.exited = new Promise((resolve) => {
    child.once("error", (err) => {
      proc.exitCode = -1;
      void writeFile(logPath, `spawn error: ${err.message}\n`, { flag: "a" }).finally(() => resolve(-1));
    });
    child.once("exit", (code, signal) => {
      proc.exitCode = code ?? (signal ? -1 : null);
      resolve(proc.exitCode);
    });
  });
  return proc;
}

/** SIGTERM, then SIGKILL after a grace period; resolves once the process is gone. */
export async function stopProcess(p: Proc): Promise<void> {
  if (p.exitCode !== undefined) return;
  p.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), STOP_GRACE_MS)));
  const outcome = await Promise.race([p.exited, timeout]);
  clearTimeout(timer);
  if (outcome === "timeout" && p.exitCode === undefined) {
    p.child.kill("SIGKILL");
    await p.exited;
  }
}

/** Polls `check` until it returns true; fails early (with the log tail) if the process exits. */
export async function waitFor(p: Proc, what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = "";
  for (;;) {
    if (p.exitCode !== undefined) {
      throw new Error(`${p.name} exited (code ${p.exitCode}) before ${what}. Tail of ${p.logPath}:\n${await tail(p.logPath)}`);
    }
    try {
      if (await check()) return;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`${p.name}: ${what} not reached within ${timeoutMs / 1000}s (last: ${lastErr}). Tail of ${p.logPath}:\n${await tail(p.logPath)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function tail(file: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return text.split("\n").slice(-lines - 1).join("\n");
  } catch {
    return "(no log)";
  }
}

/** The running components by name, stopped in reverse start order. */
export class Components {
  private readonly procs = new Map<string, Proc>();

  add(p: Proc): Proc {
    this.procs.set(p.name, p);
    return p;
  }

  get(name: string): Proc | undefined {
    return this.procs.get(name);
  }

  pids(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, p] of this.procs) if (p.exitCode === undefined && p.child.pid) out[name] = p.child.pid;
    return out;
  }

  /** VmRSS in KiB per running component (from /proc). */
  async memory(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const [name, pid] of Object.entries(this.pids())) {
      try {
        const status = await readFile(`/proc/${pid}/status`, "utf8");
        const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
        if (m) out[name] = Number(m[1]);
      } catch {
        /* exited */
      }
    }
    return out;
  }

  async stopAll(): Promise<void> {
    for (const p of [...this.procs.values()].reverse()) await stopProcess(p);
    this.procs.clear();
  }
}
