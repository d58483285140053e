/**
 * What an admin sees after a rollout: the operator's and the agents' /metrics (scraped from the
 * processes, as Prometheus would), their probes, and the events on the patches and the Nodes.
 * One patch loads (one node loaded, one NotApplicable), one fails (a module built for another
 * kernel) and halts; deleting them drops their series.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { buildSimModule } from "../../../node-agent/sim/build-module.ts";
import {
  RELEASE,
  TestApi,
  deleteAndWaitGone,
  freePorts,
  httpGet,
  kill,
  removeHost,
  sampleSum,
  sampleValue,
  simHost,
  spawnAgent,
  spawnOperator,
  waitReady,
  type OperatorProc,
  type Proc,
} from "../../support/faults.ts";
import { controlPlane, installCrd, kubeconfigPath, sha256, until } from "../../support/klp.ts";

const NS = "klp-fault-observe";
const OTHER = "6.1.0-99-amd64";
const MODULE = "klp_observe_fix";
const good = buildSimModule({ name: MODULE, vermagic: RELEASE });
const wrong = buildSimModule({ name: "klp_observe_bad", vermagic: OTHER });
const api = new TestApi(kubeconfigPath());
const NODES: Record<string, string> = { "ob-1": RELEASE, "ob-2": OTHER };
const roots: Record<string, string> = {};
const ports: Record<string, number> = {};
const agents: Proc[] = [];
let operator: OperatorProc;

const scrape = async (port: number) => (await httpGet(port, "/metrics")).body;
const spec = (module: Uint8Array, key: string) => ({
  modules: [{ kernelRelease: RELEASE, sha256: sha256(module), configMap: { namespace: NS, name: "modules", key } }],
  nodeSelector: { matchLabels: { "klp-test/suite": "fault-observe" } },
  rollout: { maxUnavailable: "100%", failureThreshold: 1 },
});

beforeAll(async () => {
  await installCrd(await controlPlane());
  await api.putConfigMap(NS, "modules", { "good.ko": good, "wrong.ko": wrong });
  const free = await freePorts(2);
  for (const [i, [node, release]] of Object.entries(NODES).entries()) {
    await api.createNode(node, { "klp-test/suite": "fault-observe" });
    roots[node] = await simHost(node, 300, release);
    ports[node] = free[i]!;
    agents.push(spawnAgent({ node, root: roots[node], kubeconfig: kubeconfigPath(), env: { METRICS_PORT: String(free[i]) } }));
  }
  operator = await spawnOperator({ kubeconfig: kubeconfigPath(), namespace: NS, podName: "ob-operator", leaderElection: false });
});

afterAll(async () => {
  await Promise.all([...agents, operator].filter(Boolean).map((p) => kill(p)));
  for (const p of ["ob-fix", "ob-bad"]) await api.forceDeletePatch(p);
  for (const node of Object.keys(NODES)) await api.deleteNode(node);
  for (const root of Object.values(roots)) await removeHost(root);
  api.close();
});

describe("after a rollout", () => {
  it("the operator's and the agents' /metrics show the rollout, the probes answer, events are on patches and Nodes", async () => {
    // What the agents did, when it fails: their logs are the only record of which patch acted.
    onTestFailed(() => {
      for (const [i, node] of Object.keys(NODES).entries()) console.log(`--- agent ${node} log (tail)\n${agents[i]?.output().slice(-20_000)}`);
    });
    const started = Date.now();
    await until("the agents and the operator serving", async () => {
      for (const port of [...Object.values(ports), operator.healthPort]) if ((await httpGet(port, "/healthz")).status !== 200) return false;
      return true;
    }, 60_000);
    await api.createPatch("ob-fix", spec(good, "good.ko"));
    await api.createPatch("ob-bad", spec(wrong, "wrong.ko"));
    await waitReady(api, "ob-fix");
    await until("ob-bad halted", async () => (await api.getPatch("ob-bad"))?.status?.rollout?.halted === true);

    // The operator: the domain gauges per patch, controller-runtime's figures.
    const op = await until("the operator's gauges", async () => {
      const m = await scrape(operator.metricsPort);
      return sampleValue(m, "kpatch_patch_ready", { patch: "ob-fix" }) === 1 && sampleValue(m, "kpatch_rollout_halted", { patch: "ob-bad" }) === 1 ? m : undefined;
    }, 30_000);
    const nodes = (patch: string, phase: string) => sampleValue(op, "kpatch_patch_nodes", { patch, phase });
    expect([nodes("ob-fix", "Loaded"), nodes("ob-fix", "NotApplicable"), nodes("ob-fix", "Pending"), nodes("ob-fix", "Failed")]).toEqual([1, 1, 0, 0]);
    expect([nodes("ob-bad", "Failed"), nodes("ob-bad", "NotApplicable"), nodes("ob-bad", "Loaded")]).toEqual([1, 1, 0]);
    expect(sampleValue(op, "kpatch_patch_targeted_nodes", { patch: "ob-fix" })).toBe(2);
    expect(sampleValue(op, "kpatch_rollout_halted", { patch: "ob-fix" })).toBe(0);
    expect(sampleValue(op, "kpatch_patch_ready", { patch: "ob-bad" })).toBe(0);
    expect(sampleValue(op, "kpatch_transitions_stalled", { patch: "ob-fix" })).toBe(0);
    expect(sampleValue(op, "controller_runtime_reconcile_total", { controller: "kernellivepatch", result: "success" })).toBeGreaterThan(0);
    expect(sampleSum(op, "controller_runtime_reconcile_time_seconds_count", { controller: "kernellivepatch" })).toBeGreaterThan(0);
    expect(sampleValue(op, "controller_runtime_max_concurrent_reconciles", { controller: "kernellivepatch" })).toBe(16);
    expect(sampleValue(op, "workqueue_adds_total", { name: "kernellivepatch", controller: "kernellivepatch" })).toBeGreaterThan(0);
    expect(sampleValue(op, "workqueue_depth", { name: "kernellivepatch", controller: "kernellivepatch" })).toBeDefined();
    expect(sampleSum(op, "workqueue_work_duration_seconds_count")).toBeGreaterThan(0);
    expect(sampleValue(op, "workqueue_longest_running_processor_seconds", { name: "kernellivepatch", controller: "kernellivepatch" })).toBeDefined();
    expect((await httpGet(operator.healthPort, "/readyz")).status).toBe(200);

    // The agent that loaded: its kernel's taint and live patch, its host operations.
    const a1 = await scrape(ports["ob-1"]!);
    expect(sampleValue(a1, "kpatch_agent_kernel_tainted")).toBe(45056);
    expect(sampleValue(a1, "kpatch_agent_kernel_taint_flag", { flag: "K" })).toBe(1);
    expect(sampleValue(a1, "kpatch_agent_loaded_patches")).toBe(1);
    expect(sampleValue(a1, "kpatch_agent_livepatch_enabled", { module: MODULE })).toBe(1);
    expect(sampleValue(a1, "kpatch_agent_host_operations_total", { op: "installAndLoad", result: "success" })).toBe(1);
    expect(sampleValue(a1, "kpatch_agent_host_operations_total", { op: "installAndLoad", result: "VermagicMismatch" })).toBeUndefined();
    expect(sampleValue(a1, "kpatch_agent_status_writes_total", { result: "success" })).toBeGreaterThan(0);
    expect(sampleValue(a1, "process_resident_memory_bytes")).toBeGreaterThan(0);
    // The other release: nothing loaded, untainted.
    const a2 = await scrape(ports["ob-2"]!);
    expect(sampleValue(a2, "kpatch_agent_kernel_tainted")).toBe(0);
    expect(sampleValue(a2, "kpatch_agent_loaded_patches")).toBe(0);
    expect(a2).toMatch(/kpatch_agent_node_info\{node="ob-2",kernel_release="6\.1\.0-99-amd64",boot_id="[0-9a-f-]{36}"\} 1/);
    for (const port of Object.values(ports)) {
      expect((await httpGet(port, "/healthz")).status).toBe(200);
      expect((await httpGet(port, "/readyz")).status).toBe(200);
    }

    // Events: the load and the refusal, on the patch and on the Node.
    const onNode = await until("events on Node ob-1", async () => {
      const evs = await api.events("involvedObject.kind=Node,involvedObject.name=ob-1");
      return evs.some((e) => e.reason === "Loaded") && evs.some((e) => e.reason === "VermagicMismatch") ? evs : undefined;
    });
    expect(onNode.find((e) => e.reason === "Loaded")?.message).toContain("ob-fix");
    expect(onNode.find((e) => e.reason === "VermagicMismatch")?.type).toBe("Warning");
    // Events are best effort and asynchronous: wait for them rather than read once.
    const reasons = async (name: string) => (await api.events(`involvedObject.name=${name}`)).map((e) => e.reason);
    await until("events on ob-fix", async () => {
      const r = await reasons("ob-fix");
      return r.includes("Loaded") && r.includes("RolloutComplete");
    });
    // On the patch, loads are the operator's grouped progress event (ob-2 is NotApplicable), not one per node.
    const onPatch = await api.events("involvedObject.name=ob-fix");
    expect(onPatch.filter((e) => e.reason === "Loaded").map((e) => e.message)).toEqual([expect.stringMatching(/^klp_\w+ loaded on 1 node \(ob-1\); 1 of 2 targeted nodes loaded$/)]);
    await until("events on ob-bad", async () => {
      const r = await reasons("ob-bad");
      return r.includes("VermagicMismatch") && r.includes("RolloutHalted");
    });

    // Deleted patches leave no series behind.
    await deleteAndWaitGone(api, "ob-bad");
    await deleteAndWaitGone(api, "ob-fix");
    await until("the deleted patches' series gone", async () => {
      const m = await scrape(operator.metricsPort);
      return !m.includes('patch="ob-fix"') && !m.includes('patch="ob-bad"');
    }, 30_000);
    const after = await scrape(ports["ob-1"]!);
    expect(sampleValue(after, "kpatch_agent_loaded_patches")).toBe(0);
    expect(sampleValue(after, "kpatch_agent_host_operations_total", { op: "unload", result: "success" })).toBe(1);
    console.log(`observability: ${Date.now() - started} ms`);
  });
});
