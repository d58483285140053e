// The whole stack on a real kernel: `helm install` of the chart, a KernelLivePatch applied with
// kubectl, and the module live in Debian's 6.1 kernel inside a QEMU guest that is a real Kubernetes
// node (kubelet, containerd, runc; test/support/vm-node.ts, scripts/vm-node/). The operator runs
// as the chart deploys it on a kubelet on this machine (vm-cluster.ts says why not in the guest).
// The agent, the part that touches the kernel, runs in the guest as the DaemonSet pod the operator
// creates.
//
// Every change goes through the product (kubectl, helm). The guest is only read, over its control
// channel (kernel state, /var/lib/kpatch, dmesg), its console (a monitor that prints every change of
// /sys/kernel/livepatch and of what /proc/cmdline prints) and its pod logs; the exceptions are what
// the machine's owner does: the reboot of scenario 5 (as `reboot` on the node would), and loading
// and unloading the node's own driver module that scenario 9's livepatch patches.
//
// Scenarios 1-7 run in order on one node, each a test: a first patch on klp_test_v1, replaced
// across patches by a second patch's cumulative klp_test_v2 (the first stays Replaced through an
// agent restart and a reboot, then is deleted), then the second patch alone to its deletion; 8-10
// (what the agent does when things go wrong) follow on the same node, each with a patch of its own,
// the crash last. See test/vm-node/README.md.
import { execFile } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { Watch, type KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { FINALIZER, type KernelLivePatch, type NodeEntry } from "../../crds/schema.ts";
import { makePrivateCa, startArtifactServer, type ArtifactServer } from "../support/artifact-server.ts";
import { startRegistry, type Registry } from "../support/registry.ts";
import { agentLog as agentLogOf, HOST_ACTIONS } from "./agent-log.ts";
import { NodeObjectRecorder, phases, sameReport, withoutBoot } from "./node-object-recorder.ts";
import { runScenario } from "./scenario.ts";
import { eventuallyOn, waitPatchReady } from "./waits.ts";
import { NS, startVmCluster, type VmCluster } from "./vm-cluster.ts";
import { enableCount, prepareVmNode, REPO, VM_CACHE, VmNode, VmNodeUnavailable, type GuestState, type PreparedVmNode } from "../support/vm-node.ts";

const REQUIRED = process.env.KLP_VM_NODE_REQUIRED === "1";
const LAST_RUN = path.join(VM_CACHE, "last-run");
/** The first patch (klp_test_v1): replaced in scenario 2 by PATCH's cumulative module, deleted in 5b. */
const FIRST = "vm-cmdline-first";
/** The cumulative patch (klp_test_v2, `replace`) from scenario 2 on, through 7. */
const PATCH = "vm-cmdline";
const BAD = "vm-badver";
const CM = "vm-node-modules";
const V1 = "klp_test_v1";
const V2 = "klp_test_v2";
const REBUILT_KO = "klp_test_v1_rebuilt.ko"; // klp_test_v1 again, another build (scripts/kernel/build-modules.sh)
const STALL_MOD = "klp_test_stall_unload"; // a livepatch of klp_stall_target whose unload stalls
const STALL_TARGET = "klp_stall_target"; // the node's own driver module it patches (a fixture)
const CRASH_MOD = "klp_test_crash"; // panics the kernel 12 s after it went live
const TAINT_OEK = 4096 + 8192 + 32768; // 45056: out-of-tree, unsigned, livepatched

let skipReason: string | undefined;
let prepared: PreparedVmNode;
let cluster: VmCluster | undefined;
let node: VmNode | undefined;
/** The node on this machine where the operator runs. */
const HOST_NODE = "klp-vm-operator-node";
let recorder: Recorder | undefined;
/** Every version of the VM node's KernelLivePatchNode (the agent's entries as it wrote them). */
let nodeRecorder: NodeObjectRecorder | undefined;
/** FIRST's entry once Replaced (scenario 2), in its patch's status and on the node's object. */
let replacedEntry: { klp: NodeEntry; klpn: NodeEntry } | undefined;
const sha: Record<string, string> = {};
/**
 * An HTTPS artifact server on this machine (a private CA, a bearer token), reached from the guest
 * at ARTIFACTS_GUEST through QEMU's forward (VmNodeOptions.forwards), as an Artifactory would be.
 */
let artifacts: ArtifactServer | undefined;
let artifactsCaPem = "";
const ARTIFACTS_GUEST = "10.0.5.1";
const ARTIFACTS_TOKEN = `vm-token-${Math.random().toString(36).slice(2, 10)}`;
/**
 * A container registry on this machine (Debian's docker-registry), reached from the guest at
 * REGISTRY_GUEST through QEMU's forward; the guest's containerd has it as a plain-HTTP mirror
 * (scripts/vm-node/guest-init.sh names the same address).
 */
let registry: Registry | undefined;
const REGISTRY_GUEST = "10.0.6.1:5000";
const figures: {
  bootToReadyMs?: number; rebootToReadyMs?: number; guest?: Record<string, number>; rebootGuest?: Record<string, number>; scenarios: Record<string, number>;
  klpWide?: string; nodesWide?: string; prepare?: Record<string, number>; install?: Record<string, number>;
  rebuild?: Record<string, number>; stall?: Record<string, unknown>; crash?: Record<string, unknown>; moduleImage?: Record<string, number>;
  replaced?: Record<string, number>;
} = { scenarios: {} };
const suiteStart = Date.now();

function log(line: string): void {
  console.log(`[vm-node ${((Date.now() - suiteStart) / 1000).toFixed(0).padStart(4)} s] ${line}`);
}

// ---------------------------------------------------------------------------------------------
// kubectl helpers

const kubectl = (args: string[], input?: string, timeoutMs?: number) => cluster!.kubectl(args, input, timeoutMs);

/** The patch as the API server serves it: the watch's latest version (no kubectl process per poll). */
async function klp(name: string): Promise<KernelLivePatch | undefined> {
  return recorder?.synced ? recorder.latest(name) : cluster!.getPatch(name);
}

/** The patch by a GET: what the API server holds now, even just after this suite changed it. */
const klpByGet = (name: string) => cluster!.getPatch(name);

function entryOf(p: KernelLivePatch | undefined): NodeEntry | undefined {
  return p?.status?.nodes?.find((e) => e.nodeName === node!.nodeName);
}

const eventually = eventuallyOn(() => (node ? [node] : []));
const waitReady = (name: string, timeoutMs?: number) => waitPatchReady({ cp: cluster!.cp, read: klp, get: klpByGet, eventually }, name, timeoutMs);

const agentPods = () => cluster!.agentPods();
const nodeReady = () => cluster!.nodeReady(node!.nodeName);

/** `spec` lines beyond the module: e.g. ["  transitionTimeoutSeconds: 15"]. */
function patchYaml(name: string, moduleKey: string, digest: string, state = "Loaded", specLines: string[] = []): string {
  return [
    "apiVersion: livepatch.kpatch.dev/v1alpha1",
    "kind: KernelLivePatch",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    `  state: ${state}`,
    ...specLines,
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

// ---------------------------------------------------------------------------------------------
// guest helpers

async function guest(): Promise<GuestState> {
  return node!.state();
}

const stagedNames = (s: GuestState) => s.staged.map((f) => path.basename(f.path)).sort();
const livepatch = (s: GuestState, name: string) => s.livepatches.find((l) => l.name === name);

const agentLog = () => agentLogOf(node!);

const suite = { skipReason: () => skipReason, cluster: () => cluster, nodes: () => (node ? [node] : []), lastRun: LAST_RUN, times: figures.scenarios, log };
const scenario = (ctx: TestContext, name: string, body: () => Promise<void>) => runScenario(suite, ctx, name, body);

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  let t = Date.now();
  try {
    prepared = await prepareVmNode(log);
    figures.prepare = prepared.timings;
    t = Date.now();
    cluster = await startVmCluster({ hostNodeName: HOST_NODE, log });
  } catch (e) {
    if (e instanceof VmNodeUnavailable && !REQUIRED) {
      skipReason = `VM node unavailable: ${e.message}`;
      console.warn(`[vm-node] SKIPPING: ${skipReason}`);
      return;
    }
    throw e;
  }
  figures.install = { operatorNodeStartMs: Date.now() - t };
  const { cp } = cluster;
  recorder = new Recorder(cluster.kc);
  await recorder.start();

  const corp = await makePrivateCa("klp vm-node artifacts CA", [ARTIFACTS_GUEST]);
  artifactsCaPem = corp.caPem;
  artifacts = await startArtifactServer({ tls: corp, token: ARTIFACTS_TOKEN });
  artifacts.files.set(`${V1}.ko`, await readFile(path.join(prepared.modulesDir, `${V1}.ko`)));
  registry = await startRegistry(prepared.registryBin, (l) => log(`registry: ${l}`));
  node = await VmNode.start({
    prepared, cp, log,
    forwards: [{ guest: `${ARTIFACTS_GUEST}:443`, hostPort: artifacts.port }, { guest: REGISTRY_GUEST, hostPort: registry.port }],
    // The node's own driver module that scenario 9's livepatch patches (loaded by its owner).
    fixtures: [path.join(prepared.modulesDir, `${STALL_TARGET}.ko`)],
    ...(process.env.KLP_VM_NODE_CONSOLE === "1" ? { onConsole: (l: string) => console.log(`  | ${l}`) } : {}),
  });
  log(`VM node ${node.nodeName} booting (work dir ${node.dir})`);
  nodeRecorder = new NodeObjectRecorder(cluster.kc, node.nodeName);
  await nodeRecorder.start();
  await eventually(`node ${node.nodeName} Ready`, 600_000, nodeReady);
  figures.bootToReadyMs = Date.now() - node.startedAt;
  figures.guest = Object.fromEntries(node.marks.filter((m) => m.boot === 0 && m.uptime >= 0).map((m) => [m.name, m.uptime]));
  log(`node Ready ${figures.bootToReadyMs} ms after QEMU started; guest uptime marks ${JSON.stringify(figures.guest)}`);

  // The chart, as its README says.
  const helmMs = await cluster.installChart();
  log(`helm install --wait: operator Available on ${HOST_NODE} in ${helmMs} ms`);

  // The project's own test modules, pinned by sha256, in a ConfigMap (binaryData).
  t = Date.now();
  const files: Record<string, string> = Object.fromEntries(
    [`${V1}.ko`, `${V2}.ko`, "klp_test_v1_badver.ko", REBUILT_KO, `${STALL_MOD}.ko`, `${CRASH_MOD}.ko`].map((f) => [f, f]),
  );
  for (const [key, file] of Object.entries(files)) {
    const bytes = await readFile(path.join(prepared.modulesDir, file));
    sha[key] = (await import("node:crypto")).createHash("sha256").update(bytes).digest("hex");
  }
  await kubectl(["create", "configmap", CM, "-n", NS, ...Object.entries(files).map(([k, f]) => `--from-file=${k}=${path.join(prepared.modulesDir, f)}`)]);
  figures.install = { ...figures.install, helmInstallMs: helmMs, configMapMs: Date.now() - t };
}, 3_600_000);

afterAll(async () => {
  recorder?.stop();
  nodeRecorder?.stop();
  await artifacts?.stop().catch(() => {});
  await registry?.stop().catch(() => {});
  try {
    if (node) {
      await node.stop();
      await node.cleanup(LAST_RUN);
    }
  } finally {
    await cluster?.stop();
    mkdirSync(LAST_RUN, { recursive: true });
    writeFileSync(path.join(LAST_RUN, "figures.json"), `${JSON.stringify(figures, null, 2)}\n`);
    log(`figures (also in ${LAST_RUN}/figures.json): ${JSON.stringify({ ...figures, klpWide: undefined, nodesWide: undefined })}`);
    if (figures.klpWide) log(`kubectl get klp -o wide:\n${figures.klpWide}`);
  }
}, 300_000);

/** A module of the ConfigMap for the guest's kernel, as spec.modules names it. */
function moduleFor(key: string): { kernelRelease: string; sha256: string; configMap: { namespace: string; name: string; key: string } } {
  return { kernelRelease: prepared.krel, sha256: sha[key]!, configMap: { namespace: NS, name: CM, key } };
}

/**
 * FIRST's entry in every version of its patch (the operator's copy) and of the node's object (the
 * agent's write) from t0 on: the Replaced entry scenario 2 left, unchanged but for the boot id (a
 * new boot's agent writes its own). Its lastTransitionTime is part of it: a phase change on the
 * way, even one undone before anyone looked, would have moved it.
 */
function replacedThroughout(t0: number): { klpVersions: number; klpnVersions: number; klpnRewrites: number } {
  const base = replacedEntry!;
  const inPatch = recorder!.since(t0, FIRST);
  const onNode = nodeRecorder!.from(t0, FIRST);
  expect(onNode.length).toBeGreaterThan(0);
  for (const x of inPatch) {
    expect(withoutBoot(x.entry), `${FIRST}'s entry in its status at ${new Date(x.at).toISOString()}`).toEqual(withoutBoot(base.klp));
  }
  for (const x of onNode) {
    expect(withoutBoot(x.entry), `${FIRST}'s entry on the node's object, version ${x.resourceVersion}`).toEqual(withoutBoot(base.klpn));
  }
  const klpnRewrites = onNode.filter((x, i) => i > 0 && !isDeepStrictEqual(x.entry, onNode[i - 1]!.entry)).length;
  return { klpVersions: inPatch.length, klpnVersions: onNode.length, klpnRewrites };
}

describe("the whole stack on a real kernel, inside a VM node", () => {
  it("1. apply: the agent in the guest stages and loads the module; Loaded, tainted OEK, the guest's boot id, /proc/cmdline patched", async (ctx) => {
    await scenario(ctx, "1-apply", async () => {
      await kubectl(["apply", "-f", "-"], patchYaml(FIRST, `${V1}.ko`, sha[`${V1}.ko`]!));
      const p = await waitReady(FIRST);
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

  it("2. cumulative replace across patches: a second patch's v2 (replace) goes live; the first patch's entry says Replaced naming it; v1 leaves the kernel and the disk", async (ctx) => {
    await scenario(ctx, "2-replace-across", async () => {
      const t0 = Date.now();
      const before = await guest();
      const logMark = agentLog().length;
      await kubectl(["apply", "-f", "-"], patchYaml(PATCH, `${V2}.ko`, sha[`${V2}.ko`]!));
      const p = await waitReady(PATCH);
      expect(entryOf(p)).toMatchObject({ phase: "Loaded", moduleName: V2, sha256: sha[`${V2}.ko`], enabled: true, transition: false, tainted: TAINT_OEK, taintFlags: "OEK" });
      expect(entryOf(p)?.previousModuleName).toBeUndefined(); // v1 was never this patch's
      // The first patch: Replaced, naming the second, in the agent's write (the node's object) and
      // in the operator's copy (its status), once v1 is off the node (nothing left to write then).
      const replaced = { phase: "Replaced", moduleName: V1, sha256: sha[`${V1}.ko`], replacedBy: PATCH, reason: "ReplacedByCumulativePatch", enabled: false, transition: false };
      const g = await eventually("v2 live and staged; v1 out of the kernel and off the disk", 120_000, async () => {
        const g = await guest();
        return livepatch(g, V2)?.enabled && !livepatch(g, V1) && !g.modules.some((m) => m.name === V1) && stagedNames(g).join() === `${V2}.ko` ? g : undefined;
      });
      const first = await eventually(`${FIRST}'s entry Replaced, the same on the node's object and in its status`, 120_000, async () => {
        const x = await klp(FIRST);
        const own = nodeRecorder!.latest(FIRST);
        return own?.phase === "Replaced" && !own.transition && sameReport(entryOf(x), own) ? x : undefined;
      });
      expect(entryOf(first)).toMatchObject(replaced);
      expect(entryOf(first)?.message).toContain(PATCH);
      // Done for a patch that wants its module Loaded: the fix is in the kernel, in v2.
      expect(first.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
      expect(first.status?.summary?.replaced).toBe(1);
      expect(entryOf(p)?.replacedBy).toBeUndefined();

      // What the kernel in the guest says: v2 alone, v1's module gone, v2 alone staged for boot.
      expect(g.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
      expect(g.cmdline).toBe(`${V2} patched`);
      expect(g.modules.map((m) => m.name)).toEqual([V2]);
      expect(g.staged).toEqual([{ path: `/var/lib/kpatch/${prepared.krel}/${V2}.ko`, sha256: sha[`${V2}.ko`] }]);
      expect(enableCount(g, V2)).toBe(1);
      expect(enableCount(g, V1)).toBe(enableCount(before, V1));
      // The second patch's load replaced v1 (the kernel's atomic replace); the first patch's own
      // decision (Replaced) took v1 out of the kernel (an unload when the replaced patch had not
      // left sysfs yet, else the removal of its leftover module) and its file off the disk.
      const loaded = await eventually("the agent's log line for the load of v2", 60_000, async () => agentLog().slice(logMark).find((l) => l.msg.msg === "loaded" && l.msg.module === V2));
      expect(loaded.msg).toMatchObject({ patch: PATCH, replaced: [V1] });
      const retired = await eventually("the agent's log lines retiring v1", 60_000, async () => {
        const r = agentLog().slice(logMark).filter((l) => l.msg.module === V1 && HOST_ACTIONS.includes(String(l.msg.msg)));
        return r.some((l) => l.msg.msg === "uninstalled") ? r.map((l) => [l.msg.patch, l.msg.msg]) : undefined;
      });
      expect(retired.length, JSON.stringify(retired)).toBe(2);
      expect([[FIRST, "removed leftover module"], [FIRST, "unloaded"]]).toContainEqual(retired[0]);
      expect(retired[1]).toEqual([FIRST, "uninstalled"]);
      // No livepatch-less moment in the kernel: v2 was enabled before v1 left.
      const lp = node!.lpChanges.filter((c) => c.at >= t0 && c.boot === node!.boot);
      expect(lp.every((c) => Object.keys(c.state).length > 0), JSON.stringify(lp)).toBe(true);

      // The entries on the way: the first patch went from Loaded straight to Replaced (never
      // Loading, Unloading or Failed), in its status and on the node's object; the second, v2 only.
      const inPatch = phases(recorder!.since(t0, FIRST));
      const onNode = phases(nodeRecorder!.from(t0, FIRST));
      const second = phases(recorder!.since(t0, PATCH));
      log(`${FIRST}: ${inPatch.join(" -> ")} (node object: ${onNode.join(" -> ")}); ${PATCH}: ${second.join(" -> ")}`);
      for (const seq of [inPatch, onNode]) expect(seq.slice(seq[0] === `Loaded(${V1})` ? 1 : 0)).toEqual([`Replaced(${V1})`]);
      expect(onNode[0]).toBe(`Loaded(${V1})`);
      expect(second.at(-1)).toBe(`Loaded(${V2})`);
      expect(second.filter((x) => x !== "none" && !x.endsWith(`(${V2})`))).toEqual([]);
      const replacedVersions = recorder!.since(t0, FIRST).filter((x) => x.entry?.phase === "Replaced");
      expect(replacedVersions.every((x) => x.entry?.replacedBy === PATCH)).toBe(true);
      // What scenarios 4 and 5 hold it to.
      replacedEntry = { klp: entryOf(await klp(FIRST))!, klpn: nodeRecorder!.latest(FIRST)! };
      expect(sameReport(replacedEntry.klp, replacedEntry.klpn)).toBe(true);
      figures.replaced = { applyToFirstReplacedMs: (replacedVersions[0]?.at ?? Date.now()) - t0 };
      figures.klpWide = await kubectl(["get", "klp", "-o", "wide"]);
      log(`\n${figures.klpWide}`);
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
      // The good patches are untouched.
      expect(entryOf(await klp(PATCH))).toMatchObject({ phase: "Loaded", moduleName: V2 });
      expect(entryOf(await klp(FIRST))).toMatchObject({ phase: "Replaced", replacedBy: PATCH });
      const seen = recorder!.seen.filter((x) => x.name === BAD).map((x) => x.entry?.phase);
      expect(seen).not.toContain("Loading");
      expect(seen).not.toContain("Staging");
      figures.klpWide = await kubectl(["get", "klp", "-o", "wide"]);
      log(`\n${figures.klpWide}`);
      // Remove it: its finalizer goes as soon as the agent reports it gone (there was nothing to unload).
      await kubectl(["delete", "klp", BAD, "--timeout=180s"], undefined, 200_000);
      expect(await klpByGet(BAD)).toBeUndefined();
    });
  });

  it("4. the agent pod deleted and recreated: the module stays live throughout; the replaced patch stays Replaced", async (ctx) => {
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
      expect(g.dmesg.length).toBe(before.dmesg.length); // no unpatching, no enabling (v1 included)
      expect(node!.lpChanges.length, "the kernel's livepatch state changed").toBe(lpBefore);
      expect(agentLog().filter((l) => l.pod.includes(fresh.uid) && HOST_ACTIONS.includes(String(l.msg.msg)))).toEqual([]);
      const seen = recorder!.since(t0, PATCH);
      expect(seen.every((s) => s.entry?.phase === "Loaded" && s.entry.moduleName === V2), JSON.stringify(phases(seen))).toBe(true);
      expect(entryOf(await klp(PATCH))).toMatchObject({ phase: "Loaded", moduleName: V2, bootID: g.bootId });
      // The replaced patch: the new agent found it Replaced and left its entry as it was.
      const kept = replacedThroughout(t0);
      expect(kept.klpnRewrites).toBe(0);
      expect(entryOf(await klp(FIRST))).toEqual(replacedEntry!.klp);
      figures.replaced = { ...figures.replaced, agentRestartFirstVersions: kept.klpVersions, agentRestartNodeObjectVersions: kept.klpnVersions };
    });
  });

  it("5. the guest rebooted: live again from /var/lib/kpatch before the agent starts; the agent re-reads the new boot and reports Loaded without a second load; the replaced module never comes back", async (ctx) => {
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
      const svcLog = await node!.guestLog("kpatch-service");
      // Its own log, timed: where a boot's load spends its seconds (figures.json has the marks).
      log(`kpatch.service in boot ${b} (service start at ${node!.mark("kpatch-service-start")?.uptime} s uptime, init-start ${node!.mark("init-start")?.fields.date}):\n${svcLog}`);
      const svcOut = JSON.parse(svcLog.split("\n")[0]!) as { loaded: Array<{ name: string }> };
      expect(svcOut).toMatchObject({ ok: true, kernelRelease: prepared.krel, failed: [] });
      // The replaced v1 was not staged for boot, so the boot's load --all could not bring it back.
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
      // The replaced patch: the new boot's agent wrote its own Replaced entry (the new boot id),
      // naming the same patch, with the same transition time (it never left Replaced).
      const first = await eventually(`${FIRST}'s entry to carry the new boot id`, 300_000, async () => {
        const x = await klp(FIRST);
        return entryOf(x)?.bootID === bootIdAfter && nodeRecorder!.latest(FIRST)?.bootID === bootIdAfter ? x : undefined;
      });
      expect(entryOf(first)).toMatchObject({ phase: "Replaced", moduleName: V1, replacedBy: PATCH, enabled: false, lastTransitionTime: replacedEntry!.klp.lastTransitionTime });
      const kept = replacedThroughout(t0);
      figures.replaced = { ...figures.replaced, rebootFirstVersions: kept.klpVersions, rebootNodeObjectVersions: kept.klpnVersions, rebootNodeObjectRewrites: kept.klpnRewrites };
      const g = await guest();
      expect(g.bootId).toBe(bootIdAfter);
      expect(g.cmdline).toBe(`${V2} patched`);
      expect(g.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
      expect(g.modules.map((m) => m.name)).toEqual([V2]);
      // One load of v2 in this boot: kpatch.service's. The agent did not load it again.
      expect(enableCount(g, V2)).toBe(1);
      expect(g.dmesg.some((l) => /unpatching/.test(l))).toBe(false);
      // v1 never came back into this boot's kernel: not in the kernel log, never in sysfs nor in
      // /proc/cmdline (the console's monitor runs from the first second of the boot).
      expect(enableCount(g, V1)).toBe(0);
      expect(node!.lpChanges.filter((c) => c.boot === b && V1 in c.state)).toEqual([]);
      expect(node!.cmdlineChanges.filter((c) => c.boot === b && c.text.includes(V1))).toEqual([]);
      // The agent of the new boot did run (its log is here), and did nothing to the host.
      expect(agentLog().slice(logMark).some((l) => l.msg.msg === "watching this node's KernelLivePatchNode")).toBe(true);
      const hostActions = agentLog().slice(logMark).filter((l) => HOST_ACTIONS.includes(String(l.msg.msg)));
      expect(hostActions, "agent host actions after the reboot").toEqual([]);
      // Once enabled (before the kubelet started), v2 stayed enabled.
      const fromLive = node!.lpChanges.filter((c) => c.boot === b && c.uptime >= live!.uptime);
      expect(fromLive.filter((c) => c.state[V2] !== "1:0" && c.state[V2] !== "1:1"), JSON.stringify(fromLive)).toEqual([]);
      // The entry never left Loaded: the old boot's Loaded, then the new boot's Loaded.
      const seen = recorder!.since(t0, PATCH);
      expect(seen.every((x) => x.entry?.phase === "Loaded"), JSON.stringify(phases(seen))).toBe(true);
    });
  });

  it("5b. the replaced patch deleted: its finalizer goes once the node reports nothing of it left; the cumulative module that replaced it stays live", async (ctx) => {
    await scenario(ctx, "5b-delete-replaced", async () => {
      const t0 = Date.now();
      const before = await guest();
      const lpBefore = node!.lpChanges.length;
      const logMark = agentLog().length;
      await kubectl(["delete", "klp", FIRST, "--timeout=180s"], undefined, 200_000);
      expect(await klpByGet(FIRST)).toBeUndefined();
      // Replaced, then Unloaded (the agent's report that nothing of v1 is on the node), then gone.
      const seq = phases(recorder!.since(t0, FIRST).filter((x) => x.type !== "DELETED"));
      const onNode = phases(nodeRecorder!.from(t0, FIRST));
      log(`${FIRST} while deleting: ${seq.join(" -> ")} (node object: ${onNode.join(" -> ")})`);
      expect(seq).toEqual([`Replaced(${V1})`, `Unloaded(${V1})`]);
      expect(onNode.filter((x) => x !== "none")).toEqual([`Replaced(${V1})`, `Unloaded(${V1})`]);
      // The guest: nothing moved. v2 live, its module, its staged file; no kernel log line.
      const g = await guest();
      expect(g.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
      expect(g.cmdline).toBe(`${V2} patched`);
      expect(g.modules.map((m) => m.name)).toEqual([V2]);
      expect(g.staged).toEqual(before.staged);
      expect(g.dmesg.length).toBe(before.dmesg.length);
      expect(node!.lpChanges.length, "the kernel's livepatch state changed").toBe(lpBefore);
      expect(agentLog().slice(logMark).filter((l) => HOST_ACTIONS.includes(String(l.msg.msg)))).toEqual([]);
      // The cumulative patch: Loaded throughout; its agent stays.
      const seen = recorder!.since(t0, PATCH);
      expect(seen.every((x) => x.entry?.phase === "Loaded" && x.entry.moduleName === V2), JSON.stringify(phases(seen))).toBe(true);
      expect(entryOf(await klp(PATCH))).toMatchObject({ phase: "Loaded", moduleName: V2, enabled: true, transition: false });
      expect((await agentPods()).map((x) => [x.phase, x.deleting])).toEqual([["Running", false]]);
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

  it("6b. cumulative replace inside one patch: Loaded again on v1, then the spec moves to the v2 replace module; v2 live, v1 replaced out of the kernel and retired by the patch itself", async (ctx) => {
    await scenario(ctx, "6b-replace-within", async () => {
      await kubectl(["patch", "klp", PATCH, "--type=merge", "-p", JSON.stringify({ spec: { state: "Loaded", modules: [moduleFor(`${V1}.ko`)] } })]);
      const p1 = await waitReady(PATCH);
      expect(entryOf(p1)).toMatchObject({ phase: "Loaded", moduleName: V1, sha256: sha[`${V1}.ko`], enabled: true, transition: false });
      const before = await eventually("v1 live and staged in the guest", 120_000, async () => {
        const g = await guest();
        return livepatch(g, V1)?.enabled && stagedNames(g).join() === `${V1}.ko` ? g : undefined;
      });
      expect(before.livepatches).toEqual([{ name: V1, enabled: true, transition: false }]);
      const logMark = agentLog().length;

      const t0 = Date.now();
      await kubectl(["patch", "klp", PATCH, "--type=merge", "-p", JSON.stringify({ spec: { modules: [moduleFor(`${V2}.ko`)] } })]);
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
      expect(enableCount(g, V2)).toBe(enableCount(before, V2) + 1);
      expect(enableCount(g, V1)).toBe(enableCount(before, V1));
      // The replace, as the agent reported it: its load of v2 replaced v1.
      const loaded = await eventually("the agent's log line for the load of v2", 60_000, async () =>
        agentLog().slice(logMark).find((l) => l.msg.msg === "loaded" && l.msg.module === V2));
      expect(loaded.msg).toMatchObject({ patch: PATCH, replaced: [V1] });
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
      // v1 retired by the patch itself (its previous module): its leftover module out of the
      // kernel, its file off the disk (so the next boot's kpatch.service loads v2 alone); the entry
      // no longer names it.
      const settled = await eventually("v1 retired by the agent", 60_000, async () => {
        const x = await guest();
        return !x.modules.some((m) => m.name === V1) && !stagedNames(x).includes(`${V1}.ko`) ? x : undefined;
      });
      expect(stagedNames(settled)).toEqual([`${V2}.ko`]);
      expect(settled.modules.map((m) => m.name)).toEqual([V2]);
      const retired = await eventually("the agent's log lines retiring v1", 60_000, async () => {
        const r = agentLog().slice(logMark).filter((l) => l.msg.module === V1 && ["removed leftover module", "uninstalled"].includes(String(l.msg.msg)));
        return r.length >= 2 ? r : undefined;
      });
      expect(retired.map((l) => [l.msg.patch, l.msg.msg])).toEqual([[PATCH, "removed leftover module"], [PATCH, "uninstalled"]]);
      expect(entryOf(await klp(PATCH))?.previousModuleName).toBeUndefined();
      // While v2 was loading the entry said which module it would retire.
      expect(recorder!.since(t0, PATCH).some((x) => x.entry?.moduleName === V2 && x.entry.previousModuleName === V1)).toBe(true);
    });
  });

  it("7. delete: the finalizer waits for the guest's unload report, then goes", async (ctx) => {
    await scenario(ctx, "7-delete", async () => {
      // Loaded on v2 since 6b: there is something to unload.
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

// ---------------------------------------------------------------------------------------------
// When things go wrong (README "When things go wrong"): on the same node, after scenario 7 (no
// patch left), each scenario with a patch of its own that it deletes again; the crash goes last.

/** Guest uptimes (s) of the kernel log lines that contain `what` ("[  12.345678] ..." lines). */
function dmesgTimes(lines: string[], what: string): number[] {
  return lines.filter((l) => l.includes(what)).map((l) => {
    const m = /^\[\s*(\d+\.\d+)\]/.exec(l);
    if (!m) throw new Error(`no timestamp on the kernel log line: ${l}`);
    return Number(m[1]);
  });
}

/**
 * No patch left: the operator removes the agents' DaemonSet; the next scenario starts, as scenario
 * 8 does after 7, with no agent pod on the node (not with the old DaemonSet's pod still stopping
 * while the new DaemonSet's pod starts).
 */
/** Deletes the patch and waits for it to go; then nothing of it is live or staged in the guest. Returns what the guest showed. */
async function deleteAndCheckGone(name: string): Promise<GuestState> {
  await kubectl(["delete", "klp", name, "--timeout=300s"], undefined, 320_000);
  expect(await klpByGet(name)).toBeUndefined();
  const after = await guest();
  expect(after.livepatches).toEqual([]);
  expect(after.staged).toEqual([]);
  return after;
}

async function agentGone(): Promise<void> {
  await eventually("agent pods gone", 300_000, async () => (await agentPods()).length === 0);
}

describe("when things go wrong, on the same VM node", () => {
  it("8. a same-named rebuild: the spec moves to another build of klp_test_v1; the old build leaves the kernel before the new one loads, and no status says the rebuild is Loaded while the old code runs", async (ctx) => {
    await scenario(ctx, "8-rebuild", async () => {
      const REBUILD = "vm-rebuild";
      const oldText = `${V1} patched`;
      const newText = `${V1} rebuilt`;
      const oldSha = sha[`${V1}.ko`]!;
      const newSha = sha[REBUILT_KO]!;
      expect(newSha).not.toBe(oldSha);
      await kubectl(["apply", "-f", "-"], patchYaml(REBUILD, `${V1}.ko`, oldSha));
      const p0 = await waitReady(REBUILD);
      expect(entryOf(p0)).toMatchObject({ phase: "Loaded", moduleName: V1, sha256: oldSha });
      const before = await guest();
      expect(before.cmdline).toBe(oldText);
      expect(before.livepatches).toEqual([{ name: V1, enabled: true, transition: false }]);
      const b = node!.boot;

      const t0 = Date.now();
      await kubectl(["patch", "klp", REBUILD, "--type=merge", "-p", JSON.stringify({
        spec: { modules: [{ kernelRelease: prepared.krel, sha256: newSha, configMap: { namespace: NS, name: CM, key: REBUILT_KO } }] },
      })]);
      const p = await waitReady(REBUILD);
      // The boot id as the guest's kernel gives it (the console's copy of it can be garbled by kernel
      // messages written over it on the serial line).
      expect(entryOf(p)).toMatchObject({ phase: "Loaded", moduleName: V1, sha256: newSha, enabled: true, transition: false, bootID: before.bootId });
      const g = await guest();
      expect(g.bootId).toBe(before.bootId);
      expect(g.cmdline).toBe(newText);
      expect(g.livepatches).toEqual([{ name: V1, enabled: true, transition: false }]);
      // One more load of klp_test_v1 in this boot: the rebuild's. Staged for boot: the rebuild.
      expect(enableCount(g, V1)).toBe(enableCount(before, V1) + 1);
      expect(g.dmesg.filter((l) => l.includes(`'${V1}': unpatching complete`)).length).toBe(before.dmesg.filter((l) => l.includes(`'${V1}': unpatching complete`)).length + 1);
      expect(g.staged).toEqual([{ path: `/var/lib/kpatch/${prepared.krel}/${V1}.ko`, sha256: newSha }]);

      // What the guest printed (its monitor: every change of /proc/cmdline, host arrival time) against
      // every status version the API server served (the recorder), from the spec change on.
      const texts = node!.cmdlineChanges.filter((c) => c.boot === b);
      const textAt = (t: number) => texts.filter((c) => c.at <= t).at(-1)?.text;
      const seen = recorder!.since(t0, REBUILD);
      const tag = (e: NodeEntry | undefined) => (e ? `${e.phase}(${e.sha256 === newSha ? "rebuild" : e.sha256 === oldSha ? "v1" : e.sha256 ?? "-"})` : "none");
      const seq: string[] = [];
      for (const x of seen) if (seq.at(-1) !== tag(x.entry)) seq.push(tag(x.entry));
      const printed = texts.filter((c) => c.at >= t0).map((c) => c.text);
      log(`entry sequence: ${seq.join(" -> ")}; the guest printed: ${[textAt(t0), ...printed].map((x) => JSON.stringify(x)).join(" -> ")}`);
      const loadedNew = seen.filter((x) => x.entry?.phase === "Loaded" && x.entry.sha256 === newSha);
      expect(loadedNew.length).toBeGreaterThan(0);
      for (const x of loadedNew) {
        expect(textAt(x.at), `/proc/cmdline in the guest when a status version said Loaded with the rebuild's digest (${new Date(x.at).toISOString()})`).not.toBe(oldText);
      }
      // The old build went first (the node unpatched in between, for one load), then the rebuild.
      expect(textAt(t0)).toBe(oldText);
      expect(printed.at(-1)).toBe(newText);
      expect(printed.indexOf(newText)).toBeGreaterThan(0);
      expect(printed.slice(0, printed.indexOf(newText)).every((x) => x !== oldText && x !== newText && !x.includes("patched")), JSON.stringify(printed)).toBe(true);
      // The entry said what the agent was doing: v1 Unloading, then the rebuild Loading, then Loaded.
      expect(seq[0]).toBe("Loaded(v1)");
      expect(seq.at(-1)).toBe("Loaded(rebuild)");
      expect(seq.indexOf("Unloading(v1)")).toBeGreaterThan(0);
      expect(seq.indexOf("Loading(rebuild)")).toBeGreaterThan(seq.indexOf("Unloading(v1)"));
      expect(seq.indexOf("Loaded(rebuild)")).toBeGreaterThan(seq.indexOf("Loading(rebuild)"));
      expect(seq.filter((x) => /^(Failed|Stalled)/.test(x))).toEqual([]);
      const newLine = texts.find((c) => c.at >= t0 && c.text === newText)!;
      figures.rebuild = { newTextSeenToLoadedStatusMs: loadedNew[0]!.at - newLine.at, specChangeToLoadedMs: loadedNew[0]!.at - t0 };

      const after = await deleteAndCheckGone(REBUILD);
      expect(after.cmdline).not.toContain(V1);
      await agentGone();
    });
  });

  it("9. an unload that stalls is retried with backoff, never back to back; the entry stays Stalled naming the blocking task; released, it unloads", async (ctx) => {
    await scenario(ctx, "9-stall-backoff", async () => {
      const STALL = "vm-stall-unload";
      const TIMEOUT_S = 15; // the schema's minimum
      // Two attempts fit (the first, and the first retry 15-30 s after its reversal); back to back
      // there would be four. The second retry's wait (30-60 s) is seen after the release.
      const WINDOW_S = 60;
      const starting = `'${STALL_MOD}': starting unpatching transition`;
      const reversed = `'${STALL_MOD}': patching complete`; // a reversed unpatching ends as "patching complete"
      await kubectl(["apply", "-f", "-"], patchYaml(STALL, `${STALL_MOD}.ko`, sha[`${STALL_MOD}.ko`]!, "Loaded", [`  transitionTimeoutSeconds: ${TIMEOUT_S}`]));
      const p0 = await waitReady(STALL);
      expect(entryOf(p0)).toMatchObject({ phase: "Loaded", moduleName: STALL_MOD, enabled: true, transition: false });
      // The node's driver module, loaded by its owner after the patch: the kernel patches it as it
      // loads, and its kernel thread lives inside the livepatch's klp_stall_wait() from then on.
      const fx = await node!.fixture("load", STALL_TARGET);
      expect(fx.loaded).toBe(true);
      const g0 = await guest();
      expect(g0.dmesg.some((l) => l.includes(`applying patch '${STALL_MOD}' to loading module '${STALL_TARGET}'`)), g0.dmesg.join("\n")).toBe(true);
      expect(livepatch(g0, STALL_MOD)).toEqual({ name: STALL_MOD, enabled: true, transition: false });
      const b = node!.boot;

      const t0 = Date.now();
      await kubectl(["patch", "klp", STALL, "--type=merge", "-p", JSON.stringify({ spec: { state: "Unloaded" } })]);
      // The first attempt, as the guest's monitor sees it: the patch disabled, in transition.
      const first = await node!.until("the first unload attempt (an unpatching transition)", () =>
        node!.lpChanges.find((c) => c.boot === b && c.at >= t0 && c.state[STALL_MOD] === "0:1"), 300_000);
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000 + 5000));
      const g = await guest();
      const starts = dmesgTimes(g.dmesg, starting);
      const ends = dmesgTimes(g.dmesg, reversed);
      expect(starts.length).toBeGreaterThan(0);
      const inWindow = starts.filter((t) => t <= starts[0]! + WINDOW_S);
      // Each attempt stalled and was reversed (no "unpatching complete"); then the next waited.
      const gaps = inWindow.slice(1).map((t, i) => {
        const end = ends.filter((e) => e > inWindow[i]! && e < t).at(-1);
        expect(end, `attempt ${i + 1} (at ${inWindow[i]} s) was reversed before attempt ${i + 2}`).toBeDefined();
        return Math.round((t - end!) * 10) / 10;
      });
      const attemptsByMonitor = node!.lpChanges.filter((c, i, all) => c.boot === b && c.at >= first.at && c.at <= first.at + WINDOW_S * 1000 && c.state[STALL_MOD] === "0:1" && all[i - 1]?.state[STALL_MOD] !== "0:1").length;
      figures.stall = { attempts: inWindow.length, attemptsByMonitor, attemptStartsS: inWindow.map((t) => Math.round((t - starts[0]!) * 10) / 10), gapsS: gaps, firstAttemptAfterSpecMs: first.at - t0 };
      log(`unload attempts in ${WINDOW_S} s: ${inWindow.length} (monitor: ${attemptsByMonitor}), at +${figures.stall.attemptStartsS as number[]} s; waits between a reversal and the next attempt: ${gaps.join(", ")} s`);
      // Back to back, an attempt would follow every ~${TIMEOUT_S} s (4 in the window). The agent's
      // schedule: the first retry 15-30 s after the failure, then 30-60 s (HOST_RETRY).
      expect(inWindow.length).toBe(2);
      expect(gaps[0]!).toBeGreaterThanOrEqual(14);
      expect(g.dmesg.some((l) => l.includes(`'${STALL_MOD}': unpatching complete`))).toBe(false);
      // Still in the kernel (reversed each time), and never forced: live between attempts; the
      // snapshot may land in an attempt, where it is disabled in its (unpatching) transition.
      const still = livepatch(g, STALL_MOD);
      expect(still, "the stalled patch is still in the kernel").toBeDefined();
      expect(still!.enabled || still!.transition, JSON.stringify(still)).toBe(true);
      // The entry: Stalled from the first failure on, naming the task that holds the old code.
      const seen = recorder!.since(t0, STALL);
      const firstStalled = seen.findIndex((x) => x.entry?.phase === "Stalled");
      expect(firstStalled, JSON.stringify(phases(seen))).toBeGreaterThanOrEqual(0);
      const stalledOn = seen.slice(firstStalled).filter((x) => x.type !== "DELETED");
      expect(stalledOn.every((x) => x.entry?.phase === "Stalled"), JSON.stringify(phases(seen))).toBe(true);
      const e = entryOf(await klp(STALL))!;
      expect(e).toMatchObject({ phase: "Stalled", moduleName: STALL_MOD, reason: "TransitionStalled" });
      expect(e.stalledTasks?.map((t) => t.comm)).toContain("klp_stall_thread");
      log(`Stalled: ${e.message}; tasks ${JSON.stringify(e.stalledTasks)}`);

      // Release: the owner unloads the driver module (its thread stops) between two attempts; the
      // next attempt unloads the patch.
      await node!.until("the patch between two attempts", () => node!.lpChanges.filter((c) => c.boot === b).at(-1)?.state[STALL_MOD] === "1:0", 120_000);
      const tRelease = Date.now();
      const out = await node!.fixture("unload", STALL_TARGET);
      expect(out.loaded).toBe(false);
      const p = await waitReady(STALL, 400_000);
      expect(entryOf(p)).toMatchObject({ phase: "Unloaded", moduleName: STALL_MOD });
      figures.stall.releaseToUnloadedMs = Date.now() - tRelease;
      const done = await guest();
      expect(done.livepatches).toEqual([]);
      expect(done.modules).toEqual([]);
      expect(done.staged).toEqual([]);
      expect(done.dmesg.some((l) => l.includes(`'${STALL_MOD}': unpatching complete`))).toBe(true);
      // The attempt that unloaded it came on the schedule's second wait after the last reversal.
      const allStarts = dmesgTimes(done.dmesg, starting);
      const lastStart = allStarts.at(-1)!;
      const lastReversal = dmesgTimes(done.dmesg, reversed).filter((t) => t < lastStart).at(-1)!;
      figures.stall.lastWaitS = Math.round((lastStart - lastReversal) * 10) / 10;
      expect(allStarts.length, done.dmesg.join("\n")).toBe(3);
      expect(figures.stall.lastWaitS as number).toBeGreaterThanOrEqual(29);
      await kubectl(["delete", "klp", STALL, "--timeout=300s"], undefined, 320_000);
      expect(await klpByGet(STALL)).toBeUndefined();
      await agentGone();
    });
  });

  it("9b. a url source on a private artifact server: the guest's agent downloads over HTTPS with the CA bundle and the token from the operator's namespace (read through the Role the operator keeps), and /proc shows the patched text", async (ctx) => {
    await scenario(ctx, "9b-url-private-ca", async () => {
      const URLPATCH = "vm-url-private";
      await kubectl(["create", "configmap", "vm-corp-ca", "-n", NS, "--from-literal", `ca.crt=${artifactsCaPem}`]);
      await kubectl(["create", "secret", "generic", "vm-artifacts-token", "-n", NS, "--from-literal", `token=${ARTIFACTS_TOKEN}`]);
      const yaml = patchYaml(URLPATCH, `${V1}.ko`, sha[`${V1}.ko`]!).replace(
        /^ {6}configMap: .*$/m,
        [
          `      url: https://${ARTIFACTS_GUEST}/${V1}.ko`,
          "      urlAccess:",
          "        caBundle: {configMapName: vm-corp-ca, trust: BundleOnly}",
          "        bearerTokenSecret: {name: vm-artifacts-token}",
        ].join("\n"),
      );
      expect(yaml).toContain("urlAccess");
      await kubectl(["apply", "-f", "-"], yaml);
      const p = await waitReady(URLPATCH);
      expect(entryOf(p)).toMatchObject({ phase: "Loaded", moduleName: V1, sha256: sha[`${V1}.ko`], enabled: true, transition: false });
      const g = await guest();
      expect(g.cmdline).toBe(`${V1} patched`);
      expect(livepatch(g, V1)).toEqual({ name: V1, enabled: true, transition: false });
      // The agent's own download (a pod on the guest, through QEMU's forward), with the token.
      expect(artifacts!.requests.filter((r) => r.path === `/${V1}.ko`).map((r) => r.headers.authorization)).toContain(`Bearer ${ARTIFACTS_TOKEN}`);
      // The operator (with the chart's RBAC) granted the agent exactly these two objects.
      const role = await cluster!.getJson<{ rules?: Array<{ resources: string[]; resourceNames?: string[] }> }>(["get", "role", "kpatch-agent-url-access", "-n", NS]);
      expect(role.rules?.map((r) => [r.resources[0], r.resourceNames])).toEqual([["secrets", ["vm-artifacts-token"]], ["configmaps", ["vm-corp-ca"]]]);
      expect(agentLog().map((l) => JSON.stringify(l.msg)).join("\n")).not.toContain(ARTIFACTS_TOKEN);

      await deleteAndCheckGone(URLPATCH);
      await agentGone();
    });
  });

  it("9c. a module image pulled by the VM node's kubelet: pushed to a registry on this machine, pinned by digest; the guest's kubelet pulls it (the agent image's pullPolicy is Never), the copying container hands the file to the agent, and /proc shows the patched text", async (ctx) => {
    await scenario(ctx, "9c-module-image", async () => {
      const IMGPATCH = "vm-module-image";
      const inImage = `/modules/${V1}.ko`;
      const pushed = await new Promise<string>((resolve, reject) =>
        execFile("bash", [path.join(REPO, "scripts/images/module-image.sh"), path.join(prepared.modulesDir, `${V1}.ko`), inImage, `${registry!.address}/klp/vm-module:${node!.nodeName}`, "--push"], { encoding: "utf8" }, (err, out, errOut) =>
          err ? reject(new Error(`module-image.sh --push: ${errOut}`)) : resolve(out.trim().split("\n").at(-1) ?? ""),
        ),
      );
      const digest = /@(sha256:[0-9a-f]{64})$/.exec(pushed)?.[1];
      expect(digest, `the pushed reference ${pushed}`).toBeDefined();
      const reference = `${REGISTRY_GUEST}/klp/vm-module@${digest}`;
      const yaml = patchYaml(IMGPATCH, `${V1}.ko`, sha[`${V1}.ko`]!).replace(/^ {6}configMap: .*$/m, `      image: {reference: "${reference}", path: ${inImage}}`);
      expect(yaml).toContain(reference);
      const t0 = Date.now();
      await kubectl(["apply", "-f", "-"], yaml);
      const p = await waitReady(IMGPATCH);
      const loadedMs = Date.now() - t0;
      expect(entryOf(p)).toMatchObject({ phase: "Loaded", moduleName: V1, sha256: sha[`${V1}.ko`], enabled: true, transition: false });
      const g = await guest();
      expect(g.cmdline).toBe(`${V1} patched`);
      expect(livepatch(g, V1)).toEqual({ name: V1, enabled: true, transition: false });
      // Pulled, not preloaded: the registry served that manifest, and the guest's kubelet said so.
      expect(registry!.manifestsServed()).toContain(`klp/vm-module@${digest}`);
      const [pod] = (await agentPods()).filter((x) => !x.deleting);
      const full = await cluster!.getJson<{ status: { initContainerStatuses?: Array<{ name: string; imageID: string; state: { terminated?: { exitCode: number } } }> } }>(["get", "pod", "-n", NS, pod!.name]);
      const copy = full.status.initContainerStatuses?.find((c) => c.name === "module-0");
      expect(copy?.imageID).toContain(digest!);
      expect(copy?.state.terminated?.exitCode).toBe(0);
      const events = await cluster!.getJson<{ items: Array<{ reason: string; message: string }> }>(["get", "events", "-n", NS, "--field-selector", `involvedObject.name=${pod!.name}`]);
      expect(events.items.filter((e) => e.reason === "Pulled").map((e) => e.message).join("\n")).toMatch(/Successfully pulled image/);
      figures.moduleImage = { applyToLoadedMs: loadedMs, manifestsServed: registry!.manifestsServed().length };
      log(`module image ${reference}: Loaded ${loadedMs} ms after apply (the agent pod created for the patch pulled it in its copying init container)`);

      await deleteAndCheckGone(IMGPATCH);
      await agentGone();
    });
  });

  it("10. a module that crashes the kernel once live: the node reboots, the module is not loaded again and nothing of it stays on the disk; the entry is Failed (reboot during its soak) and the rollout halts", async (ctx) => {
    await scenario(ctx, "10-crash", async () => {
      // The guest boots with panic=1; the kubelet sets kernel.panic=10 (as on any node), so the
      // guest reboots 10 s after the panic.
      const CRASH = "vm-crash";
      const crashSha = sha[`${CRASH_MOD}.ko`]!;
      const b = node!.boot;
      const bootIdBefore = node!.bootIds[b]!;
      node!.expectPanic(/klp_test_crash/);
      const t0 = Date.now();
      await kubectl(["apply", "-f", "-"], patchYaml(CRASH, `${CRASH_MOD}.ko`, crashSha, "Loaded", ["  rollout: {soakSeconds: 600, failureThreshold: 1}"]));
      // Live: the guest printed the crash module's /proc/cmdline; then it panicked and rebooted.
      const live = await node!.until("klp_test_crash live in the guest", () =>
        node!.cmdlineChanges.find((c) => c.boot === b && c.at >= t0 && c.text === `${CRASH_MOD} patched`), 300_000);
      const panic = await node!.until("the kernel panic klp_test_crash causes", () => node!.panics.find((x) => x.boot === b && x.expected), 120_000);
      expect(panic.line).toContain(CRASH_MOD);
      await node!.until("the guest to boot again after the panic", () => node!.boot > b, 300_000);
      const b2 = node!.boot;
      const bootIdAfter = node!.bootIds[b2]!;
      expect(bootIdAfter).not.toBe(bootIdBefore);
      // What the crashed boot had reported when it went down.
      const lastBefore = recorder!.since(t0, CRASH).filter((x) => x.at <= panic.at && x.entry).at(-1)?.entry;
      log(`before the panic the entry said ${lastBefore?.phase} (boot ${lastBefore?.bootID}); live ${panic.at - live.at} ms before the panic`);
      // The new boot's kpatch.service found nothing of it to load (it was never staged for boot).
      const svc = await node!.waitMark("kpatch-service-done", 300_000, b2);
      expect(svc.fields.rc).toBe("0");
      const svcOut = JSON.parse((await node!.guestLog("kpatch-service")).split("\n")[0]!) as { loaded: Array<{ name: string }> };
      expect(svcOut.loaded.map((l) => l.name)).not.toContain(CRASH_MOD);

      // Under software emulation on a busy machine, the guest that came back once hung with both
      // CPUs held in the kernel by the container runtime (soft lockups for 13 minutes, nothing of
      // this project loaded). A hung node is power-cycled, by its hardware watchdog or its owner:
      // so is the guest, once, when its soft-lockup detector reports a task stuck for 120 s. The
      // entry must then say the same of the boot the agent comes back in.
      const p = await eventually("the entry Failed after the reboot", 600_000, async () => {
        const p = await klp(CRASH);
        if (entryOf(p)?.phase === "Failed") return p;
        if (node!.boot > b && node!.stuckSeconds() >= 120 && node!.powerCycles.length === 0) {
          await node!.powerCycle(`soft lockup for ${node!.stuckSeconds()} s after the crash's reboot (${node!.softLockups.at(-1)?.task})`);
          await node!.until("the guest to boot again after the power cycle", () => node!.boot > b2, 300_000);
        }
        return undefined;
      });
      const e = entryOf(p)!;
      const bootIdNow = node!.bootIds[node!.boot]!;
      log(`after the reboot: ${e.phase} ${e.reason}: ${e.message}${node!.powerCycles.length ? ` (the guest was power-cycled: ${node!.powerCycles[0]!.why})` : ""}`);
      expect(["RebootDuringSoak", "RebootDuringLoad"]).toContain(e.reason);
      expect(e.message).toContain(bootIdBefore);
      expect(e.message).toContain(bootIdNow);
      expect(e).toMatchObject({ moduleName: CRASH_MOD, sha256: crashSha, bootID: bootIdNow });
      // The operator counted the failure: the rollout halted at failureThreshold 1.
      const halted = await eventually("the rollout halted", 120_000, async () => {
        const x = await klp(CRASH);
        return x?.status?.rollout?.halted === true ? x : undefined;
      });
      expect(halted.status?.conditions?.find((c) => c.type === "Degraded")?.status).toBe("True");
      // The guest: not loaded in the new boot, nothing of it in /var/lib/kpatch (.loading included)
      // nor in the agent's record.
      const g = await eventually("nothing of klp_test_crash left in the guest's /var/lib/kpatch", 120_000, async () => {
        const g = await guest();
        return !g.staged.some((f) => f.path.includes(CRASH_MOD)) && !(g.record ?? "").includes(CRASH_MOD) ? g : undefined;
      });
      expect(g.bootId).toBe(bootIdNow);
      expect(g.livepatches.map((l) => l.name)).not.toContain(CRASH_MOD);
      expect(g.modules.map((m) => m.name)).not.toContain(CRASH_MOD);
      expect(enableCount(g, CRASH_MOD)).toBe(0);
      expect(g.stagedDirs.filter((d) => d.includes(".loading"))).toEqual([]);
      expect(g.cmdline).not.toContain(CRASH_MOD);
      // Not loaded at any moment of the new boots (their monitor runs from the first second).
      expect(node!.lpChanges.filter((c) => c.boot > b && CRASH_MOD in c.state)).toEqual([]);
      expect(node!.cmdlineChanges.filter((c) => c.boot > b && c.text.includes(CRASH_MOD))).toEqual([]);
      expect(node!.panics.map((x) => [x.boot, x.expected])).toEqual([[b, true]]);
      figures.crash = {
        reason: e.reason, liveToPanicMs: panic.at - live.at, panicToFailedMs: Date.now() - panic.at, powerCycles: node!.powerCycles.length,
        loadedReportedBeforePanicMs: lastBefore?.phase === "Loaded" ? panic.at - (recorder!.since(t0, CRASH).find((x) => x.entry?.phase === "Loaded")?.at ?? panic.at) : undefined,
      };

      await deleteAndCheckGone(CRASH);
    });
  });
});
