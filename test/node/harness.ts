// What a real-node test file does again and again: kubectl that throws with its output, waiting for
// a condition with the cluster's state in the error, and the project's CLI (kpatch-agent) from source.
import { spawn } from "node:child_process";
import path from "node:path";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";

const REPO = path.resolve(import.meta.dirname, "../..");

export interface Kubectl {
  (args: string[], input?: string, timeoutMs?: number): Promise<string>;
  json<T = any>(args: string[]): Promise<T>;
}

export function kubectlOf(cp: ControlPlaneClient): Kubectl {
  const run = async (args: string[], input?: string, timeoutMs?: number) => {
    const r = await cp.kubectl(args, { ...(input === undefined ? {} : { input }), ...(timeoutMs ? { timeoutMs } : {}) });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${r.code}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  return Object.assign(run, { json: async <T>(args: string[]) => JSON.parse(await run([...args, "-o", "json"])) as T });
}

/** Polls `fn` every 500 ms until it returns a value; on timeout the error carries `context()`. */
export async function eventually<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false>, context: () => Promise<string> = async () => ""): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ""}\n${await context().catch(() => "")}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The pods, workloads and recent events of a namespace, for a failure message. */
export async function namespaceState(cp: ControlPlaneClient, ns: string): Promise<string> {
  const pods = await cp.kubectl(["get", "pods,ds,deploy", "-n", ns, "-o", "wide"]).then((r) => r.stdout + r.stderr);
  const events = await cp.kubectl(["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]).then((r) => r.stdout.split("\n").slice(-15).join("\n"));
  return `${pods}\n${events}`;
}

/** The kpatch-agent CLI from source (sim-host verbs make the simulated host and its modules). */
export function cli(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(REPO, "node_modules/.bin/tsx"), [path.join(REPO, "node-agent/cli.ts"), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`kpatch-agent ${args.join(" ")} exited ${code}: ${out}`))));
  });
}
