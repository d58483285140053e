/**
 * The module's source changes under a rollout in progress (one node at a time): the nodes that
 * had not fetched it yet fail with a clear reason, the rollout halts at failureThreshold, and no
 * host holds a half-written or refused file. Changed bytes fail for good (ChecksumMismatch); a
 * missing ConfigMap is retried, so the rollout resumes when the source is back.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { KernelLivePatch } from "../../../crds/schema.ts";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import {
  RELEASE,
  TestApi,
  deleteAndWaitGone,
  entryOf,
  insmods,
  kpatchFiles,
  livepatches,
  partialFiles,
  removeHost,
  simHost,
  sleep,
  startAgentAt,
  startOperatorAt,
  waitReady,
  type InProcessAgent,
} from "../../support/faults.ts";
import { controlPlane, installCrd, kubeconfigPath, sha256, until } from "../../support/klp.ts";

const NS = "klp-fault-source";
// One module per test: the sim counts insmods per module name since boot.
const CHANGED = "klp_source_changed";
const MISSING = "klp_source_missing";
const modules = { [CHANGED]: buildSimModule({ name: CHANGED, vermagic: RELEASE }), [MISSING]: buildSimModule({ name: MISSING, vermagic: RELEASE }) };
const rebuilt = buildSimModule({ name: CHANGED, vermagic: RELEASE, extraModinfo: [["srcversion", "OTHERBUILD"]] });
const api = new TestApi(kubeconfigPath());
const NODES = ["fs-1", "fs-2", "fs-3"];
const agents: InProcessAgent[] = [];
const created: string[] = [];
let operator: Awaited<ReturnType<typeof startOperatorAt>>;

const host = (name: string) => agents.find((a) => a.name === name)!;

async function rollOut(name: string, module: Uint8Array): Promise<void> {
  created.push(name);
  await api.putConfigMap(NS, name, { "fix.ko": module });
  await api.createPatch(name, {
    modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name, key: "fix.ko" } }],
    nodeSelector: { matchLabels: { "klp-test/suite": "fault-source" } },
    // The soak holds the second admission back 4 s after the first node loaded: the source
    // changes inside that window, before any other node could fetch it. (Without it the test
    // raced the operator and the next agent, and lost in a clean-clone run.)
    rollout: { maxUnavailable: 1, failureThreshold: 1, soakSeconds: 4 },
  });
}

/** The rollout's first node loaded, the only one admitted (it soaks); returns it. */
async function firstLoaded(name: string): Promise<string> {
  const node = await until(`${name}: a first node Loaded`, async () => {
    const p = await api.getPatch(name);
    return p?.status?.nodes?.find((e) => e.phase === "Loaded")?.nodeName;
  }, 60_000, 50);
  expect((await api.admitted(name)).admitted).toEqual([node]);
  return node;
}

async function halted(name: string): Promise<KernelLivePatch> {
  return until(`${name} halted`, async () => {
    const p = await api.getPatch(name);
    return p?.status?.rollout?.halted ? p : undefined;
  }, 60_000);
}

/** Nothing of the patch on a node that never loaded it: no file, nothing in the kernel. */
function untouched(node: string, module: string): void {
  expect(kpatchFiles(host(node).root), node).toEqual([]);
  expect(insmods(host(node).root, module), node).toBe(0);
}

beforeAll(async () => {
  await installCrd(await controlPlane());
  await api.ensureNamespace(NS);
  for (const node of NODES) {
    await api.createNode(node, { "klp-test/suite": "fault-source" });
    agents.push(await startAgentAt(kubeconfigPath(), { name: node, root: await simHost(node, 300) }));
  }
  operator = await startOperatorAt(kubeconfigPath(), { KLP_NAMESPACE: NS });
});

afterEach(async () => {
  for (const name of created.splice(0)) await deleteAndWaitGone(api, name).catch(() => api.forceDeletePatch(name));
  for (const a of agents) {
    expect(livepatches(a.root), a.name).toEqual([]);
    expect(kpatchFiles(a.root), a.name).toEqual([]);
  }
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  await operator?.stop();
  for (const node of NODES) await api.deleteNode(node);
  for (const a of agents) await removeHost(a.root);
  api.close();
});

describe("a module source that changes after the rollout started", () => {
  it("changed bytes: the next node fails with ChecksumMismatch, the rollout halts, nothing reaches its /var/lib/kpatch", async () => {
    const started = Date.now();
    await rollOut("fs-changed", modules[CHANGED]);
    const loaded = await firstLoaded("fs-changed");
    await api.putConfigMap(NS, "fs-changed", { "fix.ko": rebuilt });

    const p = await halted("fs-changed");
    const failed = p.status!.nodes!.filter((e) => e.phase === "Failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ reason: "ChecksumMismatch", sha256: sha256(modules[CHANGED]) });
    expect(failed[0]!.message).toContain("does not match the pinned digest");
    expect((await api.admitted("fs-changed")).admitted).toHaveLength(2); // the loaded node and the failed one; no third
    expect(p.status!.rollout!.admittedCount).toBe(2);
    expect(p.status!.conditions?.find((c) => c.type === "Degraded")).toMatchObject({ status: "True", reason: "RolloutHalted" });
    for (const node of NODES.filter((n) => n !== loaded)) untouched(node, CHANGED);
    for (const a of agents) expect(partialFiles(a.root), a.name).toEqual([]);
    expect(insmods(host(loaded).root, CHANGED)).toBe(1);

    // Final for the generation: it stays halted, and the refused node is not retried.
    await sleep(6000);
    const later = await api.getPatch("fs-changed");
    expect(later?.status?.rollout).toEqual(p.status?.rollout);
    expect(entryOf(later, failed[0]!.nodeName)).toMatchObject({ phase: "Failed", reason: "ChecksumMismatch" });
    console.log(`source-changed fault: ${Date.now() - started} ms`);
  });

  it("a deleted ConfigMap: the next node fails with SourceUnavailable, the rollout halts, and resumes once the source is back", async () => {
    const started = Date.now();
    await rollOut("fs-missing", modules[MISSING]);
    const loaded = await firstLoaded("fs-missing");
    await api.deleteConfigMap(NS, "fs-missing");

    const p = await halted("fs-missing");
    const failed = p.status!.nodes!.filter((e) => e.phase === "Failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ reason: "SourceUnavailable" });
    expect(failed[0]!.message).toMatch(/ConfigMap klp-fault-source\/fs-missing/);
    expect((await api.admitted("fs-missing")).admitted).toHaveLength(2);
    expect(p.status!.rollout!.admittedCount).toBe(2);
    for (const node of NODES.filter((n) => n !== loaded)) untouched(node, MISSING);
    for (const a of agents) expect(partialFiles(a.root), a.name).toEqual([]);

    await api.putConfigMap(NS, "fs-missing", { "fix.ko": modules[MISSING] });
    const done = await waitReady(api, "fs-missing", 120_000);
    expect(done.status?.summary).toMatchObject({ ready: "3/3", loaded: 3, failed: 0 });
    expect(done.status?.rollout?.halted).toBe(false);
    for (const a of agents) expect(insmods(a.root, MISSING), a.name).toBe(1);
    console.log(`source-missing fault: ${Date.now() - started} ms`);
  });
});
