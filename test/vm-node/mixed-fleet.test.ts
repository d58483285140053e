// A mixed fleet on real kernels: two VM nodes on two Debian kernel releases (the pinned 6.1.0-56 and
// 6.1.0-57, KLP_SECOND_KERNEL_RELEASE) and two simulated nodes on a third release, joined to one
// control plane, the operator installed by its chart on this machine (vm-cluster.ts). One patch with
// a module per release rolls across them: each guest runs its own release's build, checked from
// inside the guest; the simulated nodes are NotApplicable. A second patch's cumulative module then
// replaces the first on both guests: the first patch's entries say Replaced naming the second, and
// stay so, never loaded back, across a restart of both agents and a reboot of the second release's
// guest (the pinned release's reboot is vm-node.test.ts's scenario 5).
//
// The guests boot side by side from one guest image (only the initramfs is per release,
// scripts/vm-node/build-guest.sh); every change goes through kubectl; the guests are only read
// (their kernels' sysfs, /var/lib/kpatch, dmesg, the console's monitor of /sys/kernel/livepatch and
// /proc/cmdline, the pod logs), but for the reboot, which is the machine's owner's. See
// test/vm-node/README.md.
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import type { KernelLivePatch, NodeEntry } from "../../crds/schema.ts";
import { startSimAgent, type SimNode } from "../support/klp.ts";
import { enableCount, prepareVmNode, VM_CACHE, VmNode, VmNodeUnavailable, type GuestState, type PreparedVmNode } from "../support/vm-node.ts";
import { agentLog, HOST_ACTIONS } from "./agent-log.ts";
import { NodeObjectRecorder, phases, sameReport, withoutBoot } from "./node-object-recorder.ts";
import { runScenario } from "./scenario.ts";
import { eventuallyOn, waitPatchReady } from "./waits.ts";
import { NS, startVmCluster, type VmCluster } from "./vm-cluster.ts";

const REQUIRED = process.env.KLP_VM_NODE_REQUIRED === "1";
const LAST_RUN = path.join(VM_CACHE, "last-run-mixed");
const SECOND_RELEASE = process.env.KLP_SECOND_KERNEL_RELEASE ?? "6.1.0-57-amd64";
/** The simulated nodes' release: one spec.modules never names. */
const SIM_RELEASE = "6.1.0-55-amd64";
const SIM_NODES = ["klp-mixed-sim-a", "klp-mixed-sim-b"];
const FLEET = "klp-mixed/fleet";
const HOST_NODE = "klp-mixed-operator-node";
const CM = "mixed-fleet-modules";
const FIRST = "mixed-first"; // klp_test_v1 per release
const SECOND = "mixed-cumulative"; // klp_test_v2 per release, `replace`: replaces FIRST
const V1 = "klp_test_v1";
const V2 = "klp_test_v2";
const TAINT_OEK = 4096 + 8192 + 32768; // out-of-tree, unsigned, livepatched

/** A VM node of the fleet: its release's build of each module, pinned by sha256. */
interface Guest {
  prepared: PreparedVmNode;
  node: VmNode;
  /** Every version of its KernelLivePatchNode: the agent's own writes. */
  recorder: NodeObjectRecorder;
  sha: Record<typeof V1 | typeof V2, string>;
}

let skipReason: string | undefined;
let cluster: VmCluster | undefined;
const guests: Guest[] = [];
const sims: SimNode[] = [];
/** FIRST's entry on each guest once Replaced (scenario 2): what 3 and 4 hold it to. */
const replacedEntry = new Map<string, NodeEntry>();
const figures: { scenarios: Record<string, number>; setup?: Record<string, number>; guests?: Record<string, unknown>; klpWide?: string; klpnWide?: string } = { scenarios: {} };
const suiteStart = Date.now();

function log(line: string): void {
  console.log(`[vm-mixed ${((Date.now() - suiteStart) / 1000).toFixed(0).padStart(4)} s] ${line}`);
}

const kubectl = (args: string[], input?: string, timeoutMs?: number) => cluster!.kubectl(args, input, timeoutMs);

const klp = (name: string) => cluster!.getPatch(name);

const entryOf = (p: KernelLivePatch | undefined, nodeName: string): NodeEntry | undefined => p?.status?.nodes?.find((e) => e.nodeName === nodeName);

const eventually = eventuallyOn(() => guests.map((g) => g.node));
const waitReady = (name: string) => waitPatchReady({ cp: cluster!.cp, read: klp, get: klp, eventually }, name);

/** The patch: one module per guest's release, from the ConfigMap, on every node labelled FLEET. */
function patchYaml(name: string, module: typeof V1 | typeof V2): string {
  return [
    "apiVersion: livepatch.kpatch.dev/v1alpha1",
    "kind: KernelLivePatch",
    "metadata:",
    `  name: ${name}`,
    "spec:",
    "  state: Loaded",
    `  description: ${module} on a fleet of two kernel releases`,
    "  nodeSelector:",
    "    matchLabels:",
    `      ${FLEET}: "yes"`,
    "  modules:",
    ...guests.flatMap((g) => [
      `    - kernelRelease: ${g.prepared.krel}`,
      `      sha256: ${g.sha[module]}`,
      `      configMap: {namespace: ${NS}, name: ${CM}, key: ${moduleKey(module, g.prepared.krel)}}`,
    ]),
    "",
  ].join("\n");
}

const moduleKey = (module: string, krel: string) => `${module}-${krel}.ko`;
const livepatch = (s: GuestState, name: string) => s.livepatches.find((l) => l.name === name);
const staged = (g: Guest, module: typeof V1 | typeof V2) => ({ path: `/var/lib/kpatch/${g.prepared.krel}/${module}.ko`, sha256: g.sha[module] });

/** FIRST's entry on the guest's node object from t0 on: scenario 2's Replaced entry, but for the boot id. */
function replacedThroughout(g: Guest, t0: number): number {
  const base = replacedEntry.get(g.node.nodeName)!;
  const onNode = g.recorder.from(t0, FIRST);
  expect(onNode.length).toBeGreaterThan(0);
  for (const x of onNode) expect(withoutBoot(x.entry), `${FIRST}'s entry on ${g.node.nodeName}, version ${x.resourceVersion}`).toEqual(withoutBoot(base));
  return onNode.filter((x, i) => i > 0 && !isDeepStrictEqual(x.entry, onNode[i - 1]!.entry)).length;
}

const suite = { skipReason: () => skipReason, cluster: () => cluster, nodes: () => (guests.length === 2 ? guests.map((g) => g.node) : []), lastRun: LAST_RUN, times: figures.scenarios, log };
const scenario = (ctx: TestContext, name: string, body: () => Promise<void>) => runScenario(suite, ctx, name, body);

async function simulatedNode(name: string): Promise<SimNode> {
  await kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name, [FLEET]: "yes" } } }));
  return startSimAgent(name, SIM_RELEASE, { kubeconfig: cluster!.cp.kubeconfigPath });
}

beforeAll(async () => {
  const setup: Record<string, number> = {};
  let t = Date.now();
  const prepared: PreparedVmNode[] = [];
  try {
    // One at a time: both share the guest's cache (only the initramfs differs).
    prepared.push(await prepareVmNode(log));
    prepared.push(await prepareVmNode(log, SECOND_RELEASE));
    cluster = await startVmCluster({ hostNodeName: HOST_NODE, log });
  } catch (e) {
    if (e instanceof VmNodeUnavailable && !REQUIRED) {
      skipReason = `VM node unavailable: ${e.message}`;
      console.warn(`[vm-mixed] SKIPPING: ${skipReason}`);
      return;
    }
    throw e;
  }
  // The pinned release may have fallen back to the current one (scripts/kernel/ensure-tools.sh).
  if (prepared[0]!.krel === prepared[1]!.krel) throw new Error(`both VM nodes would run ${prepared[0]!.krel}: set KLP_SECOND_KERNEL_RELEASE to another release`);
  setup.prepareAndClusterMs = Date.now() - t;

  // Both guests boot side by side.
  t = Date.now();
  const nodes = await Promise.all(prepared.map((p, i) => VmNode.start({
    prepared: p, cp: cluster!.cp, nodeName: `vm-mixed-${i}-${p.krel.split("-")[1]}`, log: (l) => log(`${p.krel}: ${l}`),
    ...(process.env.KLP_VM_NODE_CONSOLE === "1" ? { onConsole: (l: string) => console.log(`  ${i}| ${l}`) } : {}),
  })));
  for (const [i, node] of nodes.entries()) {
    const p = prepared[i]!;
    const sha = {} as Guest["sha"];
    for (const m of [V1, V2] as const) sha[m] = createHash("sha256").update(await readFile(path.join(p.modulesDir, `${m}.ko`))).digest("hex");
    const recorder = new NodeObjectRecorder(cluster.kc, node.nodeName);
    await recorder.start();
    guests.push({ prepared: p, node, recorder, sha });
  }
  // Two builds of one source for two releases: two digests.
  expect(guests[0]!.sha[V1]).not.toBe(guests[1]!.sha[V1]);
  await Promise.all(guests.map((g) => eventually(`node ${g.node.nodeName} Ready`, 600_000, () => cluster!.nodeReady(g.node.nodeName))));
  setup.bothGuestsReadyMs = Date.now() - t;
  for (const g of guests) await kubectl(["label", "node", g.node.nodeName, `${FLEET}=yes`]);
  for (const name of SIM_NODES) sims.push(await simulatedNode(name));

  setup.helmInstallMs = await cluster.installChart();
  const files = guests.flatMap((g) => [V1, V2].map((m) => `--from-file=${moduleKey(m, g.prepared.krel)}=${path.join(g.prepared.modulesDir, `${m}.ko`)}`));
  await kubectl(["create", "configmap", CM, "-n", NS, ...files]);
  figures.setup = setup;
  log(`setup: ${JSON.stringify(setup)}`);
}, 3_600_000);

afterAll(async () => {
  for (const s of sims) await s.stop().catch(() => {});
  for (const g of guests) g.recorder.stop();
  try {
    await Promise.all(guests.map(async (g) => {
      await g.node.stop();
      await g.node.cleanup(path.join(LAST_RUN, g.node.nodeName));
    }));
  } finally {
    await cluster?.stop();
    mkdirSync(LAST_RUN, { recursive: true });
    writeFileSync(path.join(LAST_RUN, "figures.json"), `${JSON.stringify(figures, null, 2)}\n`);
    log(`figures (also in ${LAST_RUN}/figures.json): ${JSON.stringify({ ...figures, klpWide: undefined, klpnWide: undefined })}`);
    if (figures.klpWide) log(`kubectl get klp -o wide:\n${figures.klpWide}\nkubectl get klpn:\n${figures.klpnWide}`);
  }
}, 300_000);

describe("a mixed fleet: two VM nodes on two kernel releases and simulated nodes on a third, one control plane", () => {
  it("1. one patch with a module per release: each guest runs its own release's build, checked in the guest; the simulated nodes are NotApplicable", async (ctx) => {
    await scenario(ctx, "1-rollout", async () => {
      await kubectl(["apply", "-f", "-"], patchYaml(FIRST, V1));
      const p = await waitReady(FIRST);
      expect(p.status?.summary).toMatchObject({ targeted: 4, loaded: 2, notApplicable: 2, failed: 0 });
      for (const g of guests) {
        const s = await g.node.state();
        expect(s.release).toBe(g.prepared.krel);
        expect(entryOf(p, g.node.nodeName)).toMatchObject({
          phase: "Loaded", moduleName: V1, sha256: g.sha[V1], kernelRelease: g.prepared.krel, enabled: true, transition: false,
          tainted: TAINT_OEK, taintFlags: "OEK", bootID: s.bootId,
        });
        // What the guest's own kernel says: its release's build live, staged under its release.
        expect(s.livepatches).toEqual([{ name: V1, enabled: true, transition: false }]);
        expect(s.cmdline).toBe(`${V1} patched`);
        expect(s.tainted).toBe(TAINT_OEK);
        expect(s.staged).toEqual([staged(g, V1)]);
        expect(enableCount(s, V1)).toBe(1);
      }
      for (const name of SIM_NODES) expect(entryOf(p, name)).toMatchObject({ phase: "NotApplicable", reason: "NoModuleForKernel", kernelRelease: SIM_RELEASE });
      // The simulated agents did nothing to their hosts.
      for (const s of sims) expect(s.actions).toEqual([]);
      // One agent pod per VM node, each on its own node (the simulated nodes run no kubelet).
      const pods = (await cluster!.agentPods()).filter((x) => x.phase === "Running");
      expect(pods.map((x) => x.node).sort()).toEqual(guests.map((g) => g.node.nodeName).sort());
      figures.klpWide = await kubectl(["get", "klp", "-o", "wide"]);
      figures.klpnWide = await kubectl(["get", "klpn"]);
      log(`\n${figures.klpWide}\n${figures.klpnWide}`);
      for (const g of guests) expect(figures.klpnWide).toContain(g.node.nodeName);
    });
  });

  it("2. a second patch's cumulative module replaces the first on both guests: the first's entries say Replaced naming the second; v1 leaves both kernels and disks", async (ctx) => {
    await scenario(ctx, "2-replace", async () => {
      const t0 = Date.now();
      await kubectl(["apply", "-f", "-"], patchYaml(SECOND, V2));
      const p = await waitReady(SECOND);
      expect(p.status?.summary).toMatchObject({ targeted: 4, loaded: 2, notApplicable: 2, failed: 0 });
      for (const g of guests) {
        const s = await eventually(`v2 alone live and staged on ${g.node.nodeName}`, 120_000, async () => {
          const s = await g.node.state();
          return livepatch(s, V2)?.enabled && !livepatch(s, V1) && !s.modules.some((m) => m.name === V1) && isDeepStrictEqual(s.staged, [staged(g, V2)]) ? s : undefined;
        });
        expect(entryOf(p, g.node.nodeName)).toMatchObject({ phase: "Loaded", moduleName: V2, sha256: g.sha[V2], kernelRelease: g.prepared.krel, bootID: s.bootId });
        expect(s.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
        expect(s.cmdline).toBe(`${V2} patched`);
        expect(s.modules.map((m) => m.name)).toEqual([V2]);
        // No livepatch-less moment in this kernel: v2 was enabled before v1 left.
        const lp = g.node.lpChanges.filter((c) => c.at >= t0 && c.boot === g.node.boot);
        expect(lp.every((c) => Object.keys(c.state).length > 0), JSON.stringify(lp)).toBe(true);
      }
      const first = await eventually(`${FIRST}'s entries Replaced on both guests, the same on their node objects and in its status`, 120_000, async () => {
        const x = await klp(FIRST);
        return guests.every((g) => g.recorder.latest(FIRST)?.phase === "Replaced" && sameReport(entryOf(x, g.node.nodeName), g.recorder.latest(FIRST))) ? x : undefined;
      });
      for (const g of guests) {
        expect(entryOf(first, g.node.nodeName)).toMatchObject({ phase: "Replaced", moduleName: V1, sha256: g.sha[V1], replacedBy: SECOND, reason: "ReplacedByCumulativePatch", enabled: false });
        // Loaded, then Replaced: never Loading, Unloading or Failed on the way.
        const onNode = phases(g.recorder.from(t0, FIRST));
        log(`${FIRST} on ${g.node.nodeName}: ${onNode.join(" -> ")}`);
        expect(onNode).toEqual([`Loaded(${V1})`, `Replaced(${V1})`]);
        replacedEntry.set(g.node.nodeName, g.recorder.latest(FIRST)!);
      }
      for (const name of SIM_NODES) expect(entryOf(first, name)).toMatchObject({ phase: "NotApplicable" });
      // Done for a patch that wants its module Loaded: the fix is live, in the second patch's module.
      expect(first.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
      expect(first.status?.summary).toMatchObject({ replaced: 2, notApplicable: 2, failed: 0 });
    });
  });

  it("3. both agent pods deleted: the modules stay live throughout; the first patch stays Replaced, its entries never rewritten", async (ctx) => {
    await scenario(ctx, "3-agent-restart", async () => {
      const t0 = Date.now();
      const before = await Promise.all(guests.map((g) => g.node.state()));
      const lpBefore = guests.map((g) => g.node.lpChanges.length);
      // The simulated nodes' pods stay Pending (no kubelet there): the guests' two are the agents.
      const old = (await cluster!.agentPods()).filter((x) => guests.some((g) => g.node.nodeName === x.node));
      expect(old.map((x) => x.phase)).toEqual(["Running", "Running"]);
      await kubectl(["delete", "pod", "-n", NS, ...old.map((x) => x.name), "--timeout=180s"], undefined, 200_000);
      for (const g of guests) {
        const fresh = await eventually(`a new agent pod Running on ${g.node.nodeName}`, 300_000, async () =>
          (await cluster!.agentPods()).find((x) => x.node === g.node.nodeName && x.phase === "Running" && !x.deleting && !old.some((o) => o.name === x.name)),
        );
        await eventually(`the new agent on ${g.node.nodeName} watching`, 300_000, async () =>
          agentLog(g.node).some((l) => l.pod.includes(fresh.uid) && l.msg.msg === "watching this node's KernelLivePatchNode"),
        );
      }
      // The new agents have read their hosts and started their watches; give them time for a pass.
      await new Promise((r) => setTimeout(r, 15_000));
      for (const [i, g] of guests.entries()) {
        const s = await g.node.state();
        expect(s.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
        expect(s.dmesg.length, "no livepatch kernel log line").toBe(before[i]!.dmesg.length);
        expect(g.node.lpChanges.length, "the kernel's livepatch state changed").toBe(lpBefore[i]);
        const newPods = new Set((await cluster!.agentPods()).map((x) => x.uid));
        expect(agentLog(g.node).filter((l) => [...newPods].some((u) => l.pod.includes(u)) && HOST_ACTIONS.includes(String(l.msg.msg)))).toEqual([]);
        expect(replacedThroughout(g, t0), `${FIRST}'s entry rewritten on ${g.node.nodeName}`).toBe(0);
        const own = g.recorder.from(t0, SECOND);
        expect(own.every((x) => x.entry?.phase === "Loaded" && x.entry.moduleName === V2), JSON.stringify(phases(own))).toBe(true);
      }
    });
  });

  it("4. the guest on the second release rebooted: its boot's kpatch.service loads that release's v2 alone; the first patch's module never comes back; its entries stay Replaced, the other guest untouched", async (ctx) => {
    await scenario(ctx, "4-reboot", async () => {
      // The pinned release's reboot is the VM-node suite's scenario 5; this one is the other release's.
      const [other, g] = [guests[0]!, guests[1]!];
      const t0 = Date.now();
      const otherBefore = await other.node.state();
      const otherLp = other.node.lpChanges.length;
      const logMark = agentLog(g.node).length;
      const { bootIdBefore, bootIdAfter } = await g.node.reboot();
      expect(bootIdAfter).not.toBe(bootIdBefore);
      const b = g.node.boot;
      const svc = await g.node.waitMark("kpatch-service-done", 300_000);
      expect(svc.fields.rc).toBe("0");
      const svcLog = await g.node.guestLog("kpatch-service");
      log(`kpatch.service in the new boot:\n${svcLog}`);
      const svcOut = JSON.parse(svcLog.split("\n")[0]!) as { ok: boolean; kernelRelease: string; loaded: Array<{ name: string }> };
      expect(svcOut).toMatchObject({ ok: true, kernelRelease: g.prepared.krel, failed: [] });
      expect(svcOut.loaded.map((l) => l.name)).toEqual([V2]);
      await eventually(`${g.node.nodeName} Ready again`, 600_000, () => cluster!.nodeReady(g.node.nodeName));
      const rebootToReadyMs = Date.now() - t0;
      const p = await eventually(`${SECOND}'s entry on ${g.node.nodeName} carrying the new boot id`, 600_000, async () => {
        const p = await klp(SECOND);
        return entryOf(p, g.node.nodeName)?.bootID === bootIdAfter ? p : undefined;
      });
      expect(entryOf(p, g.node.nodeName)).toMatchObject({ phase: "Loaded", moduleName: V2, sha256: g.sha[V2], bootID: bootIdAfter });
      const first = await eventually(`${FIRST}'s entry on ${g.node.nodeName} carrying the new boot id`, 300_000, async () => {
        const x = await klp(FIRST);
        return entryOf(x, g.node.nodeName)?.bootID === bootIdAfter && g.recorder.latest(FIRST)?.bootID === bootIdAfter ? x : undefined;
      });
      expect(entryOf(first, g.node.nodeName)).toMatchObject({ phase: "Replaced", moduleName: V1, replacedBy: SECOND, lastTransitionTime: replacedEntry.get(g.node.nodeName)!.lastTransitionTime });
      replacedThroughout(g, t0);
      const s = await g.node.state();
      expect(s.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
      expect(s.cmdline).toBe(`${V2} patched`);
      expect(s.staged).toEqual([staged(g, V2)]);
      // One load of v2 in this boot (kpatch.service's); v1 never in this boot's kernel, sysfs or /proc/cmdline.
      expect(enableCount(s, V2)).toBe(1);
      expect(enableCount(s, V1)).toBe(0);
      expect(g.node.lpChanges.filter((c) => c.boot === b && V1 in c.state)).toEqual([]);
      expect(g.node.cmdlineChanges.filter((c) => c.boot === b && c.text.includes(V1))).toEqual([]);
      // The new boot's agent ran and did nothing to the host.
      const after = agentLog(g.node).slice(logMark);
      expect(after.some((l) => l.msg.msg === "watching this node's KernelLivePatchNode")).toBe(true);
      expect(after.filter((l) => HOST_ACTIONS.includes(String(l.msg.msg)))).toEqual([]);
      await waitReady(SECOND);
      // The other guest: nothing moved in its kernel, its entries never rewritten.
      const o = await other.node.state();
      expect(o.bootId).toBe(otherBefore.bootId);
      expect(o.livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
      expect(o.dmesg.length).toBe(otherBefore.dmesg.length);
      expect(other.node.lpChanges.length).toBe(otherLp);
      expect(replacedThroughout(other, t0)).toBe(0);
      figures.guests = { rebootToReadyMs, kpatchServiceS: { firstBoot: g.node.mark("kpatch-service-done", 0)!.uptime - g.node.mark("kpatch-service-start", 0)!.uptime, reboot: svc.uptime - g.node.mark("kpatch-service-start")!.uptime } };
    });
  });

  it("5. both patches deleted: the finalizers wait for the guests' reports; nothing of either is left in either kernel or on either disk", async (ctx) => {
    await scenario(ctx, "5-delete", async () => {
      await kubectl(["delete", "klp", FIRST, "--timeout=180s"], undefined, 200_000);
      for (const g of guests) expect((await g.node.state()).livepatches).toEqual([{ name: V2, enabled: true, transition: false }]);
      await kubectl(["delete", "klp", SECOND, "--timeout=300s"], undefined, 320_000);
      expect(await klp(FIRST)).toBeUndefined();
      expect(await klp(SECOND)).toBeUndefined();
      for (const g of guests) {
        const s = await g.node.state();
        expect(s.livepatches).toEqual([]);
        expect(s.staged).toEqual([]);
        expect(s.cmdline).not.toContain("patched");
      }
      await eventually("the agent pods gone", 300_000, async () => (await cluster!.agentPods()).length === 0);
    });
  });
});
