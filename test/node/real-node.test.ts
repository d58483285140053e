// The chart's pods under a real kubelet, end to end. One real node (test/support/real-node.ts:
// kubelet + containerd + runc + kube-proxy in its own network namespace) runs the operator and the
// agent pods from the images built by scripts/images/build.sh, imported into its containerd; two
// more Nodes are served by simulated agents in this process (tainted so that the DaemonSet puts no
// pod there). The agent on the real node works on a simulated host tree made by the CLI, reached
// through the chart's `agent.hostRoot` / `agent.loader: sim`, never on this machine's kernel.
// Where this machine cannot run a kubelet the global setup says why and this file skips.
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import type { KernelLivePatch } from "../../crds/schema.ts";
import { desiredAgentDaemonSet } from "../../operator/agents/daemonset.ts";
import { loadOperatorConfig } from "../../operator/config.ts";
import { readSimState } from "../../node-agent/sim/sim-files.ts";
import { attachControlPlane, type ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { AGENT_IMAGE, OPERATOR_IMAGE, buildImages, ensureDockerEngine } from "../support/docker.ts";
import { CHART_DIR, helmClient, setArgs, type Helm } from "../support/helm.ts";
import { Cluster, entryOf, recordStatus, startSimAgent, type SimNode } from "../support/klp.ts";
import { ALERTS_FILE, ensurePrometheusTools } from "../support/prometheus-tools.ts";
import { startRealNode, type NodeNetwork, type NodeTools, type RealNode } from "../support/real-node.ts";
import { cli, eventually as waitFor, kubectlOf, namespaceState } from "./harness.ts";
import { dashboardQueries, scrapeJobsFrom, startPrometheus, type PodInfo } from "./prometheus-scrape.ts";

const unavailable = inject("realNodeUnavailable");
if (unavailable) console.warn(`[real-node] skipping: this machine cannot run a kubelet: ${unavailable}`);

const REPO = path.resolve(import.meta.dirname, "../..");
const RELEASE = "6.1.0-56-amd64";
const suffix = `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;
const ns = "kpatch-system";
const release = "kpatch-operator";
const realNodeName = `real-${suffix}`;
const simNodeNames = [`sim-a-${suffix}`, `sim-b-${suffix}`];
const targetLabel = { "klp-e2e": suffix };
const patchName = `e2e-${suffix}`;
const moduleName = `klp_e2e_${suffix.replace(/[^a-z0-9]/g, "")}`;
// The module image: FROM scratch with the .ko alone (scripts/images/module-image.sh).
const imagePatchName = `e2e-img-${suffix}`;
const imageModuleName = `klp_img_${suffix.replace(/[^a-z0-9]/g, "")}`;
const moduleImageRepo = `docker.io/library/klp-e2e-module-${suffix}`;
const MODULE_IMAGE_PATH = "/modules/livepatch.ko";
const COPY_UID = 65532;

let cp: ControlPlaneClient;
let helm: Helm;
let node: RealNode | undefined;
let work: string;
let hostRoot: string;
let moduleSha: string;
let imageModuleSha: string;
let moduleImageTar: string;
/** The module image as containerd named it on import: <repo>@sha256:<manifest digest>. */
let moduleImageRef: string;
const sims: SimNode[] = [];
let recorder: Awaited<ReturnType<typeof recordStatus>> | undefined;
let loadedAtVersion = -1;
const figures: Record<string, unknown> = {};
const cluster = () => new Cluster();

// ---------------------------------------------------------------------------------------------
// helpers

const kubectl = (args: string[], input?: string, timeoutMs?: number): Promise<string> => kubectlOf(cp)(args, input, timeoutMs);
const kubectlJson = <T = any>(args: string[]): Promise<T> => kubectlOf(cp).json<T>(args);
const eventually = <T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false>): Promise<T> =>
  waitFor(what, timeoutMs, fn, async () => `${await namespaceState(cp, ns)}\n${(await node?.describe(15)) ?? ""}`);

function runScript(script: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [path.join(REPO, script), ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (err = (err + c).slice(-8000)));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${script} exited ${code}: ${err}`))));
  });
}

async function getPatch(): Promise<KernelLivePatch | undefined> {
  const r = await cp.kubectl(["get", "klp", patchName, "-o", "json"]);
  return r.code === 0 ? (JSON.parse(r.stdout) as KernelLivePatch) : undefined;
}

async function agentPods(): Promise<any[]> {
  const list = await kubectlJson<{ items: any[] }>(["get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=kpatch-agent", "--field-selector", `spec.nodeName=${realNodeName}`]);
  return list.items;
}

/** The agent pod on the real node once it is Running with its container ready. */
async function runningAgentPod(timeoutMs = 120_000, not?: { name?: string; restarts?: number }): Promise<any> {
  return eventually(`a running agent pod on ${realNodeName}`, timeoutMs, async () => {
    const pods = (await agentPods()).filter((p) => !p.metadata.deletionTimestamp && p.metadata.name !== not?.name);
    const p = pods.find((x) => x.status?.phase === "Running" && x.status?.containerStatuses?.[0]?.ready === true);
    if (!p) return undefined;
    if (not?.restarts !== undefined && (p.status.containerStatuses[0].restartCount ?? 0) <= not.restarts) return undefined;
    return p;
  });
}

const simState = () => readSimState(hostRoot);
const stagedPath = () => path.join(hostRoot, "var/lib/kpatch", RELEASE, `${moduleName}.ko`);

/** The module is live in the simulated kernel of the real node, loaded exactly once since boot. */
async function expectLoadedOnce(): Promise<void> {
  const st = await simState();
  const m = st.modules.find((x) => x.name === moduleName);
  expect(m, JSON.stringify(st.modules)).toBeDefined();
  expect(await readFile(path.join(hostRoot, "sys/kernel/livepatch", moduleName, "enabled"), "utf8")).toBe("1\n");
  expect(st.insmods[moduleName]).toBe(1);
  expect(existsSync(stagedPath())).toBe(true);
}

/** Every status version since the entry first said Loaded says Loaded (no regression, no gap). */
function expectEntryStayedLoaded(): void {
  const versions = recorder!.versions;
  expect(loadedAtVersion).toBeGreaterThanOrEqual(0);
  const phases = versions.slice(loadedAtVersion).map((v) => entryOf(v, realNodeName)?.phase ?? "(none)");
  expect(phases.filter((p) => p !== "Loaded"), `phases of ${realNodeName} since Loaded: ${phases.join(" ")}`).toEqual([]);
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(!!unavailable)("the chart on a real node", () => {
  beforeAll(async () => {
    cp = await attachControlPlane(inject("controlPlaneDir"));
    helm = await helmClient({ binDir: inject("binDir"), kubeconfig: inject("kubeconfig") });
    const tools = JSON.parse(inject("realNodeTools")) as NodeTools;
    const network = JSON.parse(inject("realNodeNetwork")) as NodeNetwork;
    work = await mkdtemp(path.join(os.tmpdir(), "klp-e2e-"));

    // The images, built by the project's script and moved into the node's containerd as tarballs.
    const engine = await ensureDockerEngine();
    if (!engine.ok) throw new Error(`the real-node suite needs the images and no container engine can build them: ${engine.reason}`);
    let t = performance.now();
    await buildImages(["operator", "agent"]);
    const imageDir = path.join(work, "images");
    await mkdir(imageDir);
    const tars = (await runScript("scripts/images/save.sh", [imageDir])).split("\n").filter((l) => l.endsWith(".tar"));
    expect(tars).toHaveLength(2);
    figures.imagesBuildAndSaveMs = Math.round(performance.now() - t);

    // The simulated host the real node's agent works on, and the patch module: the CLI's own verbs.
    hostRoot = path.join(work, "host");
    await cli(["--host-root", hostRoot, "sim-host", "init", "--kernel-release", RELEASE, "--transition-ms", "300"]);
    const ko = path.join(work, `${moduleName}.ko`);
    await cli(["--host-root", hostRoot, "sim-host", "make-module", "--name", moduleName, "--vermagic", RELEASE, "-o", ko]);
    moduleSha = createHash("sha256").update(await readFile(ko)).digest("hex");
    const imageKo = path.join(work, `${imageModuleName}.ko`);
    await cli(["--host-root", hostRoot, "sim-host", "make-module", "--name", imageModuleName, "--vermagic", RELEASE, "-o", imageKo]);
    imageModuleSha = createHash("sha256").update(await readFile(imageKo)).digest("hex");
    moduleImageTar = path.join(work, "module-image.tar");
    await runScript("scripts/images/module-image.sh", [imageKo, MODULE_IMAGE_PATH, `${moduleImageRepo}:e2e`, moduleImageTar]);

    t = performance.now();
    node = await startRealNode({ name: realNodeName, cp, tools, network, labels: targetLabel, images: tars, log: (l) => process.stderr.write(`[real-node] ${l}\n`) });
    figures.nodeStartMs = Math.round(performance.now() - t);
    figures.nodeStartPhasesMs = node.timings;
    // The module image goes in under its digest too, as a registry pull by digest would leave it.
    const imported = await node.ctr(["images", "import", "--digests", "--base-name", moduleImageRepo, moduleImageTar]);
    if (imported.code !== 0) throw new Error(`ctr images import ${moduleImageTar}: ${imported.stderr}${imported.stdout}`);
    const names = (await node.ctr(["images", "ls", "-q"])).stdout.split("\n");
    const pinned = names.find((n) => n.startsWith(`${moduleImageRepo}@sha256:`));
    if (!pinned) throw new Error(`no digest name for the module image among ${names.join(" ")}`);
    moduleImageRef = pinned;
    await rm(imageDir, { recursive: true, force: true });
  }, 1_200_000);

  afterAll(async () => {
    recorder?.stop();
    for (const s of sims) await s.stop().catch(() => undefined);
    if (Object.keys(figures).length) process.stderr.write(`[real-node] figures ${JSON.stringify(figures, null, 2)}\n`);
    await node?.stop();
    // The Node object outlives its kubelet: left NotReady, the scheduler could still pick it for a later file's pods.
    if (node) await cp.kubectl(["delete", "node", realNodeName, "--wait=false"]);
    if (work) await rm(work, { recursive: true, force: true });
  }, 120_000);

  it("registers a Ready Node with a routable InternalIP, authenticated as system:node:<name>", async () => {
    const n = await kubectlJson(["get", "node", realNodeName]);
    expect(n.status.addresses).toContainEqual({ type: "InternalIP", address: node!.network.nodeIp });
    expect(n.metadata.labels).toMatchObject(targetLabel);
    expect(n.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\/1\./);
    expect(n.status.nodeInfo.kubeletVersion).toBe("v1.37.2");
    // The API server runs with the Node authorizer and NodeRestriction (scripts/dev/control-plane/args.ts defaults):
    // another node's identity may not touch this Node, and this node's may not set a label
    // reserved for the cluster's admins.
    const other = await cp.kubectl(["label", "node", realNodeName, "klp-e2e-probe=1"], { kubeconfig: (await cp.issueClientCert(`system:node:someone-else`, ["system:nodes"])).kubeconfigPath });
    expect(other.code).not.toBe(0);
    expect(other.stderr).toMatch(/forbidden/i);
    const own = await cp.kubectl(["label", "node", realNodeName, "node-restriction.kubernetes.io/klp-probe=1"], { kubeconfig: (await cp.issueClientCert(`system:node:${realNodeName}`, ["system:nodes"])).kubeconfigPath });
    expect(own.code).not.toBe(0);
    expect(own.stderr).toMatch(/not allowed to modify labels/i);
    const args = (await readFile(`/proc/${await apiServerPid()}/cmdline`, "utf8")).split("\0");
    expect(args).toContain("--authorization-mode=Node,RBAC");
    expect(args).toContain("--enable-admission-plugins=NodeRestriction");
  });

  it("helm install: the operator pod starts on the real node, passes its readiness probe and holds the Lease", async () => {
    await kubectl(["create", "namespace", ns]);
    await kubectl(["label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged"]);
    const [opRepo, opTag] = OPERATOR_IMAGE.split(":");
    const [agRepo, agTag] = AGENT_IMAGE.split(":");
    const t = performance.now();
    await helm.ok([
      "install", release, CHART_DIR, "-n", ns,
      ...setArgs({
        "operator.image.repository": opRepo!, "operator.image.tag": opTag!, "operator.image.pullPolicy": "Never",
        "agent.image.repository": agRepo!, "agent.image.tag": agTag!, "agent.image.pullPolicy": "Never",
        "agent.hostRoot": hostRoot, "agent.loader": "sim", "operator.logLevel": "debug",
      }),
    ]);
    await kubectl(["rollout", "status", `deployment/${release}`, "-n", ns, "--timeout=180s"], undefined, 200_000);
    figures.helmInstallToOperatorReadyMs = Math.round(performance.now() - t);

    const pods = (await kubectlJson<{ items: any[] }>(["get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=kpatch-operator"])).items;
    expect(pods).toHaveLength(1);
    const pod = pods[0];
    expect(pod.spec.nodeName).toBe(realNodeName);
    expect(pod.status.conditions.find((c: any) => c.type === "Ready")?.status).toBe("True");
    expect(pod.status.podIP).toMatch(/^10\.244\.0\./);
    // Where the time went (the API's timestamps have 1 s resolution).
    const at = (type: string) => Date.parse(pod.status.conditions.find((c: any) => c.type === type)?.lastTransitionTime);
    const started = Date.parse(pod.status.containerStatuses[0].state.running.startedAt);
    figures.operatorPodTimelineS = {
      createdToScheduled: (at("PodScheduled") - Date.parse(pod.metadata.creationTimestamp)) / 1000,
      scheduledToContainerStarted: (started - at("PodScheduled")) / 1000,
      containerStartedToReady: (at("Ready") - started) / 1000,
    };
    // The readiness probe really ran (the kubelet reached /readyz on the pod IP): Ready after start.
    expect(pod.spec.containers[0].readinessProbe.httpGet.path).toBe("/readyz");
    const lease = await eventually("the operator's Lease", 60_000, async () => {
      const r = await cp.kubectl(["get", "lease", "kpatch-operator", "-n", ns, "-o", "json"]);
      const l = r.code === 0 ? JSON.parse(r.stdout) : undefined;
      return l?.spec?.holderIdentity ? l : undefined;
    });
    expect(lease.spec.holderIdentity).toContain(pod.metadata.name);
  });

  it("a KernelLivePatch applied with kubectl becomes Ready: the agent pod on the real node loads it, the simulated nodes too", async () => {
    // Two Nodes served by agents in this process, tainted so the DaemonSet leaves them alone.
    const c = cluster();
    for (const name of simNodeNames) {
      await c.createNode(name, targetLabel, RELEASE);
      await kubectl(["taint", "node", name, "klp-e2e/simulated=true:NoSchedule"]);
      sims.push(await startSimAgent(name, RELEASE));
    }
    const ko = await readFile(path.join(work, `${moduleName}.ko`));
    await c.putModuleConfigMap(ns, "patch-modules", { [`${moduleName}.ko`]: ko });
    recorder = await recordStatus(patchName);

    const manifest = {
      apiVersion: "livepatch.kpatch.dev/v1alpha1",
      kind: "KernelLivePatch",
      metadata: { name: patchName },
      spec: {
        state: "Loaded",
        cves: ["CVE-2024-1086"],
        modules: [{ kernelRelease: RELEASE, sha256: moduleSha, configMap: { namespace: ns, name: "patch-modules", key: `${moduleName}.ko` } }],
        nodeSelector: { matchLabels: targetLabel },
        rollout: { maxUnavailable: "100%" },
      },
    };
    const t = performance.now();
    await kubectl(["apply", "-f", "-"], JSON.stringify(manifest));
    const wait = await cp.kubectl(["wait", "--for=condition=Ready", `klp/${patchName}`, "--timeout=240s"], { timeoutMs: 260_000 });
    figures.applyToPatchReadyMs = Math.round(performance.now() - t);
    if (wait.code !== 0) throw new Error(`kubectl wait klp/${patchName} failed: ${wait.stderr}\n${JSON.stringify((await getPatch())?.status, null, 2)}\n${await node!.describe(15)}`);

    const p = (await getPatch())!;
    for (const n of [realNodeName, ...simNodeNames]) expect(entryOf(p, n)?.phase, n).toBe("Loaded");
    expect(entryOf(p, realNodeName)).toMatchObject({ kernelRelease: RELEASE, enabled: true });
    expect(p.status?.summary).toMatchObject({ loaded: 3 });
    // The DaemonSet has a pod on the real node only.
    const ds = await kubectlJson(["get", "ds", "kpatch-agent", "-n", ns]);
    expect(ds.status.desiredNumberScheduled).toBe(1);
    const pod = await runningAgentPod();
    expect(pod.spec.volumes.find((v: any) => v.name === "host-kpatch").hostPath.path).toBe(`${hostRoot}/var/lib/kpatch`);
    await expectLoadedOnce();

    // The watch may trail `kubectl wait` by an event or two.
    loadedAtVersion = await eventually("the recorded Loaded entry", 15_000, async () => {
      const i = recorder!.versions.findIndex((v) => entryOf(v, realNodeName)?.phase === "Loaded");
      return i >= 0 ? i : undefined;
    });
  }, 300_000);

  it("a real Prometheus configured from the chart's PodMonitors scrapes the operator and the agent: each node's patch state and taint, the CVE counts, every dashboard query; the chart's rules load and stay quiet", async () => {
    const t = performance.now();
    const prometheus = await scrapeWithPrometheus();
    try {
      const byNode = (expr: string) => prometheus.query(`${expr} * on (instance) group_left (node) kpatch_agent_node_info`);
      // Each scraped node's patch state and kernel taint (the agent's metrics, joined to its node).
      const state = await byNode(`kpatch_agent_patch_phase{patch="${patchName}"}`);
      expect(state.map((s) => [s.metric.node, s.metric.phase, s.value[1]])).toEqual([[realNodeName, "Loaded", "1"]]);
      const taint = await byNode(`kpatch_agent_kernel_taint_flag{flag="K"}`);
      expect(taint.map((s) => [s.metric.node, s.value[1]])).toEqual([[realNodeName, "1"]]);
      const live = await byNode(`kpatch_agent_patch_live{patch="${patchName}"}`);
      expect(live.map((s) => [s.metric.node, s.metric.module, s.value[1]])).toEqual([[realNodeName, moduleName, "1"]]);
      // The operator's view of the patch: its three targeted nodes Loaded, and fixed for its CVE.
      const loaded = await prometheus.query(`kpatch_patch_nodes{patch="${patchName}",phase="Loaded"}`);
      expect(loaded.map((s) => s.value[1])).toEqual(["3"]);
      const cve = await prometheus.query(`kpatch_patch_cve_nodes{patch="${patchName}",cve="CVE-2024-1086"}`);
      expect(Object.fromEntries(cve.map((s) => [s.metric.state, s.value[1]]))).toEqual({ fixed: "3", exposed: "0", not_applicable: "0" });
      const fleet = await prometheus.query(`kpatch_cve_nodes{cve="CVE-2024-1086"}`);
      expect(Object.fromEntries(fleet.map((s) => [s.metric.state, s.value[1]]))).toEqual({ fixed: "3", exposed: "0", not_applicable: "0" });
      // Every query of the chart's dashboard returns data (a rate() once two scrapes are in).
      const queries = dashboardQueries(prometheus.dashboard);
      expect(queries.length).toBeGreaterThanOrEqual(10);
      const empty = await eventually("every dashboard query returning data", 30_000, async () => {
        const none: string[] = [];
        for (const q of queries) if ((await prometheus.query(q.expr)).length === 0) none.push(`${q.panel}: ${q.expr}`);
        return none.length === 0 ? none : undefined;
      });
      expect(empty).toEqual([]);
      // The chart's alert rules, evaluated by this Prometheus: all healthy, none pending or firing.
      const alerts = (parse(await readFile(ALERTS_FILE, "utf8")) as { groups: Array<{ rules: Array<{ alert: string }> }> }).groups.flatMap((g) => g.rules.map((r) => r.alert));
      const rules = await eventually("the rules evaluated", 30_000, async () => {
        const r = await prometheus.api<{ groups: Array<{ rules: Array<{ name: string; health: string; lastError?: string }> }> }>("/api/v1/rules");
        const all = r.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((x) => x.health !== "unknown") ? all : undefined;
      });
      expect(rules.map((r) => [r.name, r.health, r.lastError ?? ""])).toEqual(alerts.map((a) => [a, "ok", ""]));
      // KpatchOperatorDown is pending until the first scrape of the operator has been evaluated.
      const active = await eventually("no alert pending or firing", 15_000, async () => {
        const a = await prometheus.query("ALERTS");
        return a.length === 0 ? a : undefined;
      }).catch(async () => prometheus.query("ALERTS"));
      expect(active).toEqual([]);
    } finally {
      await prometheus.stop();
    }
    figures.prometheusProofMs = Math.round(performance.now() - t);
  });

  it("kubectl klp, the bundled plugin found on PATH by kubectl: the real node's entry as its agent read the kernel, its live CVE, the fleet's count", async () => {
    const plugin = (args: string[]) =>
      new Promise<string>((resolve, reject) =>
        execFile(
          path.join(inject("binDir"), "kubectl"),
          ["klp", ...args],
          { env: { ...process.env, KUBECONFIG: inject("kubeconfig"), PATH: [path.join(REPO, "dist"), path.dirname(process.execPath), process.env.PATH].join(path.delimiter) }, timeout: 60_000 },
          (e, stdout, stderr) => (e ? reject(new Error(`kubectl klp ${args.join(" ")}: ${String(e)}\n${stderr}`)) : resolve(stdout)),
        ),
      );
    const entry = entryOf((await getPatch())!, realNodeName)!;
    const status = JSON.parse(await plugin(["status", patchName, "-o", "json"])) as Array<{ node: string; phase: string; taintFlags?: string; moduleName?: string; kernelRelease?: string }>;
    expect(status.find((r) => r.node === realNodeName)).toMatchObject({ phase: "Loaded", moduleName, kernelRelease: RELEASE, taintFlags: entry.taintFlags });
    expect(entry.taintFlags).toContain("K");
    const table = await plugin(["status", patchName]);
    expect(table.split("\n").find((l) => l.startsWith(realNodeName)), table).toMatch(new RegExp(`${RELEASE}\\s+Loaded\\s+${entry.taintFlags}\\s+${moduleName}`));
    const nodes = JSON.parse(await plugin(["nodes", "-o", "json"])) as Array<{ node: string; livePatches: string[]; cves: string[] }>;
    expect(nodes.find((r) => r.node === realNodeName)).toMatchObject({ livePatches: [patchName], cves: ["CVE-2024-1086"] });
    const cves = JSON.parse(await plugin(["cves", "CVE-2024-1086", "-o", "json"])) as Array<{ id: string; fixed: string[]; exposed: string[] }>;
    expect(cves.find((c) => c.id === "CVE-2024-1086")).toMatchObject({ fixed: [realNodeName, ...simNodeNames].sort(), exposed: [] });
  });

  it("the agent wrote its entry with the kubelet's projected token: the admission policy holds it to its own node", async () => {
    const pod = await runningAgentPod();
    const tokenVolume = pod.spec.volumes.find((v: any) => v.projected?.sources?.some((s: any) => s.serviceAccountToken));
    expect(tokenVolume, "a projected service-account token volume").toBeDefined();
    // The token as the kubelet mounted it, read inside the container (kubectl exec: API server ->
    // kubelet -> containerd's stream server in the node's namespace).
    const token = (await kubectl(["exec", "-n", ns, pod.metadata.name, "-c", "agent", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"])).trim();
    const tokenKubeconfig = await cp.tokenKubeconfig(token);
    const whoami = await cp.kubectl(["auth", "whoami", "-o", "json"], { kubeconfig: tokenKubeconfig });
    expect(whoami.code, whoami.stderr).toBe(0);
    const who = JSON.parse(whoami.stdout);
    expect(who.status.userInfo.username).toBe(`system:serviceaccount:${ns}:kpatch-agent`);
    expect(who.status.userInfo.extra["authentication.kubernetes.io/node-name"]).toEqual([realNodeName]);
    expect(who.status.userInfo.extra["authentication.kubernetes.io/pod-name"]).toEqual([pod.metadata.name]);

    // The entry's field manager is the agent of the real node, on the node's own KernelLivePatchNode.
    const own = await kubectlJson(["get", "klpn", realNodeName, "--show-managed-fields"]);
    expect(own.metadata.managedFields.map((m: any) => m.manager)).toContain(`kpatch-agent/${realNodeName}`);

    // With that same token, another node's object is refused by the chart's policy.
    const foreign = {
      apiVersion: "livepatch.kpatch.dev/v1alpha1",
      kind: "KernelLivePatchNode",
      metadata: { name: simNodeNames[0] },
      status: { entries: [{ patch: patchName, nodeName: simNodeNames[0], phase: "Failed", observedGeneration: 1, lastTransitionTime: new Date().toISOString() }] },
    };
    const denied = await cp.kubectl(
      ["apply", "--server-side", "--subresource=status", `--field-manager=kpatch-agent/${realNodeName}`, "--force-conflicts", "-f", "-"],
      { input: JSON.stringify(foreign), kubeconfig: tokenKubeconfig },
    );
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/denied/i);
    expect(denied.stderr).toContain(realNodeName);
  });

  it("the agent pod that loaded it is unprivileged: CAP_SYS_MODULE alone, no new privileges, seccomp, and no way to the host through /proc/1/root", async () => {
    const pod = await runningAgentPod();
    const c = pod.spec.containers.find((x: any) => x.name === "agent");
    expect(c.securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"], add: ["SYS_MODULE"] } });
    expect(pod.spec.hostPID ?? false).toBe(false);
    const exec = (cmd: string) => cp.kubectl(["exec", "-n", ns, pod.metadata.name, "-c", "agent", "--", "sh", "-c", cmd]);
    // As the kernel sees the agent's process: CAP_SYS_MODULE (bit 16) only, no_new_privs, a seccomp filter.
    const status = (await exec("cat /proc/self/status")).stdout;
    expect(status).toMatch(/^CapEff:\s+0000000000010000$/m);
    expect(status).toMatch(/^CapBnd:\s+0000000000010000$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    expect(status).toMatch(/^Seccomp:\s+2$/m);
    // A file on this machine, outside every mount of the pod: not reachable through /proc/1/root
    // (pid 1 of the container's own PID namespace is the agent itself).
    const marker = path.join(work, "host-marker");
    await writeFile(marker, "host\n");
    const through = await exec(`cat /proc/1/root${marker}`);
    expect(through.code).not.toBe(0);
    expect((await exec("cat /proc/1/cmdline")).stdout).toContain("node-agent.mjs");
    // Its root filesystem is read-only.
    expect((await exec("touch /app/x")).stderr).toMatch(/read-only file system/i);
  });

  it("the production agent pod spec on this machine's real /proc and /sys: the host's /proc is readable, its /proc/1/root is refused", async () => {
    // The DaemonSet's pod as the operator renders it for a real host (hostRoot "/", the kmod
    // loader), run here with `sleep` instead of the agent: it must not touch this machine's kernel.
    // Mounts this kernel lacks (no /sys/kernel/livepatch here) and /var/lib/kpatch (not to create
    // it on this machine) are left out.
    const cfg = loadOperatorConfig({ KLP_NAMESPACE: ns, KLP_AGENT_IMAGE: AGENT_IMAGE, KLP_AGENT_IMAGE_PULL_POLICY: "Never" });
    const ds = desiredAgentDaemonSet([(await getPatch())!], cfg)!;
    const spec = ds.spec!.template.spec!;
    const kept = spec.volumes!.filter((v) => !v.hostPath || (v.name !== "host-kpatch" && existsSync(v.hostPath.path)));
    expect(kept.map((v) => v.hostPath?.path).filter(Boolean)).toContain("/proc");
    const agent = spec.containers[0]!;
    const probeName = `agent-spec-probe-${suffix}`;
    const probe = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: probeName, namespace: ns },
      spec: {
        ...spec,
        nodeName: realNodeName,
        affinity: undefined,
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 0,
        initContainers: [],
        volumes: kept,
        containers: [
          {
            ...agent,
            command: ["sleep", "infinity"],
            livenessProbe: undefined,
            readinessProbe: undefined,
            volumeMounts: agent.volumeMounts!.filter((m) => kept.some((v) => v.name === m.name)),
          },
        ],
      },
    };
    await kubectl(["apply", "-f", "-"], JSON.stringify(probe));
    try {
      await kubectl(["wait", "--for=condition=Ready", `pod/${probeName}`, "-n", ns, "--timeout=120s"], undefined, 130_000);
      const exec = (cmd: string) => cp.kubectl(["exec", "-n", ns, probeName, "-c", "agent", "--", "sh", "-c", cmd]);
      // What the agent reads there works: the sysctls, the host's processes, /sys/module.
      expect((await exec("cat /host/proc/sys/kernel/osrelease")).stdout.trim()).toBe(os.release());
      expect((await exec("cat /host/proc/sys/kernel/tainted")).stdout.trim()).toMatch(/^\d+$/);
      expect((await exec("cat /host/proc/1/comm")).code).toBe(0);
      expect((await exec("ls /host/sys/module")).stdout.split("\n").filter(Boolean).sort()).toEqual((await readdir("/sys/module")).sort());
      // The way to the host's filesystem is closed: ptrace access to pid 1 is refused.
      for (const cmd of ["cat /host/proc/1/root/etc/hostname", "ls /host/proc/1/root/", "cat /host/proc/1/environ", "ls /host/proc/1/cwd/"]) {
        const r = await exec(cmd);
        expect(r.code, `${cmd}: ${r.stdout}`).not.toBe(0);
        expect(r.stderr, cmd).toMatch(/permission denied/i);
      }
      // Read-only where it reads only.
      expect((await exec("echo 0 > /host/proc/sys/kernel/tainted")).stderr).toMatch(/read-only file system/i);
      expect((await exec("touch /host/sys/module/x")).stderr).toMatch(/read-only file system|permission denied/i);
      const status = (await exec("cat /proc/self/status")).stdout;
      expect(status).toMatch(/^CapEff:\s+0000000000010000$/m);
    } finally {
      await cp.kubectl(["delete", "pod", probeName, "-n", ns, "--grace-period=0", "--force", "--wait=true"], { timeoutMs: 60_000 });
    }
  });

  it("deleting the agent pod: the DaemonSet recreates it and the patch stays loaded, never reloaded", async () => {
    const before = await runningAgentPod();
    const insmods = (await simState()).insmods[moduleName];
    await kubectl(["delete", "pod", "-n", ns, before.metadata.name, "--wait=true", "--timeout=150s"], undefined, 160_000);
    const after = await runningAgentPod(150_000, { name: before.metadata.name });
    expect(after.metadata.name).not.toBe(before.metadata.name);
    // The new agent has read the host and the patch (its log says so) and written its entry again.
    await eventually("the new agent's first pass", 60_000, async () => (await kubectl(["logs", "-n", ns, after.metadata.name, "-c", "agent"])).includes("watching this node's KernelLivePatchNode"));
    await new Promise((r) => setTimeout(r, 5_000));
    expect((await simState()).insmods[moduleName]).toBe(insmods);
    await expectLoadedOnce();
    expectEntryStayedLoaded();
    expect(entryOf(await getPatch(), realNodeName)?.phase).toBe("Loaded");
  }, 300_000);

  it("killing the agent's container: the kubelet restarts it and the patch stays loaded, never reloaded", async () => {
    const pod = await runningAgentPod();
    const restarts = pod.status.containerStatuses[0].restartCount ?? 0;
    const c = await node!.container(ns, pod.metadata.name, "agent");
    await node!.killContainer(c.id);
    const again = await runningAgentPod(120_000, { restarts });
    expect(again.metadata.name).toBe(pod.metadata.name);
    expect(again.status.containerStatuses[0].lastState.terminated.exitCode).toBe(137);
    const c2 = await node!.container(ns, pod.metadata.name, "agent");
    expect(c2.id).not.toBe(c.id);
    await eventually("the restarted agent's first pass", 60_000, async () => (await kubectl(["logs", "-n", ns, pod.metadata.name, "-c", "agent"])).includes("watching this node's KernelLivePatchNode"));
    await new Promise((r) => setTimeout(r, 5_000));
    await expectLoadedOnce();
    expectEntryStayedLoaded();
  }, 240_000);

  it("kubectl logs shows the agent's JSON log lines; the kubelet and its cgroup report its memory", async () => {
    const pod = await runningAgentPod();
    const lines = (await kubectl(["logs", "-n", ns, pod.metadata.name, "-c", "agent"])).split("\n").filter(Boolean);
    const json = lines.map((l) => JSON.parse(l) as { level: number; msg: string; time: number });
    expect(json.length).toBeGreaterThan(0);
    expect(json.every((j) => typeof j.level === "number" && typeof j.msg === "string")).toBe(true);
    expect(json.map((j) => j.msg)).toContain("host read");
    // The restarted agent checked, as its ServiceAccount, that another node's object is refused it.
    expect(json.some((j) => (j as { nodeWritePolicy?: string }).nodeWritePolicy === "enforced"), lines.join("\n")).toBe(true);
    // The container killed above logged too.
    const previous = await kubectl(["logs", "-n", ns, pod.metadata.name, "-c", "agent", "--previous"]);
    expect(previous.split("\n").filter(Boolean).every((l) => JSON.parse(l).msg !== undefined)).toBe(true);

    // Memory as the kubelet reports it (summary API, through the API server's node proxy)...
    const summary = JSON.parse(await kubectl(["get", "--raw", `/api/v1/nodes/${realNodeName}/proxy/stats/summary`]));
    const podStats = summary.pods.find((p: any) => p.podRef.name === pod.metadata.name);
    const agentStats = podStats?.containers?.find((x: any) => x.name === "agent");
    // ...and as its memory cgroup says.
    const cg = await node!.cgroupMemory((await node!.container(ns, pod.metadata.name, "agent")).id);
    figures.agentMemory = {
      summaryWorkingSetBytes: agentStats?.memory?.workingSetBytes,
      summaryRssBytes: agentStats?.memory?.rssBytes,
      cgroupUsageBytes: cg.usageBytes,
      cgroupWorkingSetBytes: cg.workingSetBytes,
      cgroupRssBytes: cg.rssBytes,
      cgroupPath: cg.cgroupPath,
    };
    const operatorPod = (await kubectlJson<{ items: any[] }>(["get", "pods", "-n", ns, "-l", "app.kubernetes.io/name=kpatch-operator"])).items[0];
    const opStats = summary.pods.find((p: any) => p.podRef.name === operatorPod.metadata.name)?.containers?.find((x: any) => x.name === "operator");
    figures.operatorMemory = { summaryWorkingSetBytes: opStats?.memory?.workingSetBytes, summaryRssBytes: opStats?.memory?.rssBytes };
    expect(cg.rssBytes).toBeGreaterThan(10 << 20);
    expect(cg.usageBytes).toBeLessThan(128 << 20); // the DaemonSet's limit
    expect(agentStats?.memory?.workingSetBytes, "summary API memory of the agent container").toBeGreaterThan(0);
  });

  it("helm uninstall while a patch exists is refused by the pre-delete hook: the release, the operator and the patch stay", async () => {
    const insmods = (await simState()).insmods[moduleName];
    const r = await helm.run(["uninstall", release, "-n", ns, "--wait", "--timeout", "180s"]);
    expect(r.code, r.stdout + r.stderr).not.toBe(0);
    expect(r.stderr).toContain(`${release}-check-no-patches-left`);
    // Its log says why and what to do.
    const log = await kubectl(["logs", "-n", ns, `job/${release}-check-no-patches-left`]);
    expect(log).toContain("refusing to uninstall");
    expect(log).toContain(patchName);
    // Nothing was removed: the operator still runs. Helm has marked the release `uninstalling`;
    // `helm rollback <release> <revision>` marks it deployed again (documented in the chart README).
    expect((await kubectlJson<any>(["get", "deployment", release, "-n", ns, "-o", "json"])).status?.availableReplicas).toBe(1);
    expect(await helm.ok(["status", release, "-n", ns, "-o", "json"])).toContain('"status":"uninstalling"');
    await helm.ok(["rollback", release, "1", "-n", ns, "--wait"]);
    expect(await helm.ok(["status", release, "-n", ns, "-o", "json"])).toContain('"status":"deployed"');
    expect(entryOf(await kubectlJson(["get", "klp", patchName, "-o", "json"]), realNodeName)?.phase).toBe("Loaded");
    expect((await simState()).insmods[moduleName]).toBe(insmods);
    expectEntryStayedLoaded();
  }, 300_000);

  it("deleting the patch: the agent unloads and uninstalls, the finalizer goes, then the DaemonSet", async () => {
    expectEntryStayedLoaded();
    const insmods = (await simState()).insmods[moduleName];
    await kubectl(["delete", "klp", patchName, "--wait=false"]);
    await kubectl(["wait", "--for=delete", `klp/${patchName}`, "--timeout=180s"], undefined, 200_000);
    const st = await simState();
    expect(st.modules.find((m) => m.name === moduleName)).toBeUndefined();
    expect(st.insmods[moduleName]).toBe(insmods);
    expect(existsSync(path.join(hostRoot, "sys/kernel/livepatch", moduleName))).toBe(false);
    expect(existsSync(stagedPath())).toBe(false);
    for (const s of sims) {
      const simSt = await readSimState(s.root);
      expect(simSt.modules.find((m) => m.name === moduleName), s.name).toBeUndefined();
    }
    // Before it went, the real node's entry said Unloaded (the finalizer waits for that).
    await eventually("the recorded Unloaded entry", 15_000, async () => entryOf(recorder!.versions.at(-1), realNodeName)?.phase === "Unloaded");
    await eventually("the agent DaemonSet gone", 120_000, async () => (await cp.kubectl(["get", "ds", "kpatch-agent", "-n", ns])).code !== 0);
    await eventually("the agent pods gone", 150_000, async () => (await agentPods()).length === 0);
  }, 400_000);

  it("a module image pinned by digest, FROM scratch (no cp, no shell): copied by a non-root container without a token, loaded by the agent", async () => {
    const manifest = (reference: string) => ({
      apiVersion: "livepatch.kpatch.dev/v1alpha1",
      kind: "KernelLivePatch",
      metadata: { name: imagePatchName },
      spec: {
        state: "Loaded",
        modules: [{ kernelRelease: RELEASE, sha256: imageModuleSha, image: { reference, path: MODULE_IMAGE_PATH, pullSecrets: [{ name: "klp-e2e-registry" }] } }],
        // The real node only: the simulated agents of this process have no pod to copy images into.
        nodeSelector: { matchLabels: { ...targetLabel, "klp-e2e-image": "yes" } },
        rollout: { maxUnavailable: "100%" },
      },
    });
    await kubectl(["label", "node", realNodeName, "klp-e2e-image=yes"]);
    // A tag alone is refused by the API server.
    const tagged = await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify(manifest(`${moduleImageRepo}:e2e`)) });
    expect(tagged.code).not.toBe(0);
    expect(tagged.stderr).toContain("image.reference must be pinned by digest");

    // The pull secret the patch names (the kubelet does not pull here: the images are in its containerd).
    const auth = Buffer.from(JSON.stringify({ auths: { "registry.example.com": { auth: Buffer.from("u:p").toString("base64") } } })).toString("base64");
    await kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Secret", type: "kubernetes.io/dockerconfigjson", metadata: { name: "klp-e2e-registry", namespace: ns }, data: { ".dockerconfigjson": auth } }));
    const t = performance.now();
    await kubectl(["apply", "-f", "-"], JSON.stringify(manifest(moduleImageRef)));
    const wait = await cp.kubectl(["wait", "--for=condition=Ready", `klp/${imagePatchName}`, "--timeout=240s"], { timeoutMs: 260_000 });
    figures.imagePatchApplyToReadyMs = Math.round(performance.now() - t);
    if (wait.code !== 0) {
      const p = await cp.kubectl(["get", "klp", imagePatchName, "-o", "json"]);
      throw new Error(`kubectl wait klp/${imagePatchName} failed: ${wait.stderr}\n${p.stdout}\n${await node!.describe(15)}`);
    }
    const pod = await runningAgentPod();
    expect(pod.spec.automountServiceAccountToken).toBe(false);
    expect(pod.spec.imagePullSecrets).toEqual([{ name: "klp-e2e-registry" }]);
    const inits = pod.spec.initContainers as any[];
    expect(inits.map((c) => [c.name, c.image])).toEqual([["module-copy-tools", AGENT_IMAGE], ["module-0", moduleImageRef]]);
    const statuses = pod.status.initContainerStatuses as any[];
    for (const st of statuses) expect(st.state.terminated, st.name).toMatchObject({ exitCode: 0, reason: "Completed" });
    figures.moduleCopyInitContainersS = Object.fromEntries(
      statuses.map((st) => [st.name, (Date.parse(st.state.terminated.finishedAt) - Date.parse(st.state.terminated.startedAt)) / 1000]),
    );

    // As containerd ran the copying containers: the fixed non-root UID, no capability, no new
    // privileges, a read-only root, and no ServiceAccount token among their mounts.
    for (const st of statuses) {
      const id = String(st.containerID).replace(/^containerd:\/\//, "");
      const info = JSON.parse((await node!.ctr(["containers", "info", id])).stdout) as { Spec: any };
      const proc = info.Spec.process;
      expect(proc.user.uid, st.name).toBe(COPY_UID);
      expect(proc.user.gid, st.name).toBe(COPY_UID);
      expect(proc.noNewPrivileges, st.name).toBe(true);
      for (const set of ["bounding", "effective", "permitted"]) expect(proc.capabilities?.[set] ?? [], `${st.name} ${set}`).toEqual([]);
      expect(info.Spec.root.readonly, st.name).toBe(true);
      const destinations = (info.Spec.mounts as Array<{ destination: string }>).map((m) => m.destination);
      expect(destinations.filter((d) => d.startsWith("/var/run/secrets")), st.name).toEqual([]);
      expect(destinations, st.name).toContain("/var/run/kpatch-agent/copy-tools");
    }
    // The agent container has its token (the policy self-check and every write use it).
    const exec = (cmd: string) => cp.kubectl(["exec", "-n", ns, pod.metadata.name, "-c", "agent", "--", "sh", "-c", cmd]);
    expect((await exec("test -s /var/run/secrets/kubernetes.io/serviceaccount/token && echo present")).stdout.trim()).toBe("present");

    // The file arrived whole, written by the copying container's UID, and the agent loaded it.
    const copy = `/var/run/kpatch-agent/modules/${imageModuleSha}.ko`;
    expect((await exec(`sha256sum ${copy}`)).stdout.split(" ")[0]).toBe(imageModuleSha);
    expect((await exec(`stat -c %u ${copy}`)).stdout.trim()).toBe(String(COPY_UID));
    const st = await simState();
    expect(st.modules.map((m) => m.name)).toContain(imageModuleName);
    expect(st.insmods[imageModuleName]).toBe(1);
    const p = JSON.parse(await kubectl(["get", "klp", imagePatchName, "-o", "json"])) as KernelLivePatch;
    expect(entryOf(p, realNodeName)).toMatchObject({ phase: "Loaded", kernelRelease: RELEASE });

    // What a change of the image sources costs each node (docs/module-images.md): a second pull
    // secret changes the pod template, and the DaemonSet replaces the node's agent pod. The new
    // pod copies the module again and reloads nothing.
    await kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Secret", type: "kubernetes.io/dockerconfigjson", metadata: { name: "klp-e2e-registry-2", namespace: ns }, data: { ".dockerconfigjson": auth } }));
    const tRoll = performance.now();
    await kubectl(["patch", "klp", imagePatchName, "--type", "json", "-p", JSON.stringify([{ op: "add", path: "/spec/modules/0/image/pullSecrets/-", value: { name: "klp-e2e-registry-2" } }])]);
    const rolled = await runningAgentPod(180_000, { name: pod.metadata.name });
    figures.agentPodReplacedOnTemplateChangeMs = Math.round(performance.now() - tRoll);
    expect(rolled.spec.imagePullSecrets).toEqual([{ name: "klp-e2e-registry" }, { name: "klp-e2e-registry-2" }]);
    await eventually("the rolled agent's first pass", 60_000, async () => (await kubectl(["logs", "-n", ns, rolled.metadata.name, "-c", "agent"])).includes("watching this node's KernelLivePatchNode"));
    await kubectl(["wait", "--for=condition=Ready", `klp/${imagePatchName}`, "--timeout=120s"], undefined, 130_000);
    expect((await simState()).insmods[imageModuleName]).toBe(1);
  }, 420_000);

  it("measures Kubernetes image volumes on this node (kubelet v1.37, Debian's containerd 1.6): the alternative to a copying container", async () => {
    const probeName = `image-volume-probe-${suffix}`;
    const probe = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: probeName, namespace: ns },
      spec: {
        nodeName: realNodeName,
        automountServiceAccountToken: false,
        terminationGracePeriodSeconds: 0,
        restartPolicy: "Never",
        tolerations: [{ operator: "Exists" }],
        containers: [{ name: "read", image: AGENT_IMAGE, imagePullPolicy: "Never", command: ["sha256sum", `/module${MODULE_IMAGE_PATH}`], volumeMounts: [{ name: "module", mountPath: "/module", readOnly: true }] }],
        volumes: [{ name: "module", image: { reference: moduleImageRef, pullPolicy: "Never" } }],
      },
    };
    const created = await cp.kubectl(["create", "-f", "-"], { input: JSON.stringify(probe) });
    try {
      if (created.code !== 0) {
        figures.imageVolume = { outcome: "refused by the API server", message: created.stderr.trim() };
        expect(created.stderr).toMatch(/image/i);
        return;
      }
      const admitted = await kubectlJson(["get", "pod", probeName, "-n", ns]);
      // The API server keeps the image volume (the ImageVolume gate is on) or drops it.
      const kept = (admitted.spec.volumes as any[]).some((v) => v.image);
      const outcome = await eventually("the image volume probe settled", 60_000, async () => {
        const p = await kubectlJson(["get", "pod", probeName, "-n", ns]);
        const s = p.status?.containerStatuses?.[0]?.state;
        if (p.status?.phase === "Succeeded" || p.status?.phase === "Failed") return { phase: p.status.phase, state: s };
        const waiting = s?.waiting;
        if (waiting && !["ContainerCreating", "PodInitializing"].includes(waiting.reason)) return { phase: p.status.phase, state: s };
        return undefined;
      }).catch((e: unknown) => ({ phase: "unsettled", state: String(e).split("\n")[0] }));
      const events = (await kubectlJson<{ items: any[] }>(["get", "events", "-n", ns, "--field-selector", `involvedObject.name=${probeName}`])).items.map((e) => `${e.reason}: ${e.message}`);
      const log = (await cp.kubectl(["logs", "-n", ns, probeName])).stdout.trim();
      figures.imageVolume = { apiServerKeptVolume: kept, ...outcome, log, events };
      // A measurement, recorded in the figures. Where the runtime mounts the image, what it mounts
      // must be the module image's file. containerd 1.x has no CRI image mounts (they came with
      // 2.1): docs/module-images.md says the container is then never created, and this holds it to that.
      if (outcome.phase === "Succeeded") expect(log.split(" ")[0]).toBe(imageModuleSha);
      const runtime = (await kubectlJson(["get", "node", realNodeName])).status.nodeInfo.containerRuntimeVersion as string;
      if (runtime.startsWith("containerd://1.")) {
        expect(outcome, runtime).toMatchObject({ phase: "Pending", state: { waiting: { reason: "CreateContainerError" } } });
        expect(kept).toBe(true);
      }
    } finally {
      await cp.kubectl(["delete", "pod", probeName, "-n", ns, "--grace-period=0", "--force", "--wait=true"], { timeoutMs: 60_000 });
    }
  }, 180_000);

  it("deleting the image patch: the agent unloads it and the DaemonSet goes", async () => {
    await kubectl(["delete", "klp", imagePatchName, "--wait=false"]);
    await kubectl(["wait", "--for=delete", `klp/${imagePatchName}`, "--timeout=180s"], undefined, 200_000);
    expect((await simState()).modules.find((m) => m.name === imageModuleName)).toBeUndefined();
    await kubectl(["delete", "secret", "klp-e2e-registry", "klp-e2e-registry-2", "-n", ns]);
    await eventually("the agent DaemonSet gone", 120_000, async () => (await cp.kubectl(["get", "ds", "kpatch-agent", "-n", ns])).code !== 0);
    await eventually("the agent pods gone", 150_000, async () => (await agentPods()).length === 0);
  }, 400_000);

  it("helm uninstall leaves no object of the chart behind", async () => {
    // What the real pod lifecycle said along the way (probe failures, back-offs, mount errors).
    const events = await kubectlJson<{ items: any[] }>(["get", "events", "-n", ns]);
    figures.warningEvents = events.items.filter((e) => e.type === "Warning").map((e) => `${e.involvedObject.kind}/${e.involvedObject.name} ${e.reason}: ${e.message}`);
    const phases = recorder!.versions.map((v) => entryOf(v, realNodeName)?.phase ?? "(none)");
    figures.realNodeEntryPhases = phases.filter((p, i) => i === 0 || p !== phases[i - 1]).join(" -> ");
    figures.statusVersionsRecorded = recorder!.versions.length;
    await helm.ok(["uninstall", release, "-n", ns, "--wait", "--timeout", "180s"]);
    const kinds = [
      "deployments.apps", "replicasets.apps", "pods", "serviceaccounts", "services", "configmaps", "secrets",
      "roles.rbac.authorization.k8s.io", "rolebindings.rbac.authorization.k8s.io",
      "clusterroles.rbac.authorization.k8s.io", "clusterrolebindings.rbac.authorization.k8s.io",
      "validatingadmissionpolicies.admissionregistration.k8s.io", "validatingadmissionpolicybindings.admissionregistration.k8s.io",
    ].join(",");
    await eventually("no object of the release", 150_000, async () => {
      const left = await kubectl(["get", kinds, "-A", "-l", `app.kubernetes.io/instance=${release}`, "-o", "name"]);
      const operatorPods = await kubectl(["get", "pods", "-n", ns, "-o", "name"]);
      const helmSecrets = await kubectl(["get", "secrets", "-n", ns, "-l", "owner=helm", "-o", "name"]);
      return left.trim() === "" && operatorPods.trim() === "" && helmSecrets.trim() === "" ? true : undefined;
    });
    // Left on purpose: the CRD (Helm never deletes crds/), the operator's Lease (made by the operator).
    expect((await cp.kubectl(["get", "crd", "kernellivepatches.livepatch.kpatch.dev"])).code).toBe(0);
    // Nothing runs on the node any more but its pause-less state: no pod container.
    expect(await node!.containers()).toEqual([]);
  }, 300_000);
});

/**
 * Prometheus scraping what the chart's PodMonitors select (helm template with the monitoring
 * toggles on; the pods as the API lists them), with the rules the PrometheusRule ships, once both
 * targets answer. Also checks that the rendered PrometheusRule is the rules file promtool tests.
 */
async function scrapeWithPrometheus() {
  const tools = await ensurePrometheusTools();
  const rendered = await helm.template({
    release,
    namespace: ns,
    set: { "monitoring.podMonitor.enabled": "true", "monitoring.prometheusRule.enabled": "true", "monitoring.grafanaDashboard.enabled": "true" },
  });
  const rule = rendered.find((o) => o.kind === "PrometheusRule");
  expect(rule?.spec).toEqual(parse(await readFile(ALERTS_FILE, "utf8")));
  const board = rendered.find((o) => o.kind === "ConfigMap" && o.metadata.labels?.grafana_dashboard === "1");
  const dashboard = JSON.parse((board?.data as Record<string, string>)["kpatch-operator.json"]!) as Parameters<typeof dashboardQueries>[0];
  const jobs = scrapeJobsFrom(rendered, (await kubectlJson<{ items: PodInfo[] }>(["get", "pods", "-n", ns])).items);
  // The operator's pod and the real node's agent pod, each at the port its PodMonitor names.
  expect(jobs.map((j) => [j.job, j.path, j.targets.map((x) => x.address.replace(/^[\d.]+:/, ""))])).toEqual([
    ["kpatch-operator", "/metrics", ["8080"]],
    ["kpatch-agent", "/metrics", ["9090"]],
  ]);
  const prometheus = await startPrometheus({
    prometheus: tools.prometheus,
    dir: path.join(work, "prometheus"),
    netnsPid: node!.holderPid,
    listenIp: node!.network.nodeIp,
    port: 19090,
    jobs,
    ruleFiles: [ALERTS_FILE],
  });
  try {
    await eventually("both targets up", 30_000, async () => {
      const up = await prometheus.query("up");
      return up.length === 2 && up.every((s) => s.value[1] === "1") ? up : undefined;
    });
  } catch (e) {
    await prometheus.stop();
    throw e;
  }
  return { ...prometheus, dashboard };
}

async function apiServerPid(): Promise<number> {
  const state = JSON.parse(await readFile(path.join(inject("controlPlaneDir"), "control-plane.json"), "utf8")) as { apiServerPort: number };
  const { readdir } = await import("node:fs/promises");
  for (const e of await readdir("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "");
    if (cmd.includes("kube-apiserver") && cmd.includes(`--secure-port=${state.apiServerPort}\0`)) return Number(e);
  }
  throw new Error("kube-apiserver of this suite not found");
}
