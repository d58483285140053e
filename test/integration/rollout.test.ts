/**
 * The whole loop on the real control plane: the operator and three simulated nodes (the real
 * agent code on simulated host trees, one node on another kernel release), modules delivered
 * through a ConfigMap pinned by sha256.
 */
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { KernelLivePatch } from "../../crds/schema.ts";
import { buildSimModule } from "../../node-agent/sim/build-module.ts";
import { Cluster, condition, controlPlane, entryOf, installCrd, recordStatus, removeTree, sha256, startOperator, startSimAgent, until, type SimNode } from "../support/klp.ts";

const NS = "klp-rollout-test";
const R1 = "6.1.0-56-amd64";
const R2 = "6.1.0-99-amd64";
const v1 = buildSimModule({ name: "klp_fix_v1", vermagic: R1 });
const v2 = buildSimModule({ name: "klp_fix_v2", vermagic: R1, replace: true });
const cluster = new Cluster();
const NODES: Array<[string, string]> = [
  ["ro-n1", R1],
  ["ro-n2", R1],
  ["ro-n3", R2],
];
let operator: Awaited<ReturnType<typeof startOperator>>;
let agents: SimNode[] = [];
const created: string[] = [];

const source = (key: string) => ({ configMap: { namespace: NS, name: "modules", key } });
const module = (bytes: Uint8Array, key: string) => ({ kernelRelease: R1, sha256: sha256(bytes), ...source(key) });

async function apply(name: string, spec: Record<string, unknown>): Promise<void> {
  created.push(name);
  await cluster.createPatch(name, { nodeSelector: { matchLabels: { "klp-test/suite": "rollout" } }, ...spec });
}

async function ready(name: string, timeoutMs = 60_000): Promise<KernelLivePatch> {
  return until(`${name} Ready`, async () => {
    const p = await cluster.getPatch(name);
    return condition(p, "Ready")?.status === "True" && p!.status!.observedGeneration === p!.metadata.generation ? p : undefined;
  }, timeoutMs).catch(async (e: Error) => {
    throw new Error(`${e.message}; status: ${JSON.stringify((await cluster.getPatch(name))?.status, null, 1)}`);
  });
}

const node = (name: string) => agents.find((a) => a.name === name)!;
const stagedFiles = (n: SimNode) => {
  const dir = path.join(n.root, "var/lib/kpatch");
  return existsSync(dir) ? readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith(".ko")) : [];
};
const livepatches = (n: SimNode) => readdirSync(path.join(n.root, "sys/kernel/livepatch"));
const kernelModules = (n: SimNode, name: string) => existsSync(path.join(n.root, "sys/module", name));
const loadsOf = (n: SimNode, patch: string) => n.actions.filter((a) => a.patch === patch && a.action.op === "installAndLoad").length;

beforeAll(async () => {
  await installCrd(await controlPlane());
  await cluster.putModuleConfigMap(NS, "modules", { "v1.ko": v1, "v2.ko": v2 });
  for (const [name, release] of NODES) await cluster.createNode(name, { "klp-test/suite": "rollout" }, release);
  operator = await startOperator({ KLP_NAMESPACE: NS });
  agents = await Promise.all(NODES.map(([name, release]) => startSimAgent(name, release)));
});

afterEach(async () => {
  for (const name of created.splice(0)) {
    await cluster.deletePatch(name);
    await until(`${name} deleted`, async () => (await cluster.getPatch(name)) === undefined, 30_000).catch(() => cluster.forceDeletePatch(name));
  }
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  await operator?.stop();
  for (const a of agents) await removeTree(a.root);
  for (const [name] of NODES) await cluster.deleteNode(name);
});

describe("a rollout across simulated nodes", () => {
  it("loads on the matching nodes with the kernel's taint, NotApplicable on the other release; delete restores every host", async () => {
    await apply("ro-basic", { modules: [module(v1, "v1.ko")], rollout: { maxUnavailable: "100%" } });
    const p = await ready("ro-basic");
    for (const n of ["ro-n1", "ro-n2"]) {
      expect(entryOf(p, n)).toMatchObject({ phase: "Loaded", moduleName: "klp_fix_v1", enabled: true, transition: false, tainted: 45056, taintFlags: "OEK", kernelRelease: R1 });
      expect(entryOf(p, n)?.bootID).toMatch(/^[0-9a-f-]{36}$/);
      expect(livepatches(node(n))).toEqual(["klp_fix_v1"]);
      expect(stagedFiles(node(n))).toEqual([`${R1}/klp_fix_v1.ko`]);
    }
    expect(entryOf(p, "ro-n3")).toMatchObject({ phase: "NotApplicable", kernelRelease: R2 });
    expect(p.status!.summary).toMatchObject({ targeted: 3, loaded: 2, notApplicable: 1, ready: "2/2" });

    await cluster.deletePatch("ro-basic");
    created.length = 0;
    await until("deleted", async () => (await cluster.getPatch("ro-basic")) === undefined);
    for (const n of ["ro-n1", "ro-n2"]) {
      expect(livepatches(node(n))).toEqual([]);
      expect(kernelModules(node(n), "klp_fix_v1")).toBe(false);
      expect(stagedFiles(node(n))).toEqual([]);
    }
  });

  it("maxUnavailable 1 never has two nodes changing at once", async () => {
    const rec = await recordStatus("ro-paced");
    await apply("ro-paced", { modules: [module(v1, "v1.ko")], rollout: { maxUnavailable: 1 } });
    await ready("ro-paced");
    rec.stop();
    const busy = rec.versions.map((v) => (v.status?.nodes ?? []).filter((e) => ["Staging", "Loading"].includes(e.phase)).map((e) => e.nodeName));
    expect(Math.max(...busy.map((b) => b.length))).toBe(1);
    const admittedSizes = rec.versions.map((v) => v.admitted.length);
    expect(admittedSizes).toContain(1);
    // Each node wrote Loading then Loaded: two status writes per node.
    for (const n of ["ro-n1", "ro-n2"]) {
      const phases = rec.versions.map((v) => entryOf(v, n)?.phase).filter((x, i, a) => x !== undefined && x !== a[i - 1]);
      expect(phases).toEqual(["Loading", "Loaded"]);
    }
  });

  it("a cumulative replace: the second patch Loaded, the first Replaced, without flapping or a second load", async () => {
    const rec = await recordStatus("ro-first");
    await apply("ro-first", { modules: [module(v1, "v1.ko")], rollout: { maxUnavailable: "100%" } });
    await ready("ro-first");
    await apply("ro-second", { modules: [module(v2, "v2.ko")], rollout: { maxUnavailable: "100%" } });
    await ready("ro-second");
    const first = await until("first Replaced", async () => {
      const p = await cluster.getPatch("ro-first");
      return entryOf(p, "ro-n1")?.phase === "Replaced" && entryOf(p, "ro-n2")?.phase === "Replaced" ? p : undefined;
    });
    await new Promise((r) => setTimeout(r, 2000));
    rec.stop();
    for (const n of ["ro-n1", "ro-n2"]) {
      expect(entryOf(first, n)?.replacedBy).toBe("ro-second");
      expect(livepatches(node(n))).toEqual(["klp_fix_v2"]);
      expect(kernelModules(node(n), "klp_fix_v1")).toBe(false);
      expect(stagedFiles(node(n))).toEqual([`${R1}/klp_fix_v2.ko`]);
      expect(loadsOf(node(n), "ro-first")).toBe(1);
      expect(loadsOf(node(n), "ro-second")).toBe(1);
      const phases = rec.versions.map((v) => entryOf(v, n)?.phase).filter((x, i, a) => x !== undefined && x !== a[i - 1]);
      expect(phases).toEqual(["Loading", "Loaded", "Replaced"]);
    }
    expect(condition(await cluster.getPatch("ro-first"), "Ready")?.status).toBe("True");
    created.reverse(); // delete the replacing patch first
  });

  it("a digest mismatch fails the node with ChecksumMismatch; the file never reaches /var/lib/kpatch; the rollout halts", async () => {
    await apply("ro-digest", { modules: [{ kernelRelease: R1, sha256: "e".repeat(64), ...source("v1.ko") }], rollout: { maxUnavailable: 1, failureThreshold: 1 } });
    const p = await until("halted", async () => {
      const p = await cluster.getPatch("ro-digest");
      return p?.status?.rollout?.halted ? p : undefined;
    });
    const failed = p.status!.nodes!.filter((e) => e.phase === "Failed");
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ reason: "ChecksumMismatch" });
    expect(failed[0]!.message).toContain("does not match the pinned digest");
    expect(condition(p, "Degraded")).toMatchObject({ status: "True", reason: "RolloutHalted" });
    for (const n of agents) expect(stagedFiles(n)).toEqual([]);
  });

  it("Staged installs and does not load; Unloaded uninstalls", async () => {
    await apply("ro-staged", { state: "Staged", modules: [module(v1, "v1.ko")], rollout: { maxUnavailable: "100%" } });
    const p = await ready("ro-staged");
    expect(entryOf(p, "ro-n1")?.phase).toBe("Staged");
    expect(stagedFiles(node("ro-n1"))).toEqual([`${R1}/klp_fix_v1.ko`]);
    expect(livepatches(node("ro-n1"))).toEqual([]);
    await cluster.mergePatch("ro-staged", { spec: { state: "Unloaded" } });
    const u = await ready("ro-staged");
    expect(entryOf(u, "ro-n1")?.phase).toBe("Unloaded");
    expect(stagedFiles(node("ro-n1"))).toEqual([]);
  });
});
