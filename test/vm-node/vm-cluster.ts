// What a VM-node suite runs besides its guests: a control plane on this machine, the operator's node
// (a kubelet here, test/support/real-node.ts, tainted so that only the operator goes there) and the
// chart installed as its README says. The operator runs on this machine, not in a guest: under
// QEMU's software emulation a Node.js process in the guest is 10-20x slower, and the operator's lease
// renewals (10 s deadline) and startup probe failed in the guest when it shared the guest's two
// emulated CPUs with the agent, the kubelet and containerd.
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import type { KernelLivePatch } from "../../crds/schema.ts";
import { startControlPlane, type ControlPlane } from "../../scripts/dev/control-plane/index.ts";
import { CHART_DIR, helmClient, type Helm } from "../support/helm.ts";
import { ensureNodeTools, planNodeNetwork, realNodeApiServerArgs, realNodeSupport, startRealNode, type RealNode } from "../support/real-node.ts";
import { REPO, VM_CACHE, VmNodeUnavailable } from "../support/vm-node.ts";

export const NS = "kpatch-system";
export const AGENT_SELECTOR = "app.kubernetes.io/name=kpatch-agent";

export interface AgentPod {
  name: string;
  uid: string;
  phase: string;
  node: string;
  ready: boolean;
  deleting: boolean;
}

export interface VmCluster {
  readonly cp: ControlPlane;
  readonly helm: Helm;
  readonly kc: KubeConfig;
  /** The node on this machine where the operator runs. */
  readonly hostNode: RealNode;
  /** kubectl that must succeed: its stdout. */
  kubectl(args: string[], input?: string, timeoutMs?: number): Promise<string>;
  getJson<T>(args: string[]): Promise<T>;
  /** The patch as `kubectl get` serves it; undefined when it does not exist. */
  getPatch(name: string): Promise<KernelLivePatch | undefined>;
  /** Whether the Node's Ready condition is True. */
  nodeReady(name: string): Promise<boolean>;
  agentPods(): Promise<AgentPod[]>;
  /** The chart, as its README says (a namespace allowing privileged pods, helm install); its ms. */
  installChart(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Starts the control plane and the operator's node. Throws VmNodeUnavailable when a kubelet cannot
 * run on this machine (KLP_SKIP_REAL_NODE says so too).
 */
export async function startVmCluster(o: { hostNodeName: string; log: (line: string) => void }): Promise<VmCluster> {
  const support = process.env.KLP_SKIP_REAL_NODE ? ({ ok: false, reason: "KLP_SKIP_REAL_NODE is set" } as const) : await realNodeSupport();
  if (!support.ok) throw new VmNodeUnavailable(`the operator's real node cannot run here: ${support.reason}`);
  const tools = await ensureNodeTools(o.log);
  const network = await planNodeNetwork();
  // Upstream's node-monitor grace period (50 s): a reboot is seen as it would be in a cluster.
  // The API server advertises the real node's veth address (its pods reach the `kubernetes`
  // Service through kube-proxy); a guest reaches it through QEMU's forward of 10.0.0.1:443.
  const cp = await startControlPlane({ binDir: tools.binDir, log: (l) => o.log(`control plane: ${l}`), nodeMonitorGracePeriod: "50s", extraApiServerArgs: realNodeApiServerArgs(network) });
  let hostNode: RealNode | undefined;
  try {
    const helm = await helmClient({ binDir: cp.binDir, kubeconfig: cp.kubeconfigPath });
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    const kubectl = async (args: string[], input?: string, timeoutMs?: number): Promise<string> => {
      const r = await cp.kubectl(args, { ...(input === undefined ? {} : { input }), ...(timeoutMs ? { timeoutMs } : {}) });
      if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
      return r.stdout;
    };
    const getJson = async <T>(args: string[]): Promise<T> => JSON.parse(await kubectl([...args, "-o", "json"])) as T;

    // The operator's node: the operator image only, tainted so the agents' DaemonSet stays off it.
    const imageDir = path.join(VM_CACHE, "host-node-images");
    mkdirSync(imageDir, { recursive: true });
    const saved = await new Promise<string>((resolve, reject) =>
      execFile("bash", [path.join(REPO, "scripts/images/save.sh"), imageDir], { encoding: "utf8", maxBuffer: 16 << 20 }, (err, out, errOut) => (err ? reject(new Error(`save.sh: ${errOut}`)) : resolve(out))),
    );
    const operatorTar = saved.split("\n").find((l) => l.includes("kpatch-operator"));
    if (!operatorTar) throw new Error(`scripts/images/save.sh printed no operator image: ${saved}`);
    hostNode = await startRealNode({ name: o.hostNodeName, cp, tools, network, labels: { "klp-vm/role": "operator" }, images: [operatorTar], log: (l) => o.log(`operator node: ${l}`) });
    await kubectl(["taint", "node", o.hostNodeName, "klp-vm/operator-only=true:NoSchedule"]);
    const host = hostNode;

    return {
      cp, helm, kc, hostNode: host, kubectl, getJson,
      async getPatch(name) {
        const r = await cp.kubectl(["get", "klp", name, "-o", "json"]);
        if (r.code !== 0) {
          if (/NotFound/.test(r.stderr)) return undefined;
          throw new Error(r.stderr);
        }
        return JSON.parse(r.stdout) as KernelLivePatch;
      },
      async nodeReady(name) {
        const r = await cp.kubectl(["get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
        return r.code === 0 && r.stdout.trim() === "True";
      },
      async agentPods() {
        const list = await getJson<{ items: Array<{ metadata: { name: string; uid: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { phase?: string; containerStatuses?: Array<{ ready: boolean }> } }> }>(
          ["get", "pods", "-n", NS, "-l", AGENT_SELECTOR],
        );
        return list.items.map((p) => ({
          name: p.metadata.name, uid: p.metadata.uid, phase: p.status.phase ?? "", node: p.spec.nodeName ?? "",
          ready: p.status.containerStatuses?.every((c) => c.ready) ?? false, deleting: !!p.metadata.deletionTimestamp,
        }));
      },
      async installChart() {
        const t = Date.now();
        await kubectl(["create", "namespace", NS]);
        await kubectl(["label", "namespace", NS, "pod-security.kubernetes.io/enforce=privileged"]);
        await helm.ok([
          "install", "kpatch-operator", CHART_DIR, "-n", NS,
          "--set", "operator.image.tag=dev", "--set", "agent.image.tag=dev",
          // Imported at boot; never pulled (a missing image fails as ErrImageNeverPull).
          "--set", "operator.image.pullPolicy=Never", "--set", "agent.image.pullPolicy=Never",
          // The operator on the real node of this machine (see the top of this file).
          "--set", "operator.nodeSelector.klp-vm/role=operator",
          "--set-json", `operator.tolerations=[{"key":"klp-vm/operator-only","operator":"Exists","effect":"NoSchedule"}]`,
          "--wait", "--timeout", "10m",
        ]);
        const ms = Date.now() - t;
        const opPods = await getJson<{ items: Array<{ spec: { nodeName: string } }> }>(["get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=kpatch-operator"]);
        const where = opPods.items.map((p) => p.spec.nodeName);
        if (where.join() !== o.hostNodeName) throw new Error(`the operator runs on ${where.join(", ") || "no node"}, not ${o.hostNodeName}`);
        return ms;
      },
      async stop() {
        await host.stop().catch((e: unknown) => o.log(`operator node stop: ${String(e)}`));
        await cp.stop();
      },
    };
  } catch (e) {
    await hostNode?.stop().catch(() => {});
    await cp.stop();
    throw e;
  }
}
