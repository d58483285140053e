/**
 * `npm start`: the product, end to end, on this machine.
 *
 * With no cluster configured it starts a local control plane (etcd + kube-apiserver built from
 * the Go module proxy, cached), installs the CRD, runs the operator and a handful of simulated
 * nodes (the real agent code on simulated host trees, one node on another kernel release),
 * applies a sample patch and shows the rollout live until it is Ready. Ctrl-C stops everything.
 *
 * With KUBECONFIG set it runs the operator against that cluster instead (the CRD is applied
 * first; agents are scheduled by the operator's DaemonSet as in production).
 *
 * Flags: --exit-when-ready (stop once the sample is Ready; used by the demo's own test),
 *        --nodes N (simulated nodes, default 4).
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { CoreV1Api, CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { GROUP, NODE_PLURAL, PLURAL, VERSION, type KernelLivePatch } from "../crds/schema.ts";
import { loadOperatorConfig } from "../operator/config.ts";
import { Controller } from "../operator/controller/controller.ts";
import { kubeconfigConnection } from "../kube/connection.ts";
import { operatorMetrics } from "../operator/metrics.ts";
import { buildSimModule } from "../node-agent/sim/build-module.ts";
import { layoutSimHost } from "../node-agent/sim/layout.ts";
import { startSimNode } from "../node-agent/sim/sim-node.ts";
import { ensureBinaries, startControlPlane, type ControlPlane } from "../test/support/control-plane.ts";

const REPO = path.resolve(import.meta.dirname, "..");
const RELEASE = "6.1.0-56-amd64";
const OTHER_RELEASE = "6.1.0-99-amd64";
const say = (s: string) => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { "exit-when-ready": { type: "boolean" }, nodes: { type: "string", default: "4" } } });
  if (process.env.KUBECONFIG && existsSync(process.env.KUBECONFIG)) return againstCluster(process.env.KUBECONFIG);
  await embedded(Number(values.nodes), values["exit-when-ready"] ?? false);
}

/** KUBECONFIG set: apply the CRD and run the operator against that cluster. */
async function againstCluster(kubeconfig: string): Promise<void> {
  say(`KUBECONFIG=${kubeconfig}: applying the CRD and running the operator against that cluster`);
  const kubectl = spawn("kubectl", ["apply", "--server-side", "-f", path.join(REPO, "crds")], { stdio: "inherit" });
  await new Promise((r) => kubectl.on("exit", r));
  const op = spawn(process.execPath, ["--import", "tsx", path.join(REPO, "operator/main.ts")], { stdio: "inherit", env: process.env });
  process.on("SIGINT", () => op.kill("SIGTERM"));
  await new Promise((r) => op.on("exit", r));
}

async function embedded(nodeCount: number, exitWhenReady: boolean): Promise<void> {
  const started = Date.now();
  say("No KUBECONFIG: starting a local control plane (the first run builds Kubernetes from the Go module proxy, ~20 min; later runs reuse the cache)");
  const binDir = await ensureBinaries((l) => say(`  ${l}`));
  const dir = await mkdtemp(path.join(tmpdir(), "kpatch-demo-"));
  const cp: ControlPlane = await startControlPlane({ dir, binDir, controllers: false, log: () => undefined });
  say(`control plane up in ${Math.round((Date.now() - started) / 1000)} s; KUBECONFIG=${cp.kubeconfigPath}`);

  const stoppers: Array<() => Promise<void>> = [];
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("\nstopping: agents, operator, control plane");
    for (const s of stoppers.reverse()) await s().catch(() => undefined);
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));

  try {
    const crd = await cp.kubectl(["apply", "--server-side", "-f", path.join(REPO, "crds/livepatch.kpatch.dev_kernellivepatches.yaml"), "-f", path.join(REPO, "crds/livepatch.kpatch.dev_kernellivepatchnodes.yaml")]);
    if (crd.code !== 0) throw new Error(crd.stderr);
    await cp.kubectl(["wait", "--for=condition=Established", `crd/${PLURAL}.${GROUP}`, `crd/${NODE_PLURAL}.${GROUP}`, "--timeout=60s"]);
    await cp.kubectl(["create", "namespace", "kpatch-system"]);

    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    // Quiet by default: the progress lines are the demo's output (LOG_LEVEL=info shows the components' JSON logs).
    const log = pino({ level: process.env.LOG_LEVEL ?? "error" });

    // The sample module: a simulated livepatch built for the nodes' release, served from a ConfigMap.
    const module = buildSimModule({ name: "livepatch_cve_2024_1086", vermagic: RELEASE });
    const sha256 = createHash("sha256").update(module).digest("hex");
    await core.createNamespacedConfigMap({ namespace: "kpatch-system", body: { metadata: { name: "patch-modules" }, binaryData: { "livepatch-cve-2024-1086.ko": module.toString("base64") } } });

    const cfg = loadOperatorConfig({ KLP_NAMESPACE: "kpatch-system", KLP_LEADER_ELECTION: "false", KLP_LOG_LEVEL: "warn" });
    const controller = new Controller({ connection: kubeconfigConnection(cp.kubeconfigPath), cfg, log: log.child({ component: "operator" }), metrics: operatorMetrics() });
    await controller.start();
    stoppers.push(() => controller.stop());

    for (let i = 1; i <= nodeCount; i++) {
      const name = `sim-node-${i}`;
      const release = i === nodeCount && nodeCount > 1 ? OTHER_RELEASE : RELEASE;
      const root = path.join(dir, "hosts", name);
      await layoutSimHost(root, { kernelRelease: release, transitionMs: 1500 });
      await core.createNode({ body: { metadata: { name, labels: { "kubernetes.io/hostname": name, "kpatch.dev/demo": "true" } } } });
      const node = await startSimNode({ name, root, kubeconfig: cp.kubeconfigPath, log: log.child({ component: "agent", node: name }) });
      stoppers.push(() => node.stop());
      say(`node ${name}: simulated host ${root} (kernel ${release})`);
    }

    const custom = kc.makeApiClient(CustomObjectsApi);
    await custom.createClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: "KernelLivePatch",
        metadata: { name: "cve-2024-1086" },
        spec: {
          description: "sample: nf_tables use-after-free fix, as a simulated module",
          cves: ["CVE-2024-1086"],
          modules: [{ kernelRelease: RELEASE, sha256, configMap: { namespace: "kpatch-system", name: "patch-modules", key: "livepatch-cve-2024-1086.ko" } }],
          nodeSelector: { matchLabels: { "kpatch.dev/demo": "true" } },
          rollout: { maxUnavailable: 2 },
        },
      },
    });
    say("applied KernelLivePatch cve-2024-1086 (maxUnavailable 2)\n");

    const seen = new Map<string, string>();
    for (;;) {
      const p = (await custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name: "cve-2024-1086" })) as KernelLivePatch;
      for (const e of p.status?.nodes ?? []) {
        const line = `${e.phase}${e.reason && e.phase !== "Loaded" ? ` (${e.reason})` : ""}`;
        if (seen.get(e.nodeName) !== line) {
          seen.set(e.nodeName, line);
          const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
          say(`${t}s  ${e.nodeName.padEnd(12)} ${line.padEnd(28)} ${e.moduleName ?? ""} tainted=${e.tainted ?? "-"} (${e.taintFlags ?? ""})`);
        }
      }
      const ready = p.status?.conditions?.find((c) => c.type === "Ready");
      if (ready?.status === "True" && p.status?.observedGeneration === p.metadata.generation) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    say(`\nReady after ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    say((await cp.kubectl(["get", "klp", "-o", "wide"])).stdout);
    if (exitWhenReady) return stop(0);
    say(`Still running: try \`KUBECONFIG=${cp.kubeconfigPath} kubectl get klp -o yaml\`, or change the patch. Ctrl-C stops everything.`);
  } catch (err) {
    say(`demo failed: ${(err as Error).message}`);
    await stop(1);
  }
}

void main();
