// Helm for tests: the helm binary of the Kubernetes toolchain (`scripts/toolchain/ensure-binaries.sh
// ... helm` puts it beside kubectl), run with its own cache/config/data dirs so tests never touch ~/.config/helm.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CHART_DIR = path.join(REPO_ROOT, "charts/kpatch-operator");
export const CHART_CRDS_DIR = path.join(CHART_DIR, "crds");

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A Kubernetes object as rendered or read back (only the fields tests look at are typed). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: unknown;
}

export interface Helm {
  readonly bin: string;
  /** Runs helm (with --kubeconfig when the client has one). Never throws on a non-zero exit. */
  run(args: string[]): Promise<HelmResult>;
  /** Runs helm and throws with its stderr on a non-zero exit. */
  ok(args: string[]): Promise<string>;
  /** `helm template` of the chart with --set values: the rendered objects (CRDs included). */
  template(opts?: { release?: string; namespace?: string; set?: Record<string, string>; setJson?: Record<string, string> }): Promise<K8sObject[]>;
}

/** `--set k=v` / `--set-json k=json` arguments, in a stable order. */
export function setArgs(set: Record<string, string> = {}, setJson: Record<string, string> = {}): string[] {
  return [
    ...Object.entries(set).flatMap(([k, v]) => ["--set", `${k}=${v}`]),
    ...Object.entries(setJson).flatMap(([k, v]) => ["--set-json", `${k}=${v}`]),
  ];
}

export async function helmClient(opts: { binDir: string; kubeconfig?: string }): Promise<Helm> {
  const bin = path.join(opts.binDir, "helm");
  if (!existsSync(bin)) throw new Error(`no helm in ${opts.binDir} (scripts/toolchain/ensure-binaries.sh helm builds it)`);
  const home = await mkdtemp(path.join(os.tmpdir(), "klp-helm-"));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HELM_CACHE_HOME: path.join(home, "cache"),
    HELM_CONFIG_HOME: path.join(home, "config"),
    HELM_DATA_HOME: path.join(home, "data"),
  };
  delete env.KUBECONFIG;
  const run = (args: string[]): Promise<HelmResult> =>
    new Promise((resolve, reject) => {
      const full = opts.kubeconfig ? [...args, "--kubeconfig", opts.kubeconfig] : args;
      execFile(bin, full, { env, cwd: REPO_ROOT, maxBuffer: 64 * 1024 * 1024, timeout: 180_000, encoding: "utf8" }, (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === "string") return reject(err);
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
      });
    });
  const ok = async (args: string[]) => {
    const r = await run(args);
    if (r.code !== 0) throw new Error(`helm ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  return {
    bin,
    run,
    ok,
    async template(t = {}) {
      const out = await ok([
        "template",
        t.release ?? "kpatch-operator",
        CHART_DIR,
        "--namespace",
        t.namespace ?? "kpatch-system",
        "--include-crds",
        ...setArgs(t.set, t.setJson),
      ]);
      // Strict YAML: a duplicate key (which kubectl and the API server may resolve silently) fails.
      const docs = parseAllDocuments(out, { uniqueKeys: true });
      const errors = docs.flatMap((d) => d.errors.map((e) => e.message));
      if (errors.length > 0) throw new Error(`helm template rendered invalid YAML:\n${errors.join("\n")}`);
      return docs.map((d) => d.toJS() as K8sObject | null).filter((o): o is K8sObject => o !== null);
    },
  };
}
