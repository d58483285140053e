/**
 * Unloads are paced like loads (issue 17 item 6): real agent processes on simulated hosts, the
 * operator in this process. `state: Unloaded` on four nodes with maxUnavailable 1 never has two
 * nodes Unloading at once, nor has a deletion; a deletion with the unload-immediately annotation
 * unloads everywhere at once. The count is taken from every version of the agents' own writes
 * (their node objects, watched), not from the operator's roll-up.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import { UNLOAD_IMMEDIATELY_ANNOTATION } from "../../../operator/rollout/admit.ts";
import {
  PATCHES,
  RELEASE,
  TestApi,
  entryOf,
  insmods,
  kill,
  kpatchFiles,
  livepatches,
  mostChangingAtOnce,
  partialFiles,
  recordVersions,
  removeHost,
  simHost,
  spawnAgent,
  startOperatorAt,
  waitReady,
  type Proc,
} from "../../support/faults.ts";
import { controlPlane, installCrd, kubeconfigPath, sha256, until } from "../../support/klp.ts";

const NS = "klp-fault-paced-unload";
const MODULE = "klp_paced_unload_fix";
const PATCH = "fu-fix";
const module = buildSimModule({ name: MODULE, vermagic: RELEASE });
const api = new TestApi(kubeconfigPath());
const NODES = ["fu-1", "fu-2", "fu-3", "fu-4"];
const roots: Record<string, string> = {};
const agents: Proc[] = [];
let operator: Awaited<ReturnType<typeof startOperatorAt>>;

const spec = (over: Record<string, unknown> = {}) => ({
  modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
  nodeSelector: { matchLabels: { "klp-test/suite": "fault-paced-unload" } },
  rollout: { maxUnavailable: "100%" },
  ...over,
});

async function gone(name: string, timeoutMs = 90_000): Promise<void> {
  await until(`${name} gone (finalizer released)`, async () => (await api.getPatch(name)) === undefined, timeoutMs).catch(async (e: Error) => {
    throw new Error(`${e.message}; status: ${JSON.stringify((await api.getPatch(name))?.status, null, 1)}`);
  });
}

function expectClean(loads: number): void {
  for (const node of NODES) {
    const root = roots[node]!;
    expect(livepatches(root), node).toEqual([]);
    expect(kpatchFiles(root), node).toEqual([]);
    expect(partialFiles(root), node).toEqual([]);
    expect(insmods(root, MODULE), `${node}: insmods`).toBe(loads);
  }
}

beforeAll(async () => {
  await installCrd(await controlPlane());
  await api.putConfigMap(NS, "modules", { "fix.ko": module });
  for (const node of NODES) {
    await api.createNode(node, { "klp-test/suite": "fault-paced-unload" });
    // Transitions long enough that two unloads started together would be seen together.
    roots[node] = await simHost(node, 1000);
    agents.push(spawnAgent({ node, root: roots[node], kubeconfig: kubeconfigPath() }));
  }
  operator = await startOperatorAt(kubeconfigPath(), { KLP_NAMESPACE: NS });
});

afterAll(async () => {
  await Promise.all(agents.map((p) => kill(p)));
  for (const name of [PATCH, `${PATCH}-now`]) await api.forceDeletePatch(name);
  await operator?.stop();
  for (const node of NODES) await api.deleteNode(node);
  for (const root of Object.values(roots)) await removeHost(root);
  api.close();
});

describe("unloads paced by maxUnavailable", () => {
  it("state Unloaded on four nodes with maxUnavailable 1: never two nodes Unloading at once", async () => {
    await api.createPatch(PATCH, spec());
    await waitReady(api, PATCH, 120_000);

    const rec = await recordVersions(kubeconfigPath(), PATCH);
    try {
      await api.mergePatch(PATCH, { spec: { state: "Unloaded", rollout: { maxUnavailable: 1 } } });
      const done = await waitReady(api, PATCH, 120_000);
      expect(done.status?.summary).toMatchObject({ targeted: 4, ready: "4/4", unloaded: 4 });
      expect(NODES.map((n) => entryOf(done, n)?.phase)).toEqual(["Unloaded", "Unloaded", "Unloaded", "Unloaded"]);
    } finally {
      rec.stop();
    }
    const unloading = rec.versions.filter((v) => (v.status?.nodes ?? []).some((e) => e.phase === "Unloading"));
    expect(unloading.length, "the unloads were seen").toBeGreaterThan(0);
    expect(mostChangingAtOnce(rec.versions)).toBe(1);
    expectClean(1);
  });

  it("a deletion is paced too; with livepatch.kpatch.dev/unload-immediately it unloads everywhere at once", async () => {
    await api.mergePatch(PATCH, { spec: { state: "Loaded" } }); // maxUnavailable 1 still
    await waitReady(api, PATCH, 120_000);
    const paced = await recordVersions(kubeconfigPath(), PATCH);
    try {
      await api.deletePatch(PATCH);
      await gone(PATCH);
    } finally {
      paced.stop();
    }
    expect(mostChangingAtOnce(paced.versions)).toBe(1);
    expectClean(2);

    await api.createPatch(`${PATCH}-now`, spec({ rollout: { maxUnavailable: 1 } }));
    await api.http.json("PATCH", `${PATCHES}/${PATCH}-now`, {
      contentType: "application/merge-patch+json",
      body: { metadata: { annotations: { [UNLOAD_IMMEDIATELY_ANNOTATION]: "true" } } },
    });
    await waitReady(api, `${PATCH}-now`, 120_000);
    const immediate = await recordVersions(kubeconfigPath(), `${PATCH}-now`);
    try {
      await api.deletePatch(`${PATCH}-now`);
      await gone(`${PATCH}-now`);
    } finally {
      immediate.stop();
    }
    expect(mostChangingAtOnce(immediate.versions)).toBeGreaterThan(1);
    expectClean(3);
  });
});
