/**
 * Helpers for integration tests against the shared control plane: the CRD, Node objects, the
 * operator and simulated agents (the real code, in this process), and a recorder of every status
 * update a patch goes through.
 */
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions, type V1DaemonSet } from "@kubernetes/client-node";
import { pino, type Logger } from "pino";
import { inject } from "vitest";
import { GROUP, NODE_OBJECTS_PATH, NODE_PLURAL, PLURAL, VERSION, type KernelLivePatch, type NodeEntry, type NodePatchEntry, type PatchOnNode } from "../../crds/schema.ts";
import { loadOperatorConfig, type OperatorConfig } from "../../operator/config.ts";
import { Controller } from "../../operator/controller/controller.ts";
import { operatorMetrics, type OperatorMetrics } from "../../operator/metrics.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { Agent } from "../../node-agent/loop/agent.ts";
import type { Action } from "../../node-agent/loop/plan.ts";
import { layoutSimHost } from "../../node-agent/sim/layout.ts";
import { startSimNode } from "../../node-agent/sim/sim-node.ts";
import { attachControlPlane, type ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";

export const REPO = path.resolve(import.meta.dirname, "../..");

export function testLog(name: string): Logger {
  return pino({ level: process.env.KLP_TEST_LOG ?? "silent", base: { test: name } });
}

export function kubeconfigPath(): string {
  return inject("kubeconfig");
}

export function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath());
  return kc;
}

export async function controlPlane(): Promise<ControlPlaneClient> {
  return attachControlPlane(inject("controlPlaneDir"));
}

export const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

export async function until<T>(what: string, f: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Installs the generated CRDs (KernelLivePatch, KernelLivePatchNode) and waits until they are established. */
export async function installCrd(cp: ControlPlaneClient): Promise<void> {
  const r = await cp.kubectl(["apply", "--server-side", "--force-conflicts", "-f", path.join(REPO, "crds/livepatch.kpatch.dev_kernellivepatches.yaml"), "-f", path.join(REPO, "crds/livepatch.kpatch.dev_kernellivepatchnodes.yaml")]);
  if (r.code !== 0) throw new Error(`CRD apply failed: ${r.stderr}`);
  const w = await cp.kubectl(["wait", "--for=condition=Established", "--timeout=60s", `crd/${PLURAL}.${GROUP}`, `crd/${NODE_PLURAL}.${GROUP}`]);
  if (w.code !== 0) throw new Error(`CRD not established: ${w.stderr}`);
}

export class Cluster {
  readonly kc = kubeConfig();
  readonly core = this.kc.makeApiClient(CoreV1Api);
  readonly apps = this.kc.makeApiClient(AppsV1Api);
  readonly custom = this.kc.makeApiClient(CustomObjectsApi);

  async createNode(name: string, labels: Record<string, string>, kernelVersion = "6.1.0-56-amd64"): Promise<void> {
    await this.core.createNode({ body: { metadata: { name, labels: { "kubernetes.io/hostname": name, ...labels } } } });
    const now = new Date();
    // A merge patch: the node lifecycle controller writes the Node too.
    await this.core.patchNodeStatus(
      {
      name,
      body: {
        status: {
          capacity: { cpu: "4", memory: "8Gi", pods: "110" },
          allocatable: { cpu: "4", memory: "8Gi", pods: "110" },
          conditions: [{ type: "Ready", status: "True", reason: "KubeletReady", message: "test node", lastHeartbeatTime: now, lastTransitionTime: now }],
          nodeInfo: {
            kernelVersion,
            architecture: "amd64",
            operatingSystem: "linux",
            osImage: "Debian GNU/Linux 12 (bookworm)",
            bootID: "",
            containerRuntimeVersion: "",
            kubeletVersion: "v1.37.2",
            kubeProxyVersion: "",
            machineID: "",
            systemUUID: "",
          },
        },
      },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
  }

  async deleteNode(name: string): Promise<void> {
    await this.core.deleteNode({ name }).catch(() => undefined);
  }

  async labelNode(name: string, labels: Record<string, string | null>): Promise<void> {
    const r = await (await controlPlane()).kubectl(["label", "node", name, "--overwrite", ...Object.entries(labels).map(([k, v]) => (v === null ? `${k}-` : `${k}=${v}`))]);
    if (r.code !== 0) throw new Error(r.stderr);
  }

  async createPatch(name: string, spec: Record<string, unknown>): Promise<void> {
    await this.custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      body: { apiVersion: `${GROUP}/${VERSION}`, kind: "KernelLivePatch", metadata: { name }, spec },
    });
  }

  async getPatch(name: string): Promise<KernelLivePatch | undefined> {
    try {
      return (await this.custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name })) as KernelLivePatch;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  async mergePatch(name: string, body: unknown): Promise<void> {
    const cp = await controlPlane();
    const r = await cp.kubectl(["patch", "klp", name, "--type=merge", "-p", JSON.stringify(body)]);
    if (r.code !== 0) throw new Error(r.stderr);
  }

  async deletePatch(name: string): Promise<void> {
    await this.custom.deleteClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name }).catch(() => undefined);
  }

  /** Removes the finalizer and deletes: test cleanup that does not wait for agents. */
  async forceDeletePatch(name: string): Promise<void> {
    const cp = await controlPlane();
    await cp.kubectl(["patch", "klp", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
    await this.deletePatch(name);
  }

  async daemonSet(namespace: string, name = "kpatch-agent"): Promise<V1DaemonSet | undefined> {
    try {
      return await this.apps.readNamespacedDaemonSet({ name, namespace });
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  async ensureNamespace(name: string): Promise<void> {
    await this.core.createNamespace({ body: { metadata: { name } } }).catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  }

  async putModuleConfigMap(namespace: string, name: string, files: Record<string, Uint8Array>): Promise<void> {
    await this.ensureNamespace(namespace);
    await this.core.deleteNamespacedConfigMap({ name, namespace }).catch(() => undefined);
    await this.core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name }, binaryData: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString("base64")])) },
    });
  }

  /** The nodes the rollout admits for the patch's current generation (see admittedIn), with the patch as read. */
  async admitted(name: string): Promise<{ patch: KernelLivePatch | undefined; admitted: string[] }> {
    const patch = await this.getPatch(name);
    const list = (await this.custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural: NODE_PLURAL })) as { items: NodeObjectSpec[] };
    return { patch, admitted: patch ? admittedIn(list.items, patch) : [] };
  }
}

/** What the admission tests read of a KernelLivePatchNode: the operator's projection. */
export interface NodeObjectSpec {
  readonly metadata: { readonly name: string };
  readonly spec?: { readonly patches?: readonly PatchOnNode[] };
}

/**
 * The nodes the rollout admits for this patch's current generation: those whose node object's
 * projection of it (its uid) says admitted for that generation. The projections are the record of
 * admission (the patch's status only counts them, status.rollout.admittedCount).
 */
export function admittedIn(nodeObjects: readonly NodeObjectSpec[], patch: KernelLivePatch): string[] {
  return nodeObjects
    .filter((o) => o.spec?.patches?.some((p) => p.name === patch.metadata.name && p.uid === patch.metadata.uid && p.generation === patch.metadata.generation && p.admitted))
    .map((o) => o.metadata.name)
    .sort();
}

/** Every node object, as the admission tests read them. */
export async function nodeObjects(http: KubeHttp): Promise<NodeObjectSpec[]> {
  return (await http.json<{ items: NodeObjectSpec[] }>("GET", NODE_OBJECTS_PATH)).items;
}

/** The patch's entry for the node as its status.nodes lists it (all of them in a fleet of at most 50 nodes). */
export function entryOf(p: KernelLivePatch | undefined, node: string): NodeEntry | undefined {
  return p?.status?.nodes?.find((e) => e.nodeName === node);
}

export function condition(p: KernelLivePatch | undefined, type: string): { status: string; reason: string; message: string } | undefined {
  return p?.status?.conditions?.find((c) => c.type === type);
}

/** The operator, as its main.ts builds it, in this process (without leader election). */
export async function startOperator(
  overrides: Record<string, string> = {},
  name = "operator",
): Promise<{ controller: Controller; cfg: OperatorConfig; metrics: OperatorMetrics; stop: () => Promise<void> }> {
  const cfg = loadOperatorConfig({ KLP_NAMESPACE: "kpatch-system", KLP_LEADER_ELECTION: "false", KLP_RESYNC_SECONDS: "30", ...overrides });
  const log = testLog(name);
  const metrics = operatorMetrics();
  const controller = new Controller({ connection: kubeconfigConnection(kubeconfigPath()), cfg, log, metrics });
  await controller.start();
  return { controller, cfg, metrics, stop: () => controller.stop() };
}

export interface SimNode {
  readonly name: string;
  readonly root: string;
  readonly agent: Agent;
  readonly actions: Array<{ patch: string; action: Action; outcome: string }>;
  stop(): Promise<void>;
}

/**
 * A simulated node: a host tree laid out for `kernelRelease` and the real agent loop on it,
 * talking to the API server through the agent's own HTTP client (admin credentials here; the
 * install suite runs agents with their chart's tokens).
 */
export async function startSimAgent(name: string, kernelRelease: string, opts: { transitionMs?: number; kubeconfig?: string; root?: string } = {}): Promise<SimNode> {
  const root = opts.root ?? (await mkdtemp(path.join(tmpdir(), `klp-${name}-`)));
  if (!opts.root) await layoutSimHost(root, { kernelRelease, transitionMs: opts.transitionMs ?? 300 });
  const actions: SimNode["actions"] = [];
  const node = await startSimNode({
    name,
    root,
    kubeconfig: opts.kubeconfig ?? kubeconfigPath(),
    log: testLog(name),
    resyncMs: 5_000,
    onAction: (patch, action, outcome) => actions.push({ patch, action, outcome }),
  });
  return { name, root, agent: node.agent, actions, stop: () => node.stop() };
}

export async function removeTree(root: string): Promise<void> {
  await rm(root, { recursive: true, force: true });
}

/** A recorded version: the patch, its entries from every node object, and the nodes admitted then. */
export type RecordedVersion = KernelLivePatch & { readonly admitted: readonly string[] };

/**
 * Every version of a patch as the tests reason about it: the patch's own status (conditions,
 * summary) with `status.nodes` as the agents wrote them, version by version, into their
 * KernelLivePatchNodes, every node's (the operator's roll-up coalesces, so a short Loading may
 * never show on the patch itself, and lists at most 50 nodes), and `admitted`: the nodes the
 * projections admit for the patch's generation then. A node's last entry is kept after its node
 * object goes.
 */
export async function recordStatus(
  name: string,
  o: { kubeconfig?: string; requestTimeoutMs?: number; watchTimeoutSeconds?: number } = {},
): Promise<{ versions: RecordedVersion[]; stop: () => void }> {
  const http = new KubeHttp(kubeconfigConnection(o.kubeconfig ?? kubeconfigPath()), o.requestTimeoutMs ? { requestTimeoutMs: o.requestTimeoutMs } : {});
  const timeouts = o.watchTimeoutSeconds ? { timeoutSeconds: o.watchTimeoutSeconds } : {};
  const versions: RecordedVersion[] = [];
  const { Watcher } = await import("../../node-agent/kube/watcher.ts");
  let patch: KernelLivePatch | undefined;
  const entries = new Map<string, NodeEntry>();
  const projections = new Map<string, NodeObjectSpec>();
  const push = () => {
    if (!patch) return;
    const nodes = [...entries.values()].sort((a, b) => a.nodeName.localeCompare(b.nodeName));
    versions.push(structuredClone({ ...patch, status: { ...patch.status, nodes }, admitted: admittedIn([...projections.values()], patch) }));
  };
  const patchWatch = new Watcher(http, {
    path: `/apis/${GROUP}/${VERSION}/${PLURAL}`,
    query: { fieldSelector: `metadata.name=${name}` },
    ...timeouts,
    onChange: (m) => {
      const p = m.get(name) as KernelLivePatch | undefined;
      if (!p || p.metadata.resourceVersion === patch?.metadata.resourceVersion) return;
      patch = p;
      push();
    },
  });
  const nodeWatch = new Watcher(http, {
    path: `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}`,
    ...timeouts,
    onChange: (m) => {
      let changed = false;
      for (const node of [...projections.keys()].filter((n) => !m.has(n))) {
        projections.delete(node);
        changed = true;
      }
      for (const [node, o] of m) {
        const projected = o as NodeObjectSpec;
        const mine = (x: NodeObjectSpec | undefined) => JSON.stringify(x?.spec?.patches?.find((p) => p.name === name) ?? null);
        if (mine(projections.get(node)) !== mine(projected)) changed = true;
        projections.set(node, { metadata: { name: node }, ...(projected.spec ? { spec: projected.spec } : {}) });
        const e = (o as { status?: { entries?: NodePatchEntry[] } }).status?.entries?.find((x) => x.patch === name && (!patch || !x.patchUID || x.patchUID === patch.metadata.uid));
        if (!e) continue;
        const { patch: _p, patchUID: _u, ...entry } = e;
        const before = entries.get(node);
        if (before && JSON.stringify(before) === JSON.stringify({ ...entry, nodeName: node })) continue;
        entries.set(node, { ...entry, nodeName: node });
        changed = true;
      }
      if (changed) push();
    },
  });
  await Promise.all([patchWatch.start(), nodeWatch.start()]);
  return {
    versions,
    stop: () => {
      patchWatch.stop();
      nodeWatch.stop();
      http.close();
    },
  };
}
