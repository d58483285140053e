/**
 * A Node deleted in the middle of a rollout, while it is the one node admitted and loading: its
 * entry goes, its slot frees, and the rollout completes on the others. Its agent keeps running
 * (a pod outlives its Node until the pod garbage collector gets to it) and must not bring the
 * entry back.
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

const NS = "klp-fault-node";
const MODULE = "klp_node_fix";
const PATCH = "fn-fix";
const module = buildSimModule({ name: MODULE, vermagic: RELEASE });
const api = new TestApi(kubeconfigPath());
const NODES = ["fn-1", "fn-2", "fn-3"];
const agents: InProcessAgent[] = [];
let operator: Awaited<ReturnType<typeof startOperatorAt>>;

beforeAll(async () => {
  await installCrd(await controlPlane());
  await api.putConfigMap(NS, "modules", { "fix.ko": module });
  for (const node of NODES) {
    await api.createNode(node, { "klp-test/suite": "fault-node" });
    // Slow transitions: the first node admitted is still loading when its Node goes.
    agents.push(await startAgentAt(kubeconfigPath(), { name: node, root: await simHost(node, 2500) }));
  }
  operator = await startOperatorAt(kubeconfigPath(), { KLP_NAMESPACE: NS });
});

afterAll(async () => {
  for (const a of agents) await a.stop();
  await api.forceDeletePatch(PATCH);
  await operator?.stop();
  for (const node of NODES) await api.deleteNode(node);
  for (const a of agents) await removeHost(a.root);
  api.close();
});

describe("a node deleted in the middle of a rollout", () => {
  it("loses its entry and its slot; the rollout completes on the rest", async () => {
    const started = Date.now();
    await api.createPatch(PATCH, {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": "fault-node" } },
      rollout: { maxUnavailable: 1 },
    });
    const first = await until("a node admitted and loading", async () => {
      const { patch: p, admitted } = await api.admitted(PATCH);
      const n = admitted[0];
      return n && entryOf(p, n)?.phase === "Loading" && inTransition(agents.find((a) => a.name === n)!.root, MODULE, true) ? n : undefined;
    });
    await api.deleteNode(first);

    const done = await waitReady(api, PATCH);
    const rest = NODES.filter((n) => n !== first);
    expect(done.status?.summary).toMatchObject({ targeted: 2, ready: "2/2", loaded: 2 });
    expect((await api.admitted(PATCH)).admitted).toEqual(rest);
    expect(done.status?.rollout?.admittedCount).toBe(rest.length);
    expect(done.status?.nodes?.map((e) => e.nodeName).sort()).toEqual(rest);
    for (const a of agents.filter((a) => a.name !== first)) {
      expect(insmods(a.root, MODULE), a.name).toBe(1);
      expect(livepatches(a.root), a.name).toEqual([MODULE]);
      expect(partialFiles(a.root), a.name).toEqual([]);
    }
    // The deleted node's agent, still running, holds still: its entry stays gone.
    await sleep(3000);
    expect(entryOf(await api.getPatch(PATCH), first)).toBeUndefined();
    expect(agents.find((a) => a.name === first)!.agent.loopState().nodeKnown).toBe(false);

    await deleteAndWaitGone(api, PATCH);
    for (const a of agents.filter((a) => a.name !== first)) expect(kpatchFiles(a.root), a.name).toEqual([]);
    console.log(`node-deleted fault: ${Date.now() - started} ms`);
  });
});
