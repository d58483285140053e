/**
 * `npm start`: the product, end to end, on this machine.
 *
 * With no cluster configured it starts a local control plane (etcd + kube-apiserver built from
 * the Go module proxy, cached), installs the CRD, runs the operator and a handful of simulated
 * nodes (the real agent code on simulated host trees, one node on another kernel release),
 * applies a sample patch and shows the rollout live until it is Ready. Ctrl-C stops everything.
 *
 * With KUBECONFIG set it runs the operator against that cluster instead (the CRD is applied
 * first; agents are scheduled by the operator's DaemonSet as in production). A KUBECONFIG whose
 * file does not exist is reported (and nothing is built or started).
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
import { pino, type Logger } from "pino";
import { GROUP, NODE_PLURAL, PLURAL, VERSION, type KernelLivePatch } from "../crds/schema.ts";
import { loadOperatorConfig } from "../operator/config.ts";
import { Controller } from "../operator/controller/controller.ts";
import { kubeconfigConnection } from "../kube/connection.ts";
import { operatorMetrics } from "../operator/metrics.ts";
import { buildSimModule } from "../node-agent/sim/build-module.ts";
import { layoutSimHost } from "../node-agent/sim/layout.ts";
import { startSimNode } from "../node-agent/sim/sim-node.ts";
import { controlPlaneBinaries, ensureBinaries, startControlPlane, type ControlPlane } from "./dev/control-plane/index.ts";
import { chooseCluster, missingKubeconfigMessage } from "./demo/cluster-choice.ts";

const REPO = path.resolve(import.meta.dirname, "..");
const RELEASE = "6.1.0-56-amd64";
const OTHER_RELEASE = "6.1.0-99-amd64";
const say = (s: string) => process.stdout.write(`${s}\n`);

const SAMPLE = "cve-2024-1086";
const SAMPLE_KEY = "livepatch-cve-2024-1086.ko";
const NAMESPACE = "kpatch-system";

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { "exit-when-ready": { type: "boolean" }, nodes: { type: "string", default: "4" } } });
  const choice = chooseCluster(process.env.KUBECONFIG, existsSync, path.delimiter);
  if (choice.kind === "missing") {
    process.stderr.write(`${missingKubeconfigMessage(choice)}\n`);
    process.exit(1);
  }
  if (choice.kind === "existing") return againstCluster(choice.kubeconfig);
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

/** What the embedded demo started, stopped in reverse order on Ctrl-C, SIGTERM, failure or Ready. */
class Running {
  private readonly stoppers: Array<() => Promise<void>> = [];
  private stopping = false;

  constructor(
    readonly cp: ControlPlane,
    readonly dir: string,
  ) {}

  add(stop: () => Promise<void>): void {
    this.stoppers.push(stop);
  }

  async stop(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    say("\nstopping: agents, operator, control plane");
    for (const s of this.stoppers.reverse()) await s().catch(() => undefined);
    await this.cp.stop();
    await rm(this.dir, { recursive: true, force: true });
    process.exit(code);
  }
}

async function embedded(nodeCount: number, exitWhenReady: boolean): Promise<void> {
  const started = Date.now();
  const running = await startLocalControlPlane(started);
  process.on("SIGINT", () => void running.stop(0));
  process.on("SIGTERM", () => void running.stop(0));
  try {
    const { cp } = running;
    await installCrds(cp);
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    // Quiet by default: the progress lines are the demo's output (LOG_LEVEL=info shows the components' JSON logs).
    const log = pino({ level: process.env.LOG_LEVEL ?? "error" });
    const sha256 = await publishSampleModule(kc.makeApiClient(CoreV1Api));
    running.add(await startOperator(cp, log));
    await startSimNodes(running, kc.makeApiClient(CoreV1Api), nodeCount, log);
    const custom = kc.makeApiClient(CustomObjectsApi);
    await applySamplePatch(custom, sha256);
    await watchRollout(custom, started);
    say(`\nReady after ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    say((await cp.kubectl(["get", "klp", "-o", "wide"])).stdout);
    if (exitWhenReady) return running.stop(0);
    say(`Still running: try \`KUBECONFIG=${cp.kubeconfigPath} kubectl get klp -o yaml\`, or change the patch. Ctrl-C stops everything.`);
  } catch (err) {
    say(`demo failed: ${(err as Error).message}`);
    await running.stop(1);
  }
}

/** The binaries the demo runs (built on a first run), then etcd and kube-apiserver, no controllers. */
async function startLocalControlPlane(started: number): Promise<Running> {
  say("No KUBECONFIG: starting a local control plane (etcd, kube-apiserver). `KUBECONFIG=<file> npm start` uses an existing cluster instead.");
  const binDir = await ensureBinaries(controlPlaneBinaries(false), (l) => say(`  ${l}`));
  const dir = await mkdtemp(path.join(tmpdir(), "kpatch-demo-"));
  const cp = await startControlPlane({ dir, binDir, controllers: false, log: () => undefined });
  say(`control plane up in ${Math.round((Date.now() - started) / 1000)} s; KUBECONFIG=${cp.kubeconfigPath}`);
  return new Running(cp, dir);
}

async function installCrds(cp: ControlPlane): Promise<void> {
  const crd = await cp.kubectl(["apply", "--server-side", "-f", path.join(REPO, "crds/livepatch.kpatch.dev_kernellivepatches.yaml"), "-f", path.join(REPO, "crds/livepatch.kpatch.dev_kernellivepatchnodes.yaml")]);
  if (crd.code !== 0) throw new Error(crd.stderr);
  await cp.kubectl(["wait", "--for=condition=Established", `crd/${PLURAL}.${GROUP}`, `crd/${NODE_PLURAL}.${GROUP}`, "--timeout=60s"]);
  await cp.kubectl(["create", "namespace", NAMESPACE]);
}

/** The sample module: a simulated livepatch built for the nodes' release, served from a ConfigMap. Returns its sha256. */
async function publishSampleModule(core: CoreV1Api): Promise<string> {
  const module = buildSimModule({ name: "livepatch_cve_2024_1086", vermagic: RELEASE });
  await core.createNamespacedConfigMap({ namespace: NAMESPACE, body: { metadata: { name: "patch-modules" }, binaryData: { [SAMPLE_KEY]: module.toString("base64") } } });
  return createHash("sha256").update(module).digest("hex");
}

/** The operator in this process; resolves with its stop. */
async function startOperator(cp: ControlPlane, log: Logger): Promise<() => Promise<void>> {
  const cfg = loadOperatorConfig({ KLP_NAMESPACE: NAMESPACE, KLP_LEADER_ELECTION: "false", KLP_LOG_LEVEL: "warn" });
  const controller = new Controller({ connection: kubeconfigConnection(cp.kubeconfigPath), cfg, log: log.child({ component: "operator" }), metrics: operatorMetrics() });
  await controller.start();
  return () => controller.stop();
}

/** `count` Node objects, each with an agent on a simulated host; the last on another kernel release. */
async function startSimNodes(running: Running, core: CoreV1Api, count: number, log: Logger): Promise<void> {
  for (let i = 1; i <= count; i++) {
    const name = `sim-node-${i}`;
    const release = i === count && count > 1 ? OTHER_RELEASE : RELEASE;
    const root = path.join(running.dir, "hosts", name);
    await layoutSimHost(root, { kernelRelease: release, transitionMs: 1500 });
    await core.createNode({ body: { metadata: { name, labels: { "kubernetes.io/hostname": name, "kpatch.dev/demo": "true" } } } });
    const node = await startSimNode({ name, root, kubeconfig: running.cp.kubeconfigPath, log: log.child({ component: "agent", node: name }) });
    running.add(() => node.stop());
    say(`node ${name}: simulated host ${root} (kernel ${release})`);
  }
}

async function applySamplePatch(custom: CustomObjectsApi, sha256: string): Promise<void> {
  await custom.createClusterCustomObject({
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    body: {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: "KernelLivePatch",
      metadata: { name: SAMPLE },
      spec: {
        description: "sample: nf_tables use-after-free fix, as a simulated module",
        cves: ["CVE-2024-1086"],
        modules: [{ kernelRelease: RELEASE, sha256, configMap: { namespace: NAMESPACE, name: "patch-modules", key: SAMPLE_KEY } }],
        nodeSelector: { matchLabels: { "kpatch.dev/demo": "true" } },
        rollout: { maxUnavailable: 2 },
      },
    },
  });
  say(`applied KernelLivePatch ${SAMPLE} (maxUnavailable 2)\n`);
}

/** One line per node whenever its phase changes, until the patch is Ready for its current generation. */
async function watchRollout(custom: CustomObjectsApi, started: number): Promise<void> {
  const seen = new Map<string, string>();
  for (;;) {
    const p = (await custom.getClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL, name: SAMPLE })) as KernelLivePatch;
    for (const e of p.status?.nodes ?? []) {
      const line = `${e.phase}${e.reason && e.phase !== "Loaded" ? ` (${e.reason})` : ""}`;
      if (seen.get(e.nodeName) === line) continue;
      seen.set(e.nodeName, line);
      const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
      say(`${t}s  ${e.nodeName.padEnd(12)} ${line.padEnd(28)} ${e.moduleName ?? ""} tainted=${e.tainted ?? "-"} (${e.taintFlags ?? ""})`);
    }
    const ready = p.status?.conditions?.find((c) => c.type === "Ready");
    if (ready?.status === "True" && p.status?.observedGeneration === p.metadata.generation) return;
    await new Promise((r) => setTimeout(r, 250));
  }
}

void main();
