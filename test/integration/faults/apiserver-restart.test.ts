/**
 * The API server restarted in the middle of a rollout (this test's own control plane: the shared
 * one cannot be restarted under the other files). Every watch of the operator and the agents
 * breaks, their writes fail for a few seconds; they relist and the rollout completes as if
 * nothing happened: one insmod per host, no stale entry, the finalizer released on delete.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inject } from "vitest";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import { startControlPlane, type ControlPlane } from "../../../scripts/dev/control-plane/index.ts";
import {
  RELEASE,
  TestApi,
  deleteAndWaitGone,
  entryOf,
  insmods,
  mostChangingAtOnce,
  recordVersions,
  kpatchFiles,
  livepatches,
  partialFiles,
  removeHost,
  sampleSum,
  simHost,
  startAgentAt,
  startOperatorAt,
  waitReady,
  type InProcessAgent,
} from "../../support/faults.ts";
import { installCrd, sha256, until } from "../../support/klp.ts";

const NS = "klp-fault-apiserver";
const MODULE = "klp_restart_fix";
const PATCH = "fa-fix";
const module = buildSimModule({ name: MODULE, vermagic: RELEASE });
const NODES = ["fa-1", "fa-2", "fa-3"];
let cp: ControlPlane;
let api: TestApi;
const agents: InProcessAgent[] = [];
let operator: Awaited<ReturnType<typeof startOperatorAt>>;

beforeAll(async () => {
  cp = await startControlPlane({ controllers: false, binDir: inject("binDir") });
  await installCrd(cp);
  api = new TestApi(cp.kubeconfigPath);
  await api.putConfigMap(NS, "modules", { "fix.ko": module });
  for (const node of NODES) {
    await api.createNode(node, { "klp-test/suite": "fault-apiserver" });
    agents.push(await startAgentAt(cp.kubeconfigPath, { name: node, root: await simHost(node, 1500), requestTimeoutMs: 5000 }));
  }
  operator = await startOperatorAt(cp.kubeconfigPath, { KLP_NAMESPACE: NS }, { requestTimeoutMs: 5000 });
}, 300_000);

afterAll(async () => {
  for (const a of agents) await a.stop();
  await operator?.stop();
  api?.close();
  await cp?.stop();
  for (const a of agents) await removeHost(a.root);
});

describe("the API server restarted in the middle of a rollout", () => {
  it("the operator and the agents relist and the rollout completes; nothing loaded twice", async () => {
    const started = Date.now();
    const rec = await recordVersions(cp.kubeconfigPath, PATCH);
    await api.createPatch(PATCH, {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": "fault-apiserver" } },
      rollout: { maxUnavailable: 1 },
    });
    // Restart once the first node has loaded and the second is on its way.
    await until("a second node admitted", async () => (await api.admitted(PATCH)).admitted.length >= 2, 60_000, 100);
    await cp.restartApiServer();

    const done = await waitReady(api, PATCH, 120_000);
    expect(done.status?.summary).toMatchObject({ targeted: 3, ready: "3/3", loaded: 3 });
    rec.stop();
    // Paced across the fault: never two nodes changing at once (maxUnavailable 1).
    expect(mostChangingAtOnce(rec.versions)).toBe(1);
    expect(done.status?.nodes?.map((e) => e.nodeName).sort()).toEqual(NODES);
    for (const a of agents) {
      expect(entryOf(done, a.name), a.name).toMatchObject({ phase: "Loaded", enabled: true });
      expect(insmods(a.root, MODULE), a.name).toBe(1);
      expect(livepatches(a.root), a.name).toEqual([MODULE]);
      expect(partialFiles(a.root), a.name).toEqual([]);
    }
    // Both sides noticed: the operator's caches and the agents' watches were re-established.
    const operatorMetrics = await operator.metrics.registry.metrics();
    expect(sampleSum(operatorMetrics, "kpatch_operator_informer_relists_total")).toBeGreaterThan(0);
    for (const a of agents) expect(sampleSum(a.metrics.render(), "kpatch_agent_watch_restarts_total"), a.name).toBeGreaterThan(0);

    await deleteAndWaitGone(api, PATCH);
    for (const a of agents) expect(kpatchFiles(a.root), a.name).toEqual([]);
    console.log(`apiserver-restart fault: ${Date.now() - started} ms (restart ${cp.timings["restartApiServer#1"]} ms)`);
  });
});
