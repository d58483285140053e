/**
 * Two operator processes with leader election; the leader is SIGKILLed in the middle of a
 * rollout (no lease release: it expires). The standby takes the Lease over and completes the
 * rollout: the admission the node objects' projections record is kept, nothing is loaded twice.
 * Then the operator is killed and started again while a loaded node soaks: the new process
 * rebuilds the admitted set from the projections, so the soaking node keeps its slot and no
 * second node is admitted before its soak ends.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import {
  RELEASE,
  TestApi,
  deleteAndWaitGone,
  entryOf,
  httpGet,
  insmods,
  mostChangingAtOnce,
  recordVersions,
  kill,
  livepatches,
  partialFiles,
  removeHost,
  sampleValue,
  simHost,
  spawnOperator,
  startAgentAt,
  waitReady,
  type InProcessAgent,
  type OperatorProc,
} from "../../support/faults.ts";
import { controlPlane, installCrd, kubeconfigPath, sha256, until } from "../../support/klp.ts";

const NS = "klp-fault-failover";
const MODULE = "klp_failover_fix";
const PATCH = "ff-fix";
const RESTARTED = "ff-restart";
const LEASE = "kpatch-operator";
const module = buildSimModule({ name: MODULE, vermagic: RELEASE });
const api = new TestApi(kubeconfigPath());
const NODES = ["ff-1", "ff-2", "ff-3"];
const agents: InProcessAgent[] = [];
const operators: Record<string, OperatorProc> = {};

async function holder(): Promise<string | undefined> {
  const lease = await api.http.json<{ spec?: { holderIdentity?: string } }>("GET", `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${LEASE}`).catch(() => undefined);
  return lease?.spec?.holderIdentity ?? undefined;
}

beforeAll(async () => {
  await installCrd(await controlPlane());
  await api.putConfigMap(NS, "modules", { "fix.ko": module });
  for (const node of NODES) {
    await api.createNode(node, { "klp-test/suite": "fault-failover" });
    agents.push(await startAgentAt(kubeconfigPath(), { name: node, root: await simHost(node, 1500) }));
  }
  for (const name of ["ff-operator-a", "ff-operator-b"]) {
    operators[name] = await spawnOperator({ kubeconfig: kubeconfigPath(), namespace: NS, podName: name, leaderElection: true });
  }
});

afterAll(async () => {
  await Promise.all(Object.values(operators).map((p) => kill(p)));
  for (const a of agents) await a.stop();
  await api.forceDeletePatch(PATCH);
  await api.forceDeletePatch(RESTARTED);
  for (const node of NODES) await api.deleteNode(node);
  for (const a of agents) await removeHost(a.root);
  api.close();
});

describe("the operator killed while leading", () => {
  it("the standby takes the Lease over and the rollout completes", async () => {
    const started = Date.now();
    for (const [name, p] of Object.entries(operators)) await until(`${name} serving`, async () => (await httpGet(p.healthPort, "/healthz")).status === 200, 60_000);
    const leader = await until("a leader", async () => {
      const h = await holder();
      if (!h || !operators[h]) return undefined;
      const m = await httpGet(operators[h].metricsPort, "/metrics");
      return sampleValue(m.body, "leader_election_master_status", { name: LEASE }) === 1 ? h : undefined;
    }, 60_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${Object.entries(operators).map(([n, p]) => `--- ${n}\n${p.output()}`).join("\n")}`);
    });
    const standby = Object.keys(operators).find((n) => n !== leader)!;
    // A standby is ready (it serves) but not leading.
    expect((await httpGet(operators[standby]!.healthPort, "/readyz")).status).toBe(200);
    expect(sampleValue((await httpGet(operators[standby]!.metricsPort, "/metrics")).body, "leader_election_master_status", { name: LEASE })).toBe(0);

    const rec = await recordVersions(kubeconfigPath(), PATCH);
    await api.createPatch(PATCH, {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": "fault-failover" } },
      rollout: { maxUnavailable: 1 },
    });
    await until("a second node admitted", async () => (await api.admitted(PATCH)).admitted.length >= 2, 60_000, 100);
    await kill(operators[leader]!);
    const killedAt = Date.now();

    const done = await waitReady(api, PATCH, 120_000).catch((e: Error) => {
      throw new Error(`${e.message}\n--- standby\n${operators[standby]!.output()}`);
    });
    expect(await holder()).toBe(standby);
    expect(done.status?.summary).toMatchObject({ targeted: 3, ready: "3/3", loaded: 3 });
    rec.stop();
    // Paced across the fault: never two nodes changing at once (maxUnavailable 1).
    expect(mostChangingAtOnce(rec.versions)).toBe(1);
    for (const a of agents) {
      expect(insmods(a.root, MODULE), a.name).toBe(1);
      expect(livepatches(a.root), a.name).toEqual([MODULE]);
      expect(partialFiles(a.root), a.name).toEqual([]);
    }
    const metrics = (await httpGet(operators[standby]!.metricsPort, "/metrics")).body;
    expect(sampleValue(metrics, "leader_election_master_status", { name: LEASE })).toBe(1);
    await until("the new leader's gauges", async () => {
      const m = (await httpGet(operators[standby]!.metricsPort, "/metrics")).body;
      return sampleValue(m, "kpatch_patch_nodes", { patch: PATCH, phase: "Loaded" }) === 3;
    }, 30_000);

    await deleteAndWaitGone(api, PATCH);
    console.log(`operator-failover fault: ${Date.now() - started} ms (takeover and finish ${Date.now() - killedAt} ms after the kill)`);
  });

  it("restarted while a loaded node soaks: the admitted set is rebuilt from the node objects, no node beyond maxUnavailable is admitted, the rollout completes", async () => {
    const started = Date.now();
    const SOAK = 20;
    const running = Object.entries(operators).find(([, p]) => p.child.exitCode === null && p.child.signalCode === null)!;
    // The first case loaded (and unloaded) the same module on every node once.
    const loadsBefore = new Map(agents.map((a) => [a.name, insmods(a.root, MODULE)]));
    const rec = await recordVersions(kubeconfigPath(), RESTARTED);
    await api.createPatch(RESTARTED, {
      modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key: "fix.ko" } }],
      nodeSelector: { matchLabels: { "klp-test/suite": "fault-failover" } },
      // The soaking node holds the only slot until its soak ends.
      rollout: { maxUnavailable: 1, soakSeconds: SOAK },
    });
    const first = await until("a first node Loaded, the only one admitted", async () => {
      const { patch, admitted } = await api.admitted(RESTARTED);
      const loaded = NODES.find((n) => entryOf(patch, n)?.phase === "Loaded");
      return loaded && admitted.length === 1 && admitted[0] === loaded ? { node: loaded, at: Date.parse(entryOf(patch, loaded)!.lastTransitionTime!) } : undefined;
    }, 60_000, 100);
    await kill(running[1]);
    operators["ff-operator-c"] = await spawnOperator({ kubeconfig: kubeconfigPath(), namespace: NS, podName: "ff-operator-c", leaderElection: false });
    await until("the new operator serving", async () => (await httpGet(operators["ff-operator-c"]!.healthPort, "/readyz")).status === 200, 60_000);

    // Until the soak ends (less a margin for the clocks), the first node is the only one admitted:
    // the new operator took its projection as an admission that holds the slot.
    const soakEnds = first.at + SOAK * 1000 - 2000;
    expect(Date.now(), "the new operator started within the soak").toBeLessThan(soakEnds - 3000);
    while (Date.now() < soakEnds) {
      const { patch, admitted } = await api.admitted(RESTARTED);
      expect(admitted, `admitted ${Math.round((Date.now() - first.at) / 1000)} s after the first node loaded`).toEqual([first.node]);
      expect(patch?.status?.rollout?.admittedCount ?? 1).toBe(1);
      await new Promise((r) => setTimeout(r, 200));
    }

    const done = await waitReady(api, RESTARTED, 120_000).catch((e: Error) => {
      throw new Error(`${e.message}\n--- restarted operator\n${operators["ff-operator-c"]!.output()}`);
    });
    expect(done.status?.summary).toMatchObject({ targeted: 3, ready: "3/3", loaded: 3 });
    expect(done.status?.rollout).toMatchObject({ admittedCount: 3, halted: false });
    rec.stop();
    expect(mostChangingAtOnce(rec.versions)).toBe(1);
    // Never more than one admitted node not yet loaded, before the restart or after it.
    expect(Math.max(...rec.versions.map((v) => v.admitted.filter((n) => entryOf(v, n)?.phase !== "Loaded").length))).toBe(1);
    for (const a of agents) {
      expect(insmods(a.root, MODULE) - loadsBefore.get(a.name)!, a.name).toBe(1);
      expect(partialFiles(a.root), a.name).toEqual([]);
    }
    await deleteAndWaitGone(api, RESTARTED);
    console.log(`operator-restart during a soak: ${Date.now() - started} ms`);
  });
});
