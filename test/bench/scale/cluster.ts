/**
 * What every benchmark run sets up: its own control plane (no controllers), both CRDs
 * (KernelLivePatch and KernelLivePatchNode), the module ConfigMap, N Node objects, and the operator
 * in its own process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { get } from "node:http";
import path from "node:path";
import { API_VERSION, GROUP, KIND, PATCHES_PATH } from "../../../crds/schema.ts";
import { kubeconfigConnection, type Connection } from "../../../kube/connection.ts";
import { KubeHttp } from "../../../kube/http-client.ts";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import { freePorts, startControlPlane, type ControlPlane } from "../../../scripts/dev/control-plane/index.ts";
import { createNodes, imageEnv, nodeName } from "./fleet.ts";
import { scrapeOperator } from "./metrics.ts";

export const REPO = path.resolve(import.meta.dirname, "../../..");
export const RELEASE = "6.1.0-56-amd64";
export const NAMESPACE = "kpatch-system";

/** Defined with the schema; passed on to the benchmark's other files. */
export { PATCHES_PATH };
const CRDS = ["kernellivepatches", "kernellivepatchnodes"];

/** How the operator runs, with extra node flags (the image's CMD has none). */
export type OperatorRunner = ({ kind: "tsx" } | { kind: "bundle"; file: string }) & { nodeFlags?: readonly string[] };

export interface Cluster {
  cp: ControlPlane;
  conn: Connection;
  admin: KubeHttp;
  nodes: string[];
  /** Node uid by name (the operator's node objects are owned by their Node). */
  nodeUids: Map<string, string>;
  /** Patch names, and the digest of each patch's module. */
  patches: string[];
  sha256: string[];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(what: string, timeoutMs: number, f: () => Promise<boolean> | boolean, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await f()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function httpOk(port: number, p: string): Promise<boolean> {
  return new Promise((resolve) => {
    get({ host: "127.0.0.1", port, path: p, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on("error", () => resolve(false));
  });
}

export async function prepareCluster(opts: { dir: string; binDir: string; nodes: number; patches: number; log: (l: string) => void }): Promise<Cluster> {
  opts.log(`starting a control plane (${opts.dir})`);
  // KLP_APISERVER_PROFILING=1: /debug/pprof on the API server, to see where its CPU goes (docs/benchmarks.md).
  const profiling = process.env.KLP_APISERVER_PROFILING ? ["--profiling=true"] : [];
  const cp = await startControlPlane({ dir: path.join(opts.dir, "cp"), binDir: opts.binDir, controllers: false, keep: false, extraApiServerArgs: profiling });
  try {
    const conn = kubeconfigConnection(cp.kubeconfigPath);
    // The benchmark's own requests (setup, metrics, big objects) may wait long on a saturated API server.
    const admin = new KubeHttp(conn, { requestTimeoutMs: 600_000 });
    for (const plural of CRDS) {
      const crd = await cp.kubectl(["apply", "--server-side", "-f", path.join(REPO, `crds/${GROUP}_${plural}.yaml`)]);
      if (crd.code !== 0) throw new Error(crd.stderr);
      await cp.kubectl(["wait", "--for=condition=Established", "--timeout=60s", `crd/${plural}.${GROUP}`]);
    }
    await admin.json("POST", "/api/v1/namespaces", { body: { metadata: { name: NAMESPACE } } });
    const modules = Array.from({ length: opts.patches }, (_, i) => buildSimModule({ name: `bench_fix_${i}`, vermagic: RELEASE }));
    await admin.json("POST", `/api/v1/namespaces/${NAMESPACE}/configmaps`, {
      body: { metadata: { name: "bench-modules" }, binaryData: Object.fromEntries(modules.map((m, i) => [`fix-${i}.ko`, m.toString("base64")])) },
    });
    const nodes = Array.from({ length: opts.nodes }, (_, i) => nodeName(i));
    opts.log(`creating ${opts.nodes} Node objects`);
    const nodeUids = await createNodes(admin, nodes, opts.log);
    return {
      cp,
      conn,
      admin,
      nodes,
      nodeUids,
      patches: modules.map((_, i) => `bench-patch-${i}`),
      sha256: modules.map((m) => createHash("sha256").update(m).digest("hex")),
    };
  } catch (err) {
    await cp.stop();
    throw err;
  }
}

/** The KernelLivePatch the benchmark applies: patch i, every node, maxUnavailable 100%. */
export function patchObject(c: Cluster, i: number): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { name: c.patches[i] },
    spec: {
      modules: [{ kernelRelease: RELEASE, sha256: c.sha256[i], configMap: { namespace: NAMESPACE, name: "bench-modules", key: `fix-${i}.ko` } }],
      rollout: { maxUnavailable: "100%" },
    },
  };
}

export async function createPatch(c: Cluster, i: number): Promise<void> {
  await c.admin.json("POST", PATCHES_PATH, { body: patchObject(c, i) });
}

/** The operator in its own process; resolves once its informers synced and it reconciled once. */
export async function startOperator(runner: OperatorRunner, kubeconfig: string, logFile: string): Promise<{ child: ChildProcess; metricsPort: number }> {
  const [metricsPort, healthPort] = (await freePorts(2)) as [number, number];
  const log = await open(logFile, "a");
  const args = [...(runner.nodeFlags ?? []), ...(runner.kind === "tsx" ? ["--import", "tsx", path.join(REPO, "operator/main.ts")] : [runner.file])];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    env: {
      ...imageEnv(REPO, "operator"),
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/tmp",
      KUBECONFIG: kubeconfig,
      KLP_LEADER_ELECTION: "false",
      KLP_NAMESPACE: NAMESPACE,
      KLP_METRICS_ADDR: `127.0.0.1:${metricsPort}`,
      KLP_HEALTH_ADDR: `127.0.0.1:${healthPort}`,
      KLP_LOG_LEVEL: "warn",
      KLP_AGENT_LOADER: "sim",
    },
    stdio: ["ignore", log.fd, log.fd],
  });
  await log.close();
  process.once("exit", () => child.kill("SIGKILL")); // never outlive the benchmark
  await until("the operator", 180_000, async () => (await scrapeOperator(metricsPort)).some((s) => s.name === "controller_runtime_reconcile_total"), 500);
  return { child, metricsPort };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
