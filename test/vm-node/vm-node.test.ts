// The whole stack on a real kernel: `helm install` of the chart, a KernelLivePatch applied with
// kubectl, and the module live in Debian's 6.1 kernel inside a QEMU guest that is a real Kubernetes
// node (kubelet, containerd, runc; test/support/vm-node.ts, scripts/vm-node/). The operator runs
// as the chart deploys it on the real node of the real-node suite (a kubelet on this machine,
// test/support/real-node.ts), tainted so that only the operator goes there: under QEMU's software
// emulation a Node process in the guest is 10-20x slower than here, and the operator's lease renewals
// (10 s deadline) and startup probe failed in the guest when it shared the guest's two emulated CPUs
// with the agent, the kubelet and containerd. The agent, the part that touches the kernel, runs in
// the guest as the DaemonSet pod the operator creates.
//
// Every change goes through the product (kubectl, helm). The guest is only read, over its control
// channel (kernel state, /var/lib/kpatch, dmesg), its console (a livepatch monitor that prints every
// change of /sys/kernel/livepatch) and its pod logs; the one exception is the reboot of scenario 5,
// which the machine's owner does (as `reboot` on the node would).
//
// Scenarios run in order on one node and one patch, each a test; see test/vm-node/README.md.
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { KubeConfig, Watch } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { FINALIZER, type KernelLivePatch, type NodeEntry } from "../../crds/schema.ts";
import { startControlPlane, type ControlPlane } from "../support/control-plane.ts";
import { CHART_DIR, helmClient, type Helm } from "../support/helm.ts";
import { ensureNodeTools, planNodeNetwork, realNodeApiServerArgs, realNodeSupport, startRealNode, type RealNode } from "../support/real-node.ts";
import { enableCount, prepareVmNode, REPO, VM_CACHE, VmNode, VmNodeUnavailable, type GuestState, type PreparedVmNode } from "../support/vm-node.ts";

const REQUIRED = process.env.KLP_VM_NODE_REQUIRED === "1";
const LAST_RUN = path.join(VM_CACHE, "last-run");
const NS = "kpatch-system";
const PATCH = "vm-cmdline";
const BAD = "vm-badver";
const CM = "vm-node-modules";
const V1 = "klp_test_v1";
const V2 = "klp_test_v2";
const TAINT_OEK = 4096 + 8192 + 32768; // 45056: out-of-tree, unsigned, livepatched
const AGENT_SELECTOR = "app.kubernetes.io/name=kpatch-agent";

let skipReason: string | undefined;
let prepared: PreparedVmNode;
let cp: ControlPlane | undefined;
let helm: Helm;
let node: VmNode | undefined;
/** The node on this machine where the operator runs. */
let hostNode: RealNode | undefined;
const HOST_NODE = "klp-vm-operator-node";
let recorder: Recorder | undefined;
const sha: Record<string, string> = {};
const figures: { bootToReadyMs?: number; rebootToReadyMs?: number; guest?: Record<string, number>; rebootGuest?: Record<string, number>; scenarios: Record<string, number>; klpWide?: string; nodesWide?: string; prepare?: Record<string, number>; install?: Record<string, number> } = { scenarios: {} };
const suiteStart = Date.now();

function log(line: string): void {
  console.log(`[vm-node ${((Date.now() - suiteStart) / 1000).toFixed(0).padStart(4)} s] ${line}`);
}

// ---------------------------------------------------------------------------------------------
// kubectl helpers

async function kubectl(args: string[], input?: string, timeoutMs?: number): Promise<string> {
  const r = await cp!.kubectl(args, { ...(input === undefined ? {} : { input }), ...(timeoutMs ? { timeoutMs } : {}) });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function getJson<T>(args: string[]): Promise<T> {
  return JSON.parse(await kubectl([...args, "-o", "json"])) as T;
}

/** The patch as the API server serves it: the watch's latest version (no kubectl process per poll). */
async function klp(name: string): Promise<KernelLivePatch | undefined> {
  if (recorder?.synced) return recorder.latest(name);
  const r = await cp!.kubectl(["get", "klp", name, "-o", "json"]);
  if (r.code !== 0) {
    if (/NotFound/.test(r.stderr)) return undefined;
    throw new Error(r.stderr);
  }
  return JSON.parse(r.stdout) as KernelLivePatch;
}

function entryOf(p: KernelLivePatch | undefined): NodeEntry | undefined {
  return p?.status?.nodes?.find((e) => e.nodeName === node!.nodeName);
}

async function eventually<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined | false>, everyMs = 2000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Ready=True for the current generation, then `kubectl wait --for=condition=Ready` (which must return 0). */
async function waitReady(name: string, timeoutMs = 300_000): Promise<KernelLivePatch> {
  const p = await eventually(`${name} Ready for its current generation`, timeoutMs, async () => {
    const p = await klp(name);
    const c = p?.status?.conditions?.find((x) => x.type === "Ready");
    return c?.status === "True" && c.observedGeneration === p?.metadata.generation && p?.status?.observedGeneration === p?.metadata.generation ? p : undefined;
  });
  const r = await cp!.kubectl(["wait", "--for=condition=Ready", `klp/${name}`, "--timeout=60s"]);
  expect(r.code, `kubectl wait: ${r.stderr}`).toBe(0);
  expect(r.stdout).toContain("condition met");
  return p;
}

async function agentPods(): Promise<Array<{ name: string; uid: string; phase: string; node: string; ready: boolean; deleting: boolean }>> {
  const list = await getJson<{ items: Array<{ metadata: { name: string; uid: string; deletionTimestamp?: string }; spec: { nodeName?: string }; status: { phase?: string; containerStatuses?: Array<{ ready: boolean }> } }> }>(
    ["get", "pods", "-n", NS, "-l", AGENT_SELECTOR],
  );
  return list.items.map((p) => ({
    name: p.metadata.name, uid: p.metadata.uid, phase: p.status.phase ?? "", node: p.spec.nodeName ?? "",
    ready: p.status.containerStatuses?.every((c) => c.ready) ?? false, deleting: !!p.metadata.deletionTimestamp,
  }));
}

async function nodeReady(): Promise<boolean> {
  const r = await cp!.kubectl(["get", "node", node!.nodeName, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
  return r.code === 0 && r.stdout.trim() === "True";
}

function patchYaml(name: string, moduleKey: string, digest: string, state = "Loaded"): string {
  return [
    "apiVersion: livepatch.kpatch.dev/v1alpha1",
    "kind: KernelLivePatch",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    `  state: ${state}`,
    `  description: test module ${moduleKey} on the VM node`,
    // The VM node only: the operator's node carries no agent.
    "  nodeSelector:",
    "    matchLabels:",
    `      kubernetes.io/hostname: ${node!.nodeName}`,
    "  modules:",
    `    - kernelRelease: ${prepared.krel}`,
    `      sha256: ${digest}`,
    `      configMap: {namespace: ${NS}, name: ${CM}, key: ${moduleKey}}`,
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// a watch on the patches: every version the API server serves, to check sequences

interface Seen {
  at: number;
  type: string;
  name: string;
  entry: NodeEntry | undefined;
  deleting: boolean;
  finalizers: string[];
}

class Recorder {
  readonly seen: Seen[] = [];
  private readonly objects = new Map<string, KernelLivePatch>();
  private abort: AbortController | undefined;
  private stopped = false;
  synced = false;
  constructor(private readonly kc: KubeConfig) {}
  latest(name: string): KernelLivePatch | undefined {
    return this.objects.get(name);
  }
  async start(): Promise<void> {
    const w = new Watch(this.kc);
    this.synced = false;
    this.abort = await w.watch(
      "/apis/livepatch.kpatch.dev/v1alpha1/kernellivepatches",
      {},
      (type: string, obj: KernelLivePatch) => {
        if (type === "DELETED") this.objects.delete(obj.metadata.name);
        else this.objects.set(obj.metadata.name, obj);
        this.seen.push({
          at: Date.now(), type, name: obj.metadata.name, entry: entryOf(obj), deleting: !!obj.metadata.deletionTimestamp,
          finalizers: obj.metadata.finalizers ?? [],
        });
      },
      () => {
        this.synced = false;
        if (!this.stopped) setTimeout(() => void this.start().catch(() => undefined), 1000);
      },
    );
    // A watch without a resourceVersion starts with an ADDED event per existing object.
    this.synced = true;
  }
  since(t: number, name: string): Seen[] {
    return this.seen.filter((s) => s.at >= t && s.name === name);
  }
  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

/** Phases (with module) the node's entry went through, consecutive duplicates collapsed. */
function phases(seen: Seen[]): string[] {
  const out: string[] = [];
  for (const s of seen) {
    const p = s.entry ? `${s.entry.phase}(${s.entry.moduleName ?? "-"})` : "none";
    if (out[out.length - 1] !== p) out.push(p);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// guest helpers

async function guest(): Promise<GuestState> {
  return node!.state();
}

const stagedNames = (s: GuestState) => s.staged.map((f) => path.basename(f.path)).sort();
const livepatch = (s: GuestState, name: string) => s.livepatches.find((l) => l.name === name);

/** Agent log lines (JSON messages) of the current containers, from the guest's pod logs. */
function agentLog(): Array<{ pod: string; msg: Record<string, unknown> }> {
  const out: Array<{ pod: string; msg: Record<string, unknown> }> = [];
  for (const line of node!.podLog().split("\n")) {
    const m = /^(kpatch-system_kpatch-agent-[^/]+)\/agent \S+ std(?:out|err) [FP] (\{.*\})$/.exec(line);
    if (!m) continue;
    try {
      out.push({ pod: m[1]!, msg: JSON.parse(m[2]!) as Record<string, unknown> });
    } catch {
      /* partial line */
    }
  }
  return out;
}

async function diagnostics(): Promise<string> {
  const parts: string[] = [];
  for (const [what, f] of [
    ["klp", () => kubectl(["get", "klp", "-o", "yaml"])],
    ["pods", () => kubectl(["get", "pods", "-A", "-o", "wide"])],
    ["events", () => kubectl(["get", "events", "-A", "--sort-by=.lastTimestamp"])],
    ["guest state", async () => JSON.stringify(await node!.state(), null, 1)],
    ["guest pods log", async () => (await node!.guestLog("pods")).slice(-6000)],
    ["guest kubelet log", async () => (await node!.guestLog("kubelet")).slice(-4000)],
  ] as const) {
    try {
      parts.push(`--- ${what}\n${await f()}`);
    } catch (e) {
      parts.push(`--- ${what}: ${String(e)}`);
    }
  }
  return parts.join("\n");
}

/** Runs a scenario, records its time, and attaches diagnostics to a failure. */
async function scenario(ctx: TestContext, name: string, body: () => Promise<void>): Promise<void> {
  if (skipReason) ctx.skip(skipReason);
  if (!node) throw new Error("the VM node did not start (see beforeAll)");
  const t0 = Date.now();
  log(`${name}: start`);
  try {
    await body();
  } catch (e) {
    const d = await diagnostics();
    mkdirSync(LAST_RUN, { recursive: true });
    writeFileSync(path.join(LAST_RUN, `failure-${name.replace(/[^a-z0-9]+/gi, "-")}.txt`), `${String(e)}\n\n${d}`);
    log(`${name}: FAILED after ${Date.now() - t0} ms (diagnostics in ${LAST_RUN})`);
    throw e;
  } finally {
    figures.scenarios[name] = Date.now() - t0;
  }
  log(`${name}: ok in ${Date.now() - t0} ms`);
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  try {
    prepared = await prepareVmNode(log);
  } catch (e) {
    if (e instanceof VmNodeUnavailable && !REQUIRED) {
      skipReason = `VM node unavailable: ${e.message}`;
      console.warn(`[vm-node] SKIPPING: ${skipReason}`);
      return;
    }
    throw e;
  }
  figures.prepare = prepared.timings;
  const support = process.env.KLP_SKIP_REAL_NODE ? ({ ok: false, reason: "KLP_SKIP_REAL_NODE is set" } as const) : await realNodeSupport();
  if (!support.ok) {
    if (REQUIRED) throw new Error(`the operator's node cannot run here: ${support.reason}`);
    skipReason = `the operator's real node cannot run here: ${support.reason}`;
    console.warn(`[vm-node] SKIPPING: ${skipReason}`);
    return;
  }
  let t = Date.now();
  const tools = await ensureNodeTools(log);
  const network = await planNodeNetwork();
  // Upstream's node-monitor grace period (50 s): the reboot is seen as it would be in a cluster.
  // The API server advertises the real node's veth address (its pods reach the `kubernetes`
  // Service through kube-proxy); the guest reaches it through QEMU's forward of 10.0.0.1:443.
  cp = await startControlPlane({ binDir: tools.binDir, log: (l) => log(`control plane: ${l}`), nodeMonitorGracePeriod: "50s", extraApiServerArgs: realNodeApiServerArgs(network) });
  helm = await helmClient({ binDir: cp.binDir, kubeconfig: cp.kubeconfigPath });
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  recorder = new Recorder(kc);
  await recorder.start();

  // The operator's node: the operator image only, tainted so the agents' DaemonSet stays off it.
  const imageDir = path.join(VM_CACHE, "host-node-images");
  mkdirSync(imageDir, { recursive: true });
  const saved = await new Promise<string>((resolve, reject) =>
    execFile("bash", [path.join(REPO, "scripts/images/save.sh"), imageDir], { encoding: "utf8", maxBuffer: 16 << 20 }, (err, out, errOut) => (err ? reject(new Error(`save.sh: ${errOut}`)) : resolve(out))),
  );
  const operatorTar = saved.split("\n").find((l) => l.includes("kpatch-operator"));
  if (!operatorTar) throw new Error(`scripts/images/save.sh printed no operator image: ${saved}`);
  hostNode = await startRealNode({ name: HOST_NODE, cp, tools, network, labels: { "klp-vm/role": "operator" }, images: [operatorTar], log: (l) => log(`operator node: ${l}`) });
  await kubectl(["taint", "node", HOST_NODE, "klp-vm/operator-only=true:NoSchedule"]);
  figures.install = { operatorNodeStartMs: Date.now() - t };

  node = await VmNode.start({
    prepared, cp, log,
    ...(process.env.KLP_VM_NODE_CONSOLE === "1" ? { onConsole: (l: string) => console.log(`  | ${l}`) } : {}),
  });
  log(`VM node ${node.nodeName} booting (work dir ${node.dir})`);
  await eventually(`node ${node.nodeName} Ready`, 600_000, nodeReady);
  figures.bootToReadyMs = Date.now() - node.startedAt;
  figures.guest = Object.fromEntries(node.marks.filter((m) => m.boot === 0 && m.uptime >= 0).map((m) => [m.name, m.uptime]));
  log(`node Ready ${figures.bootToReadyMs} ms after QEMU started; guest uptime marks ${JSON.stringify(figures.guest)}`);

  // The chart, as its README says: a namespace that allows privileged pods, then helm install.
  t = Date.now();
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
  const helmMs = Date.now() - t;
  const opPods = await getJson<{ items: Array<{ spec: { nodeName: string } }> }>(["get", "pods", "-n", NS, "-l", "app.kubernetes.io/name=kpatch-operator"]);
  expect(opPods.items.map((p) => p.spec.nodeName)).toEqual([HOST_NODE]);
  log(`helm install --wait: operator Available on ${HOST_NODE} in ${helmMs} ms`);

  // The project's own test modules, pinned by sha256, in a ConfigMap (binaryData).
  t = Date.now();
  const files: Record<string, string> = { [`${V1}.ko`]: `${V1}.ko`, [`${V2}.ko`]: `${V2}.ko`, "klp_test_v1_badver.ko": "klp_test_v1_badver.ko" };
  for (const [key, file] of Object.entries(files)) {
    const bytes = await readFile(path.join(prepared.modulesDir, file));
    sha[key] = (await import("node:crypto")).createHash("sha256").update(bytes).digest("hex");
  }
  await kubectl(["create", "configmap", CM, "-n", NS, ...Object.entries(files).map(([k, f]) => `--from-file=${k}=${path.join(prepared.modulesDir, f)}`)]);
  figures.install = { ...figures.install, helmInstallMs: helmMs, configMapMs: Date.now() - t };
}, 3_600_000);

afterAll(async () => {
  recorder?.stop();
  try {
    if (node) {
      await node.stop();
      await node.cleanup(LAST_RUN);
    }
  } finally {
    await hostNode?.stop().catch((e: unknown) => log(`operator node stop: ${String(e)}`));
    await cp?.stop();
    mkdirSync(LAST_RUN, { recursive: true });
    writeFileSync(path.join(LAST_RUN, "figures.json"), `${JSON.stringify(figures, null, 2)}\n`);
    log(`figures (also in ${LAST_RUN}/figures.json): ${JSON.stringify({ ...figures, klpWide: undefined, nodesWide: undefined })}`);
    if (figures.klpWide) log(`kubectl get klp -o wide:\n${figures.klpWide}`);
  }
}, 300_000);

describe("the whole stack on a real kernel, inside a VM node", () => {
  it("1. apply: the agent in the guest stages and loads the module; Loaded, tainted OEK, the guest's boot id, /proc/cmdline patched", async (ctx) => {
    await scenario(ctx, "1-apply", async () => {
      await kubectl(["apply", "-f", "-"], patchYaml(PATCH, `${V1}.ko`, sha[`${V1}.ko`]!));
      const p = await waitReady(PATCH);
      const e = entryOf(p)!;
      const g = await guest();
      expect(e).toMatchObject({
        phase: "Loaded", moduleName: V1, sha256: sha[`${V1}.ko`], enabled: true, transition: false,
        kernelRelease: prepared.krel, tainted: TAINT_OEK, taintFlags: "OEK", bootID: g.bootId,
      });
      expect(g.bootId).toBe(node!.bootIds[0]);
      // What the kernel in the guest says.
      expect(livepatch(g, V1)).toEqual({ name: V1, enabled: true, transition: false });
      expect(g.cmdline).toBe(`${V1} patched`);
      expect(g.tainted).toBe(TAINT_OEK);
      expect(g.staged).toEqual([{ path: `/var/lib/kpatch/${prepared.krel}/${V1}.ko`, sha256: sha[`${V1}.ko`] }]);
      expect(enableCount(g, V1)).toBe(1);
      // The agent that did it is the DaemonSet's pod on the VM node.
      const pods = await agentPods();
      expect(pods.map((x) => [x.node, x.phase])).toEqual([[node!.nodeName, "Running"]]);
      await eventually("the agent's log line for the load", 60_000, async () => agentLog().some((l) => l.msg.msg === "loaded" && l.msg.module === V1));
      figures.klpWide = await kubectl(["get", "klp", "-o", "wide"]);
      figures.nodesWide = await kubectl(["get", "nodes", "-o", "wide"]);
      log(`\n${figures.klpWide}\n${figures.nodesWide}`);
    });
  });

  it("2. cumulative replace: the spec moves to the v2 replace module; v2 live, v1 replaced out of the kernel, v2 staged", async (ctx) => {
    await scenario(ctx, "2-replace", async () => {
      const t0 = Date.now();
      const before = await guest();
      await kubectl(["patch", "klp", PATCH, "--type=merge", "-p", JSON.stringify({
        spec: { modules: [{ kernelRelease: prepared.krel, sha256: sha[`${V2}.ko`], configMap: { namespace: NS, name: CM, key: `${V2}.ko` } }] },
      })]);
      const p = await waitReady(PATCH);
      expect(entryOf(p)).toMatchObject({ phase: "Loaded", moduleName: V2, sha256: sha[`${V2}.ko`], enabled: true, transition: false, tainted: TAINT_OEK, taintFlags: "OEK" });
      const g = await eventually("v2 live and staged in the guest", 120_000, async () => {
        const g = await guest();
        return livepatch(g, V2)?.enabled && !livepatch(g, V1) && stagedNames(g).includes(`${V2}.ko`) ? g : undefined;
      });
      expect(livepatch(g, V2)).toEqual({ name: V2, enabled: true, transition: false });
      expect(g.livepatches.map((l) => l.name)).toEqual([V2]); // the kernel's atomic replace took v1 out
      expect(g.cmdline).toBe(`${V2} patched`);
      expect(g.staged).toContainEqual({ path: `/var/lib/kpatch/${prepared.krel}/${V2}.ko`, sha256: sha[`${V2}.ko`] });
      expect(enableCount(g, V2)).toBe(1);
      expect(enableCount(g, V1)).toBe(enableCount(before, V1));
      // The replace, as the agent reported it: its load of v2 replaced v1.
      const loaded = await eventually("the agent's log line for the load of v2", 60_000, async () => agentLog().find((l) => l.msg.msg === "loaded" && l.msg.module === V2));
      expect(loaded.msg.replaced).toEqual([V1]);
      // The entry: v1 Loaded, then v2 (Loading, Loaded); v1 never named again.
      const seq = phases(recorder!.since(t0, PATCH));
      log(`entry sequence: ${seq.join(" -> ")}`);
      expect(seq[seq.length - 1]).toBe(`Loaded(${V2})`);
      const firstV2 = seq.findIndex((x) => x.includes(V2));
      expect(firstV2).toBeGreaterThanOrEqual(0);
      expect(seq.slice(firstV2).every((x) => x.includes(V2))).toBe(true);
      expect(seq.slice(0, firstV2).every((x) => x === `Loaded(${V1})`)).toBe(true);
      // No livepatch-less moment in the kernel: v2 was enabled before v1 left.
      const lp = node!.lpChanges.filter((c) => c.at >= t0 && c.boot === node!.boot);
      expect(lp.every((c) => Object.keys(c.state).length > 0), JSON.stringify(lp)).toBe(true);
      // v1 retired by the agent: its leftover module out of the kernel, its file off the disk (so
      // the next boot's kpatch.service loads v2 alone); the entry no longer names it.
      const settled = await eventually("v1 retired by the agent", 60_000, async () => {
        const x = await guest();
        return !x.modules.some((m) => m.name === V1) && !stagedNames(x).includes(`${V1}.ko`) ? x : undefined;
      });
      expect(stagedNames(settled)).toEqual([`${V2}.ko`]);
      expect(settled.modules.map((m) => m.name)).toEqual([V2]);
      const retiredBy = agentLog().filter((l) => l.msg.module === V1 && ["removed leftover module", "uninstalled"].includes(String(l.msg.msg))).map((l) => l.msg.msg);
      expect(retiredBy).toEqual(["removed leftover module", "uninstalled"]);
      expect(entryOf(await klp(PATCH))?.previousModuleName).toBeUndefined();
      // While v2 was loading the entry said which module it would retire.
      expect(recorder!.since(t0, PATCH).some((x) => x.entry?.moduleName === V2 && x.entry.previousModuleName === V1)).toBe(true);
    });
  });

  it("3. a module whose vermagic names another release is refused (VermagicMismatch): never loaded, nothing staged", async (ctx) => {
    await scenario(ctx, "3-vermagic", async () => {
      const before = await guest();
      await kubectl(["apply", "-f", "-"], patchYaml(BAD, "klp_test_v1_badver.ko", sha["klp_test_v1_badver.ko"]!));
      const p = await eventually(`${BAD} Failed on the VM node`, 300_000, async () => {
        const p = await klp(BAD);
        return entryOf(p)?.phase === "Failed" ? p : undefined;
      });
      const e = entryOf(p)!;
      expect(e.reason).toBe("VermagicMismatch");
      expect(e.message).toContain(prepared.krel);
      expect(e.moduleName).toBeUndefined();
      const g = await guest();
      // Nothing new staged, nothing new in the kernel.
      expect(g.staged).toEqual(before.staged);
      expect(g.staged.map((f) => f.sha256)).not.toContain(sha["klp_test_v1_badver.ko"]);
      expect(g.modules).toEqual(before.modules);
      expect(g.livepatches.map((l) => l.name)).toEqual([V2]);
      expect(g.dmesg).toEqual(before.dmesg);
      expect(g.cmdline).toBe(`${V2} patched`);
      // The good patch is untouched.
      expect(entryOf(await klp(PATCH))).toMatchObject({ phase: "Loaded", moduleName: V2 });
      const seen = recorder!.seen.filter((x) => x.name === BAD).map((x) => x.entry?.phase);
      expect(seen).not.toContain("Loading");
      expect(seen).not.toContain("Staging");
      figures.klpWide = await kubectl(["get", "klp", "-o", "wide"]);
      log(`\n${figures.klpWide}`);
      // Remove it: its finalizer goes as soon as the agent reports it gone (there was nothing to unload).
      await kubectl(["delete", "klp", BAD, "--timeout=180s"], undefined, 200_000);
      expect(await klp(BAD)).toBeUndefined();
    });
  });

  it("4. the agent pod deleted and recreated: the module stays live throughout", async (ctx) => {
    await scenario(ctx, "4-agent-restart", async () => {
      const t0 = Date.now();
      const lpBefore = node!.lpChanges.length;
      const before = await guest();
      const [old] = await agentPods();
      expect(old).toBeDefined();
      await kubectl(["delete", "pod", "-n", NS, old!.name, "--timeout=180s"], undefined, 200_000);
      const fresh = await eventually("a new agent pod Running", 300_000, async () => {
        const pods = await agentPods();
        return pods.find((x) => x.name !== old!.name && x.phase === "Running" && !x.deleting);
      });
      // The new agent has read the host and started its watches; give it time for its pass.
      await eventually("the new agent watching", 300_000, async () =>
        agentLog().some((l) => l.pod.includes(fresh.uid) && l.msg.msg === "watching this node's KernelLivePatchNode"),
      );
      await new Promise((r) => setTimeout(r, 15_000));
      const g = await guest();
      expect(livepatch(g, V2)).toEqual({ name: V2, enabled: true, transition: false });
      expect(g.cmdline).toBe(`${V2} patched`);
      expect(enableCount(g, V2)).toBe(enableCount(before, V2));
      expect(g.dmesg.length).toBe(before.dmesg.length); // no unpatching, no enabling
      expect(node!.lpChanges.length, "the kernel's livepatch state changed").toBe(lpBefore);
      expect(agentLog().filter((l) => l.pod.includes(fresh.uid) && ["loaded", "unloaded", "uninstalled", "removed leftover module"].includes(String(l.msg.msg)))).toEqual([]);
      const seen = recorder!.since(t0, PATCH);
      expect(seen.every((s) => s.entry?.phase === "Loaded" && s.entry.moduleName === V2), JSON.stringify(phases(seen))).toBe(true);
      expect(entryOf(await klp(PATCH))).toMatchObject({ phase: "Loaded", moduleName: V2, bootID: g.bootId });
    });
  });

  it("5. the guest rebooted: live again from /var/lib/kpatch before the agent starts; the agent re-reads the new boot and reports Loaded without a second load", async (ctx) => {
    await scenario(ctx, "5-reboot", async () => {
      const t0 = Date.now();
      const before = await guest();
      const stagedBefore = stagedNames(before).map((f) => f.replace(/\.ko$/, ""));
      // The pod-log channel is one file across boots: what the agent logs from here on.
      const logMark = agentLog().length;
      const { bootIdBefore, bootIdAfter } = await node!.reboot();
      expect(bootIdAfter).not.toBe(bootIdBefore);
      const b = node!.boot;
      const tReboot = node!.marks.find((m) => m.boot === b && m.name === "init-start")!.at;
      // kpatch.service (the agent image's CLI, `load --all`) loaded what was staged, in glob order.
      const svc = await node!.waitMark("kpatch-service-done", 300_000);
      expect(svc.fields.rc).toBe("0");
      const kubeletStart = await node!.waitMark("kubelet-start", 300_000);
      const containerdStart = node!.mark("containerd-start")!;
      const live = node!.lpChanges.find((c) => c.boot === b && c.state[V2] === "1:0");
      expect(live, "klp_test_v2 enabled in the new boot").toBeDefined();
      expect(live!.uptime).toBeLessThan(containerdStart.uptime);
      expect(live!.uptime).toBeLessThan(kubeletStart.uptime);
      expect(svc.uptime).toBeLessThan(kubeletStart.uptime);
      const svcOut = JSON.parse((await node!.guestLog("kpatch-service")).split("\n")[0]!) as { loaded: Array<{ name: string }> };
      expect(svcOut).toMatchObject({ ok: true, kernelRelease: prepared.krel, failed: [] });
      expect(stagedBefore).toEqual([V2]);
      expect(svcOut.loaded.map((l) => l.name)).toEqual([V2]);

      await eventually("node Ready again", 600_000, nodeReady);
      figures.rebootToReadyMs = Date.now() - tReboot;
      figures.rebootGuest = Object.fromEntries(node!.marks.filter((m) => m.boot === b && m.uptime >= 0).map((m) => [m.name, m.uptime]));
      const p = await eventually("the entry to carry the new boot id", 600_000, async () => {
        const p = await klp(PATCH);
        return entryOf(p)?.bootID === bootIdAfter ? p : undefined;
      });
      expect(entryOf(p)).toMatchObject({ phase: "Loaded", moduleName: V2, enabled: true, transition: false, tainted: TAINT_OEK, taintFlags: "OEK", bootID: bootIdAfter });
      await waitReady(PATCH);
      const g = await guest();
      expect(g.bootId).toBe(bootIdAfter);
      expect(g.cmdline).toBe(`${V2} patched`);
      expect(g.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
      // One load of v2 in this boot: kpatch.service's. The agent did not load it again.
      expect(enableCount(g, V2)).toBe(1);
      expect(g.dmesg.some((l) => /unpatching/.test(l))).toBe(false);
      // The agent of the new boot did run (its log is here), and did nothing to the host.
      expect(agentLog().slice(logMark).some((l) => l.msg.msg === "watching this node's KernelLivePatchNode")).toBe(true);
      const hostActions = agentLog().slice(logMark).filter((l) => ["loaded", "unloaded", "uninstalled", "removed leftover module"].includes(String(l.msg.msg)));
      expect(hostActions, "agent host actions after the reboot").toEqual([]);
      // Once enabled (before the kubelet started), v2 stayed enabled.
      const fromLive = node!.lpChanges.filter((c) => c.boot === b && c.uptime >= live!.uptime);
      expect(fromLive.filter((c) => c.state[V2] !== "1:0" && c.state[V2] !== "1:1"), JSON.stringify(fromLive)).toEqual([]);
      // The entry never left Loaded: the old boot's Loaded, then the new boot's Loaded.
      const seen = recorder!.since(t0, PATCH);
      expect(seen.every((x) => x.entry?.phase === "Loaded"), JSON.stringify(phases(seen))).toBe(true);
    });
  });

  it("6. state: Unloaded: the module leaves the kernel and /var/lib/kpatch; the taint stays and the entry says so", async (ctx) => {
    await scenario(ctx, "6-unloaded", async () => {
      await kubectl(["patch", "klp", PATCH, "--type=merge", "-p", JSON.stringify({ spec: { state: "Unloaded" } })]);
      const p = await waitReady(PATCH);
      expect(p.status?.conditions?.find((c) => c.type === "Ready")?.reason).toBe("Unloaded");
      expect(entryOf(p)).toMatchObject({ phase: "Unloaded", moduleName: V2, enabled: false, tainted: TAINT_OEK, taintFlags: "OEK" });
      const g = await guest();
      expect(g.livepatches).toEqual([]);
      expect(g.modules.map((m) => m.name)).not.toContain(V2);
      expect(stagedNames(g)).not.toContain(`${V2}.ko`);
      expect(g.modules).toEqual([]);
      expect(g.staged).toEqual([]);
      expect(g.stagedDirs).toEqual([]); // the release directory is pruned
      expect(g.tainted).toBe(TAINT_OEK); // the kernel never clears it
      expect(g.cmdline).not.toContain("patched");
      expect(g.dmesg.some((l) => l.includes(`'${V2}': unpatching complete`)), g.dmesg.join("\n")).toBe(true);
    });
  });

  it("7. delete: the finalizer waits for the guest's unload report, then goes", async (ctx) => {
    await scenario(ctx, "7-delete", async () => {
      // Loaded again first, so there is something to unload.
      await kubectl(["patch", "klp", PATCH, "--type=merge", "-p", JSON.stringify({ spec: { state: "Loaded" } })]);
      await waitReady(PATCH);
      const loaded = await guest();
      expect(livepatch(loaded, V2)).toEqual({ name: V2, enabled: true, transition: false });
      const t0 = Date.now();
      await kubectl(["delete", "klp", PATCH, "--wait=false"]);
      await eventually(`${PATCH} gone`, 300_000, async () => (await klp(PATCH)) === undefined);
      const seen = recorder!.since(t0, PATCH);
      log(`entry sequence while deleting: ${phases(seen).join(" -> ")} (${seen.length} versions)`);
      const deleted = seen.findIndex((x) => x.type === "DELETED");
      expect(deleted).toBeGreaterThan(0);
      const whileDeleting = seen.slice(0, deleted).filter((x) => x.deleting);
      // It waited: versions with a deletion timestamp and the finalizer while the module was still in the kernel...
      expect(whileDeleting.some((x) => x.finalizers.includes(FINALIZER) && x.entry?.phase !== "Unloaded"), JSON.stringify(phases(seen))).toBe(true);
      // ...and let go only after the node reported Unloaded.
      expect(seen[deleted - 1]!.entry?.phase).toBe("Unloaded");
      const g = await guest();
      expect(g.livepatches).toEqual([]);
      expect(g.modules.map((m) => m.name)).not.toContain(V2);
      expect(stagedNames(g)).not.toContain(`${V2}.ko`);
      expect(g.tainted).toBe(TAINT_OEK);
      // With no patch left, the operator removes its agent DaemonSet.
      await eventually("agent pods gone", 300_000, async () => (await agentPods()).length === 0);
    });
  });
});
