// Prometheus and promtool for the monitoring tests, from Debian's package through
// scripts/monitoring/ensure-prometheus.sh (installed when missing, as the other layers' tools are):
// a test that needs them never skips for their absence.
import { execFile } from "node:child_process";
import path from "node:path";

const REPO_ROOT = path.resolve(import.meta.dirname, "../..");
export const ALERTS_FILE = path.join(REPO_ROOT, "charts/kpatch-operator/files/alerts.yaml");

export interface PrometheusTools {
  readonly prometheus: string;
  readonly promtool: string;
}

export interface ToolResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end; never throws on a non-zero exit. */
export function runTool(file: string, args: readonly string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd: opts.cwd ?? REPO_ROOT, encoding: "utf8", maxBuffer: 16 << 20, timeout: opts.timeoutMs ?? 600_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === "string") return reject(err);
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

export async function ensurePrometheusTools(): Promise<PrometheusTools> {
  const r = await runTool("bash", [path.join(REPO_ROOT, "scripts/monitoring/ensure-prometheus.sh")]);
  if (r.code !== 0) throw new Error(`scripts/monitoring/ensure-prometheus.sh failed (exit ${r.code}):\n${r.stderr.slice(-4000)}`);
  const kv = new Map(r.stdout.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  const need = (k: string) => {
    const v = kv.get(k);
    if (!v) throw new Error(`scripts/monitoring/ensure-prometheus.sh printed no ${k}`);
    return v;
  };
  return { prometheus: need("PROMETHEUS"), promtool: need("PROMTOOL") };
}
