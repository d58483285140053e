/**
 * Helpers of the fault suite (test/integration/faults/): the operator and the agent as real
 * processes or in this process against any control plane (the shared one or a test's own), a
 * small API client for any kubeconfig, what a simulated host holds (the sim's insmod counter,
 * /var/lib/kpatch, partial files), a TCP proxy that can freeze its connections, and /metrics.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { get } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { API_VERSION, GROUP, KIND, PLURAL, VERSION, type KernelLivePatch, type NodeEntry } from "../../crds/schema.ts";
import { createLoader } from "../../node-agent/create-loader.ts";
import { createHostDriver } from "../../node-agent/host/driver.ts";
import { watchOwnNode } from "../../node-agent/kube/agent-api.ts";
import { nodeChannel } from "../../node-agent/kube/node-channel.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp, KubeApiError } from "../../kube/http-client.ts";
import { Agent } from "../../node-agent/loop/agent.ts";
import { agentMetrics, type AgentMetrics } from "../../node-agent/loop/agent-metrics.ts";
import { moduleSources } from "../../node-agent/loop/sources.ts";
import { layoutSimHost } from "../../node-agent/sim/layout.ts";
import { loadOperatorConfig } from "../../operator/config.ts";
import { Controller, type ControllerTimings } from "../../operator/controller/controller.ts";
import { operatorMetrics, type OperatorMetrics } from "../../operator/metrics.ts";
import { freePorts } from "../../scripts/dev/control-plane/index.ts";
import { admittedIn, nodeObjects, recordStatus, REPO, testLog, until, type RecordedVersion } from "./klp.ts";

export { freePorts };
export const RELEASE = "6.1.0-56-amd64";
export const PATCHES = `/apis/${GROUP}/${VERSION}/${PLURAL}`;

// ---------------------------------------------------------------------------------------------
// A small API client for any kubeconfig

export class TestApi {
  readonly http: KubeHttp;

  constructor(readonly kubeconfig: string) {
    this.http = new KubeHttp(kubeconfigConnection(kubeconfig));
  }

  async createNode(name: string, labels: Record<string, string>): Promise<void> {
    await this.http.json("POST", "/api/v1/nodes", { body: { apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name, ...labels } } } });
    const now = new Date().toISOString();
    await this.http.json("PATCH", `/api/v1/nodes/${name}/status`, {
      contentType: "application/merge-patch+json",
      body: {
        status: {
          capacity: { cpu: "4", memory: "8Gi", pods: "110" },
          allocatable: { cpu: "4", memory: "8Gi", pods: "110" },
          conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "test node", lastHeartbeatTime: now, lastTransitionTime: now }],
        },
      },
    });
  }

  async deleteNode(name: string): Promise<void> {
    await this.http.json("DELETE", `/api/v1/nodes/${name}`).catch(ignore404);
  }

  async ensureNamespace(name: string): Promise<void> {
    await this.http.json("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name } } }).catch((e: unknown) => {
      if (!(e instanceof KubeApiError && e.code === 409)) throw e;
    });
  }

  async putConfigMap(namespace: string, name: string, files: Record<string, Uint8Array>): Promise<void> {
    await this.ensureNamespace(namespace);
    await this.deleteConfigMap(namespace, name);
    const binaryData = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString("base64")]));
    await this.http.json("POST", `/api/v1/namespaces/${namespace}/configmaps`, { body: { apiVersion: "v1", kind: "ConfigMap", metadata: { name }, binaryData } });
  }

  async deleteConfigMap(namespace: string, name: string): Promise<void> {
    await this.http.json("DELETE", `/api/v1/namespaces/${namespace}/configmaps/${name}`).catch(ignore404);
  }

  async createPatch(name: string, spec: Record<string, unknown>): Promise<void> {
    await this.http.json("POST", PATCHES, { body: { apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec } });
  }

  async getPatch(name: string): Promise<KernelLivePatch | undefined> {
    return this.http.json<KernelLivePatch>("GET", `${PATCHES}/${name}`).catch((e: unknown) => {
      if (e instanceof KubeApiError && e.code === 404) return undefined;
      throw e;
    });
  }

  /** The nodes the rollout admits for the patch's current generation, from the node objects' projections (see admittedIn). */
  async admitted(name: string): Promise<{ patch: KernelLivePatch | undefined; admitted: string[] }> {
    const patch = await this.getPatch(name);
    return { patch, admitted: patch ? admittedIn(await nodeObjects(this.http), patch) : [] };
  }

  async mergePatch(name: string, body: unknown): Promise<void> {
    await this.http.json("PATCH", `${PATCHES}/${name}`, { contentType: "application/merge-patch+json", body });
  }

  async deletePatch(name: string): Promise<void> {
    await this.http.json("DELETE", `${PATCHES}/${name}`).catch(ignore404);
  }

  /** Test cleanup that does not wait for agents. */
  async forceDeletePatch(name: string): Promise<void> {
    await this.http.json("PATCH", `${PATCHES}/${name}`, { contentType: "application/merge-patch+json", body: { metadata: { finalizers: null } } }).catch(ignore404);
    await this.deletePatch(name);
  }

  async events(fieldSelector: string): Promise<Array<{ reason: string; type: string; message: string; involvedObject: { kind: string; name: string } }>> {
    const list = await this.http.json<{ items: Array<{ reason: string; type: string; message: string; involvedObject: { kind: string; name: string } }> }>("GET", "/api/v1/namespaces/default/events", {
      query: { fieldSelector },
    });
    return list.items;
  }

  close(): void {
    this.http.close();
  }
}

function ignore404(e: unknown): void {
  if (!(e instanceof KubeApiError && e.code === 404)) throw e;
}

export function entryOf(p: KernelLivePatch | undefined, node: string): NodeEntry | undefined {
  return p?.status?.nodes?.find((e) => e.nodeName === node);
}

export function isReady(p: KernelLivePatch | undefined): boolean {
  return p?.status?.observedGeneration === p?.metadata.generation && p?.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;
}

/** Waits for the patch to be Ready for its generation; on timeout shows its status. */
export async function waitReady(api: TestApi, name: string, timeoutMs = 90_000): Promise<KernelLivePatch> {
  return until(`${name} Ready`, async () => {
    const p = await api.getPatch(name);
    return isReady(p) ? p : undefined;
  }, timeoutMs).catch(async (e: Error) => {
    throw new Error(`${e.message}; status: ${JSON.stringify((await api.getPatch(name))?.status, null, 1)}`);
  });
}

/** Deletes the patch and waits until the finalizer let it go (every agent reported Unloaded). */
export async function deleteAndWaitGone(api: TestApi, name: string, timeoutMs = 60_000): Promise<void> {
  await api.deletePatch(name);
  await until(`${name} gone (finalizer released)`, async () => (await api.getPatch(name)) === undefined, timeoutMs).catch(async (e: Error) => {
    throw new Error(`${e.message}; status: ${JSON.stringify((await api.getPatch(name))?.status, null, 1)}`);
  });
}

/**
 * Every version of a patch the API server shows through a watch (relisting after breaks), to
 * check sequences: how many nodes were changing at once.
 */
/** Every version of a patch, entries as the agents wrote them (see recordStatus), against this control plane. */
export function recordVersions(kubeconfig: string, name: string): Promise<{ versions: RecordedVersion[]; stop: () => void }> {
  return recordStatus(name, { kubeconfig, requestTimeoutMs: 5000, watchTimeoutSeconds: 30 });
}

/** The most nodes any recorded version shows changing (Staging, Loading, Unloading) at once. */
export function mostChangingAtOnce(versions: readonly KernelLivePatch[]): number {
  return Math.max(0, ...versions.map((v) => (v.status?.nodes ?? []).filter((e) => ["Staging", "Loading", "Unloading"].includes(e.phase)).length));
}

// ---------------------------------------------------------------------------------------------
// Simulated hosts

export async function simHost(node: string, transitionMs = 300, kernelRelease = RELEASE): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), `klp-fault-${node}-`));
  await layoutSimHost(root, { kernelRelease, transitionMs });
  return root;
}

interface SimStateFile {
  insmods: Record<string, number>;
  modules: Array<{ name: string; patch: { enabled: boolean; transition: { target: boolean } | null } | null }>;
}

export function simState(root: string): SimStateFile {
  return JSON.parse(readFileSync(path.join(root, ".kpatch-sim/state.json"), "utf8")) as SimStateFile;
}

export function insmods(root: string, module: string): number {
  return simState(root).insmods[module] ?? 0;
}

/** The module is in a transition towards `target` (true: patching, false: unpatching). */
export function inTransition(root: string, module: string, target: boolean): boolean {
  return simState(root).modules.some((m) => m.name === module && m.patch?.transition?.target === target);
}

/** Every file under /var/lib/kpatch, relative to it. */
export function kpatchFiles(root: string): string[] {
  const dir = path.join(root, "var/lib/kpatch");
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)))
    .sort();
}

/** Half-written files: the store's temporaries (`.<name>.tmp-<pid>-<hex>`) anywhere under /var/lib/kpatch. */
export function partialFiles(root: string): string[] {
  return kpatchFiles(root).filter((f) => f.includes(".tmp"));
}

/** The agent's own record of what it put on the host (node-agent/host/agent-record.ts). */
export const AGENT_RECORD = ".kpatch-agent.json";

export function livepatches(root: string): string[] {
  const dir = path.join(root, "sys/kernel/livepatch");
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

export async function removeHost(root: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// Processes

export interface Proc {
  readonly child: ChildProcess;
  output(): string;
  /** Resolves with how the process ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

function spawnTs(entry: string, env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO, entry)], { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (out += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    }),
  );
  return { child, output: () => out, exited };
}

/** Stops a process: SIGKILL unless told otherwise; resolves when it is gone. */
export async function kill(p: Proc, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
  await p.exited;
}

/** node-agent/main.ts on a simulated host, as the DaemonSet runs it. */
export function spawnAgent(o: { node: string; root: string; kubeconfig: string; env?: Record<string, string> }): Proc {
  return spawnTs("node-agent/main.ts", {
    NODE_NAME: o.node,
    KPATCH_HOST_ROOT: o.root,
    KPATCH_LOADER: "sim",
    KUBECONFIG: o.kubeconfig,
    LOG_LEVEL: process.env.KLP_TEST_LOG ?? "info",
    RESYNC_SECONDS: "5",
    ...o.env,
  });
}

export interface OperatorProc extends Proc {
  readonly metricsPort: number;
  readonly healthPort: number;
}

/** operator/main.ts as a process, its metrics and health on free ports. */
export async function spawnOperator(o: { kubeconfig: string; namespace: string; podName: string; leaderElection: boolean; env?: Record<string, string> }): Promise<OperatorProc> {
  const [metricsPort, healthPort] = (await freePorts(2)) as [number, number];
  const p = spawnTs("operator/main.ts", {
    KUBECONFIG: o.kubeconfig,
    KLP_NAMESPACE: o.namespace,
    KLP_POD_NAME: o.podName,
    KLP_LEADER_ELECTION: String(o.leaderElection),
    KLP_METRICS_ADDR: `127.0.0.1:${metricsPort}`,
    KLP_HEALTH_ADDR: `127.0.0.1:${healthPort}`,
    KLP_LOG_LEVEL: process.env.KLP_TEST_LOG ?? "info",
    KLP_AGENT_LOADER: "sim",
    KLP_RESYNC_SECONDS: "10",
    ...o.env,
  });
  return { ...p, metricsPort, healthPort };
}

// ---------------------------------------------------------------------------------------------
// In this process, against any kubeconfig

/** The operator as main.ts builds it (no leader election), with test timings. */
export async function startOperatorAt(
  kubeconfig: string,
  overrides: Record<string, string>,
  timings: ControllerTimings = {},
  name = "operator",
): Promise<{ controller: Controller; metrics: OperatorMetrics; stop: () => Promise<void> }> {
  const cfg = loadOperatorConfig({ KLP_NAMESPACE: "kpatch-system", KLP_LEADER_ELECTION: "false", KLP_RESYNC_SECONDS: "10", KLP_AGENT_LOADER: "sim", ...overrides });
  const log = testLog(name);
  const metrics = operatorMetrics();
  const controller = new Controller({ connection: kubeconfigConnection(kubeconfig), cfg, log, metrics, timings });
  await controller.start();
  return { controller, metrics, stop: () => controller.stop() };
}

export interface InProcessAgent {
  readonly name: string;
  readonly root: string;
  readonly agent: Agent;
  readonly metrics: AgentMetrics;
  stop(): Promise<void>;
}

/** The agent as node-agent/main.ts builds it, in this process, with test timings. */
export async function startAgentAt(
  kubeconfig: string,
  o: { name: string; root: string; watchTimeoutSeconds?: number; requestTimeoutMs?: number; resyncMs?: number },
): Promise<InProcessAgent> {
  const log = testLog(o.name);
  const driver = createHostDriver({ hostRoot: o.root, loader: createLoader(o.root, "sim"), log });
  const http = new KubeHttp(kubeconfigConnection(kubeconfig), { requestTimeoutMs: o.requestTimeoutMs ?? 30_000 });
  const metrics = agentMetrics(o.name);
  const watch = { ...(o.watchTimeoutSeconds ? { timeoutSeconds: o.watchTimeoutSeconds } : {}), onRestart: metrics.watchRestart };
  const channel = nodeChannel(http, o.name, log, watch);
  const agent = new Agent({
    nodeName: o.name,
    driver,
    api: channel.api,
    sources: moduleSources({ http, imageModulesDir: path.join(o.root, ".images"), maxBytes: 64 << 20 }),
    log,
    metrics,
    resyncMs: o.resyncMs ?? 5_000,
  });
  const nodeWatch = watchOwnNode(http, o.name, (labels) => agent.updateNode(labels), log, watch);
  await Promise.all([nodeWatch.start(), channel.start((patches, fromObject) => agent.updatePatches(patches, fromObject))]);
  return {
    name: o.name,
    root: o.root,
    agent,
    metrics,
    async stop() {
      nodeWatch.stop();
      channel.stop();
      await agent.stop();
      http.close();
    },
  };
}

/** A copy of a kubeconfig whose server is `127.0.0.1:<port>` (a proxy in front of the API server). */
export async function kubeconfigVia(kubeconfig: string, port: number): Promise<string> {
  const text = await readFile(kubeconfig, "utf8");
  const out = path.join(path.dirname(kubeconfig), `via-${port}-${path.basename(kubeconfig)}`);
  await writeFile(out, text.replace(/server: https:\/\/127\.0\.0\.1:\d+/, `server: https://127.0.0.1:${port}`), { mode: 0o600 });
  return out;
}

export function serverPort(kubeconfig: string): number {
  const m = /server: https:\/\/127\.0\.0\.1:(\d+)/.exec(readFileSync(kubeconfig, "utf8"));
  if (!m) throw new Error(`no https://127.0.0.1:<port> server in ${kubeconfig}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------------------------------------
// HTTP endpoints and Prometheus text

export function httpGet(port: number, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get({ host: "127.0.0.1", port, path: urlPath, timeout: 5000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
  });
}

/** The value of one sample: `name` with exactly these labels (order-insensitive), else undefined. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    const want = Object.entries(labels);
    if (want.length === Object.keys(have).length && want.every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** The sum of every sample of `name` whose labels include `labels`. */
export function sampleSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
