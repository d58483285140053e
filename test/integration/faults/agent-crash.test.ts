/**
 * The agent killed at every step of a load and of an unload (SIGKILL: no cleanup runs), then
 * started again: it converges from what the host and its entry say, without a second insmod and
 * without a half-written file in /var/lib/kpatch. Self-inflicted kills use the test-only
 * KPATCH_TEST_CRASH_AT; the kills in the middle of a transition come from outside, timed on the
 * simulated kernel's state.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import {
  RELEASE,
  TestApi,
  deleteAndWaitGone,
  entryOf,
  inTransition,
  insmods,
  kill,
  kpatchFiles,
  livepatches,
  partialFiles,
  AGENT_RECORD,
  removeHost,
  simHost,
  spawnAgent,
  startOperatorAt,
  waitReady,
  type Proc,
} from "../../support/faults.ts";
import { controlPlane, installCrd, kubeconfigPath, sha256, until } from "../../support/klp.ts";

const NS = "klp-fault-crash";
const MODULE = "klp_crash_fix";
const PATCH = "fc-fix";
const module = buildSimModule({ name: MODULE, vermagic: RELEASE });
const api = new TestApi(kubeconfigPath());

/** One node per way to die during the load; the last ones also die during the unload. */
const NODES = {
  beforeStage: "fc-before-stage",
  afterStage: "fc-after-stage",
  inTransition: "fc-in-transition",
  afterLoad: "fc-after-load",
} as const;
const roots: Record<string, string> = {};
const agents: Record<string, Proc> = {};
let operator: Awaited<ReturnType<typeof startOperatorAt>>;

function start(node: string, crashAt?: string): Proc {
  const p = spawnAgent({ node, root: roots[node]!, kubeconfig: kubeconfigPath(), env: crashAt ? { KPATCH_TEST_CRASH_AT: crashAt } : {} });
  agents[node] = p;
  return p;
}

async function died(node: string): Promise<void> {
  const p = agents[node]!;
  const how = await Promise.race([p.exited, new Promise<"alive">((r) => setTimeout(() => r("alive"), 60_000))]);
  if (how === "alive") throw new Error(`${node}: the agent did not die; output:\n${p.output()}`);
  expect(how.signal, `${node} output:\n${p.output()}`).toBe("SIGKILL");
}

/** Kills the agent from outside once its module is in a transition towards `target`. */
async function killInTransition(node: string, target: boolean): Promise<void> {
  await until(`${node} in a ${target ? "patching" : "unpatching"} transition`, () => inTransition(roots[node]!, MODULE, target), 60_000, 25).catch((e: Error) => {
    throw new Error(`${e.message}\n${agents[node]!.output()}`);
  });
  await kill(agents[node]!);
}

beforeAll(async () => {
  await installCrd(await controlPlane());
  await api.putConfigMap(NS, "modules", { "fix.ko": module });
  for (const node of Object.values(NODES)) {
    await api.createNode(node, { "klp-test/suite": "fault-crash" });
    // A slow transition where the kill must land inside one.
    roots[node] = await simHost(node, node === NODES.inTransition ? 4000 : 300);
  }
  operator = await startOperatorAt(kubeconfigPath(), { KLP_NAMESPACE: NS });
});

afterAll(async () => {
  await Promise.all(Object.values(agents).map((p) => kill(p)));
  await api.forceDeletePatch(PATCH);
  await operator?.stop();
  for (const node of Object.values(NODES)) await api.deleteNode(node);
  for (const root of Object.values(roots)) await removeHost(root);
  api.close();
});

/** The patch once these nodes' entries show `phase` (or as it is after 15 s, for the assertions to show). */
async function rolledUp(nodes: string[], phase: string) {
  return until(`${nodes.join(", ")} ${phase} on the patch`, async () => {
    const p = await api.getPatch(PATCH);
    return nodes.every((n) => entryOf(p, n)?.phase === phase) ? p : undefined;
  }, 15_000).catch(() => api.getPatch(PATCH));
}

describe("an agent killed at each step", () => {
  it("of a load converges on restart: one insmod per host, no partial file", async () => {
    start(NODES.beforeStage, "before-stage");
    start(NODES.afterStage, "after-stage");
    start(NODES.inTransition);
    start(NODES.afterLoad, "after-load");
    await api.createPatch(PATCH, {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": "fault-crash" } },
      rollout: { maxUnavailable: "100%" },
    });
    await Promise.all([died(NODES.beforeStage), died(NODES.afterStage), killInTransition(NODES.inTransition, true), died(NODES.afterLoad)]);

    // What each death left behind: the entry says Loading (written before acting); the host is
    // wherever the kill caught it.
    // (The operator rolls the node objects up into the patch a moment later.)
    const p = await rolledUp(Object.values(NODES), "Loading");
    for (const node of Object.values(NODES)) expect(entryOf(p, node)?.phase, node).toBe("Loading");
    // The agent records which patch a module is for before it writes the module anywhere; the
    // module waits in .loading (which nothing loads at boot) until it has been live for its soak.
    expect(kpatchFiles(roots[NODES.beforeStage]!)).toEqual([AGENT_RECORD]);
    expect(kpatchFiles(roots[NODES.afterStage]!)).toEqual([AGENT_RECORD, `.loading/${MODULE}.ko`]);
    expect(insmods(roots[NODES.afterStage]!, MODULE)).toBe(0);
    expect(insmods(roots[NODES.inTransition]!, MODULE)).toBe(1);
    expect(inTransition(roots[NODES.inTransition]!, MODULE, true)).toBe(true);
    expect(livepatches(roots[NODES.afterLoad]!)).toEqual([MODULE]);

    for (const node of Object.values(NODES)) start(node);
    const done = await waitReady(api, PATCH);
    expect(done.status?.summary).toMatchObject({ ready: "4/4", loaded: 4 });
    for (const node of Object.values(NODES)) {
      const root = roots[node]!;
      expect(entryOf(done, node), node).toMatchObject({ phase: "Loaded", enabled: true, transition: false, taintFlags: "OEK" });
      expect(insmods(root, MODULE), `${node}: insmods`).toBe(1);
      expect(livepatches(root), node).toEqual([MODULE]);
      expect(kpatchFiles(root), node).toEqual([AGENT_RECORD, `${RELEASE}/${MODULE}.ko`]);
      expect(partialFiles(root), node).toEqual([]);
    }
  });

  it("of an unload converges on restart; the finalizer goes once every host is clean", async () => {
    // SIGTERM: the agents stop and leave the patch loaded; new ones start with their crash points.
    await Promise.all(Object.values(NODES).map((node) => kill(agents[node]!, "SIGTERM")));
    start(NODES.beforeStage, "before-unload");
    start(NODES.afterStage, "after-unload");
    start(NODES.inTransition);
    start(NODES.afterLoad);
    await api.mergePatch(PATCH, { spec: { state: "Unloaded" } });
    await Promise.all([died(NODES.beforeStage), died(NODES.afterStage), killInTransition(NODES.inTransition, false)]);

    const p = await rolledUp([NODES.beforeStage, NODES.afterStage, NODES.inTransition], "Unloading");
    for (const node of [NODES.beforeStage, NODES.afterStage, NODES.inTransition]) expect(entryOf(p, node)?.phase, node).toBe("Unloading");
    expect(livepatches(roots[NODES.beforeStage]!)).toEqual([MODULE]); // died before disabling
    expect(livepatches(roots[NODES.afterStage]!)).toEqual([]); // died after the module left the kernel
    expect(kpatchFiles(roots[NODES.afterStage]!)).toEqual([AGENT_RECORD, `${RELEASE}/${MODULE}.ko`]); // ... before uninstalling it

    for (const node of [NODES.beforeStage, NODES.afterStage, NODES.inTransition]) start(node);
    const unloaded = await waitReady(api, PATCH);
    expect(unloaded.status?.summary).toMatchObject({ ready: "4/4", unloaded: 4 });
    for (const node of Object.values(NODES)) {
      const root = roots[node]!;
      expect(entryOf(unloaded, node)?.phase, node).toBe("Unloaded");
      expect(livepatches(root), node).toEqual([]);
      expect(kpatchFiles(root), node).toEqual([]);
      expect(insmods(root, MODULE), `${node}: insmods`).toBe(1);
    }
    await deleteAndWaitGone(api, PATCH);
  });

  // A kill in the middle of staging (between the temporary file's creation and its rename, in
  // node-agent/host/kpatch-store.ts) leaves `.<name>.ko.tmp-<pid>-<hex>` behind: kpatch's glob
  // ignores it, and the restarted agent sweeps it before its first pass.
  it("a temporary file left by a kill in the middle of staging is removed by the restarted agent", async () => {
    const node = NODES.afterLoad;
    const root = roots[node]!;
    await kill(agents[node]!);
    const { mkdir, writeFile } = await import("node:fs/promises");
    const dir = `${root}/var/lib/kpatch/${RELEASE}`;
    await mkdir(dir, { recursive: true });
    await writeFile(`${dir}/.${MODULE}.ko.tmp-99999-deadbeef`, module.subarray(0, 100));
    start(node);
    await api.createPatch(`${PATCH}-2`, {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "kubernetes.io/hostname": node } },
    });
    try {
      await waitReady(api, `${PATCH}-2`);
      expect(partialFiles(root)).toEqual([]);
    } finally {
      await deleteAndWaitGone(api, `${PATCH}-2`);
    }
  });
});
