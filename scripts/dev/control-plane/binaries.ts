// The Kubernetes binaries, from scripts/toolchain/ensure-binaries.sh: each caller asks for the ones
// it runs, so a first run builds only those (a cold build is minutes per binary).
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";

const REPO_ROOT = path.resolve(import.meta.dirname, "../../..");

/** What ensure-binaries.sh can provide. */
export type KubeBinary = "etcd" | "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" | "kubectl" | "kubelet" | "kube-proxy" | "helm";

/** What startControlPlane() runs: etcd, the API server and kubectl; the controllers only when asked. */
export function controlPlaneBinaries(controllers: boolean): KubeBinary[] {
  return controllers
    ? ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]
    : ["etcd", "kube-apiserver", "kubectl"];
}

/**
 * Runs scripts/toolchain/ensure-binaries.sh for `binaries` and resolves with the directory that
 * holds them. Builds what is missing (minutes per binary when cold); its progress lines go to `log`.
 */
export async function ensureBinaries(binaries: readonly KubeBinary[], log?: (line: string) => void): Promise<string> {
  const script = path.join(REPO_ROOT, "scripts/toolchain/ensure-binaries.sh");
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script, ...binaries], { stdio: ["ignore", "pipe", "pipe"], cwd: REPO_ROOT });
    let out = "";
    let errTail = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      errTail = (errTail + c).slice(-8000);
      for (const line of c.split("\n")) if (line.trim()) log?.(line);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const dir = out.trim().split("\n").pop() ?? "";
      if (code === 0 && dir) resolve(dir);
      else reject(new Error(`ensure-binaries.sh ${binaries.join(" ")} failed (exit ${code}):\n${errTail}`));
    });
  });
}

/** `explicit`, else $KLP_K8S_BIN_DIR (both must hold `binaries`), else ensureBinaries(binaries). */
export async function resolveBinDir(explicit: string | undefined, binaries: readonly KubeBinary[]): Promise<string> {
  const candidate = explicit ?? process.env.KLP_K8S_BIN_DIR;
  if (!candidate) return ensureBinaries(binaries);
  const missing = binaries.filter((b) => !existsSync(path.join(candidate, b)));
  if (missing.length) throw new Error(`binDir ${candidate} lacks ${missing.join(", ")}`);
  return candidate;
}
