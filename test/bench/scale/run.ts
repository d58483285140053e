/**
 * One rollout run: its own control plane, N Node objects and simulated hosts, the operator in its
 * own process, the fleet of agents, P patches applied at once (maxUnavailable 100%), then figures
 * from the API server's metrics, the operator's metrics, the benchmark's own watches and /proc.
 * Last, with the operator and every agent stopped, the floor on the same API server: the same
 * number of bare status writes at the same concurrency (floor.ts), once with one write per node,
 * once with as many writes as the rollout made, and once as the design's floor: one projection
 * apply per node, then as many status writes as the agents made.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg } from "node:os";
import path from "node:path";
import { KernelLivePatch, NODE_OBJECTS_PATH } from "../../../crds/schema.ts";
import { projectNode } from "../../../operator/nodes/projection.ts";
import { ListWatch, type ObjectMeta } from "../../../kube/list-watch.ts";
import { freePorts } from "../../../scripts/dev/control-plane/index.ts";
import { createPatch, httpOk, PATCHES_PATH, prepareCluster, RELEASE, REPO, sleep, startOperator, stopChild, until, type Cluster, type OperatorRunner } from "./cluster.ts";
import { imageEnv, imageNodeFlags, startAgentProcess } from "./fleet.ts";
import { createFleet, fleetShards, type FleetHandle } from "./fleet-shards.ts";
import { createFloorObjects, measureFloor, type FloorResult } from "./floor.ts";
import { apiCounts, heap, meanMs, reconciles, reconcileSeconds, scrapeApiServer, scrapeOperator, type ApiCounts, type HeapSample } from "./metrics.ts";
import { cpuBetween, sampleMachine, sampleProc, stealPercent, sumSamples, type ProcSample } from "./proc.ts";
import { Tracker, type NodeObjectView, type Timeline } from "./tracker.ts";

export interface RunOptions {
  nodes: number;
  patches: number;
  transitionMs: number;
  /** The simulated agents' resync period. */
  agentResyncMs: number;
  idleSeconds: number;
  timeoutSeconds: number;
  floorTimeoutSeconds: number;
  operator: OperatorRunner;
  agentBundle: string;
  binDir: string;
  workDir: string;
  log: (line: string) => void;
}

export interface RunResult {
  nodes: number;
  patches: number;
  /** 1-minute load average of the machine at the start and the end of the rollout, and during the floors. */
  load: [number, number];
  /** Percent of the machine's CPU time its hypervisor took during the rollout (a neighbour's load). */
  stealPct: number;
  floorLoad: [number, number];
  /** The floor with one write per node (N·… = N writes), and with the run's own number of status writes (when that differs). */
  floorOnePerNode: FloorResult;
  floorRunWrites: FloorResult | undefined;
  /** The design's floor: one projection apply per node, then the agents' number of status writes. */
  floorDesign: FloorResult;
  readyMs: number | undefined;
  /** Nodes Loaded (fewest over the patches) when the run ended, in the node objects: N when Ready. */
  loadedAtEnd: number;
  timeline: Timeline;
  /** Completion of each in-process agent's load, ms after apply. */
  loadDone: { p50: number; p90: number; max: number };
  api: ApiCounts;
  /** Versions seen by the benchmark's watches, by writer (tracker.ts). */
  versions: { operatorStatus: number; operatorMeta: number; operatorSpec: number; agents: number };
  /** In-process agents: entries handed to their channels, failed, by phase, mean ms until written. */
  agentEntries: number;
  agentWriteFailures: number;
  agentWriteFailureKinds: Record<string, number>;
  agentWritePhases: Record<string, number>;
  agentWriteMeanMs: number;
  /** updatePatches calls of the simulated agents (one per event of their node object's watch). */
  deliveries: number;
  /** Reads of the whole simulated host by the simulated agents (one per pass). */
  hostReads: number;
  reconciles: Map<string, number>;
  /** Seconds in reconciles per controller, apply → Ready (wall time of the reconciles, API calls included; they overlap, 16 workers). */
  reconcileSeconds: Map<string, number>;
  /** API server CPU s during each floor. */
  floorApiserverCpu: { onePerNode: number; runWrites: number | undefined; design: number };
  /** Mean server-side latency (ms) of the floor's applies: one per node, the run's. */
  floorLatencyMs: { onePerNode: number; runWrites: number | undefined };
  /** CPU seconds of the rollout; inProcessAgents sums the fleet's processes and this one, benchProcess is this one. */
  cpu: { apiserver: number; etcd: number; operator: number; inProcessAgents: number; benchProcess: number; agentProcess: number };
  /** CPU (cores) of the API server and the simulated agents with the fleet connected and no patch, before apply. */
  idleFleet: { apiserver: number; agents: number };
  operator: { rssMiB: number; peakMiB: number; rolloutCpu: number; idleCpuPct: number };
  /** The operator's V8 heap (used / total) and external memory, at Ready and after the idle window. */
  operatorHeap: { ready: HeapSample; idle: HeapSample };
  agentProcess: { rssMiB: number; peakMiB: number; idleCpuPct: number };
  /** JSON size (without managedFields) of one patch and one node object at the end. */
  patchBytes: number;
  nodeObjectBytes: number;
}

/** The status writes the run made: the agents' entry writes and the operator's patch-status writes. */
export const runStatusWrites = (r: Pick<RunResult, "versions">) => r.versions.agents + r.versions.operatorStatus;

const percentile = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]! : NaN);

/** Process samples of every component, taken together. */
function sampler(c: Cluster, operator: ChildProcess, agent: ChildProcess, fleetPids: readonly number[]): () => Record<string, ProcSample | undefined> {
  const pids = c.cp.pids();
  return () => {
    // This process alone: its watches and timeline, and the agents when the fleet runs here.
    const benchProcess = sampleProc(process.pid);
    return {
      apiserver: sampleProc(pids["kube-apiserver"]!),
      etcd: sampleProc(pids.etcd!),
      operator: sampleProc(operator.pid!),
      // The simulated agents: in this process, or in its fleet shards.
      bench: sumSamples([benchProcess, ...fleetPids.map(sampleProc)]),
      benchProcess,
      agent: sampleProc(agent.pid!),
    };
  };
}

/** The idle window before apply, long enough to see a once-a-second cost of 5,000 agents. */
const IDLE_FLEET_SECONDS = 10;

export async function runOnce(opts: RunOptions): Promise<RunResult> {
  const dir = await mkdtemp(path.join(opts.workDir, `run-${opts.nodes}x${opts.patches}-`));
  const hostsDir = await mkdtemp("/dev/shm/klp-bench-hosts-");
  const { log } = opts;
  let c: Cluster | undefined;
  let operator: ChildProcess | undefined;
  let agentProc: ChildProcess | undefined;
  let fleet: FleetHandle | undefined;
  const watchers: Array<ListWatch<ObjectMeta>> = [];
  try {
    c = await prepareCluster({ dir, binDir: opts.binDir, nodes: opts.nodes, patches: opts.patches, log });
    const cluster = c;

    log(`starting the operator (${opts.operator.kind})`);
    const op = await startOperator(opts.operator, c.cp.kubeconfigPath, path.join(dir, "operator.log"));
    operator = op.child;

    // The benchmark's own watches: the timeline, and who wrote each version.
    let t0 = 0;
    const elapsed = () => performance.now() - t0;
    const tracker = new Tracker(c.patches, opts.nodes, elapsed);
    // The list-watches keep no managedFields (kube/list-watch.ts); node objects are followed event by event.
    const nodeObjects = new ListWatch<NodeObjectView>(c.admin, { path: NODE_OBJECTS_PATH });
    nodeObjects.on("add", (o) => tracker.observeNodeObject(o));
    nodeObjects.on("update", (o) => tracker.observeNodeObject(o));
    nodeObjects.on("delete", (o) => tracker.forgetNodeObject(o));
    watchers.push(new ListWatch(c.admin, { path: PATCHES_PATH, onChange: (objects) => tracker.observePatches(objects) }), nodeObjects);
    await Promise.all(watchers.map((w) => w.start()));

    const shards = fleetShards(opts.nodes - 1);
    log(`starting ${opts.nodes - 1} simulated agents (${shards ? `in ${shards} fleet processes` : "in this process"}) and one agent process`);
    fleet = createFleet(opts.nodes - 1, { conn: c.conn, kubeconfig: c.cp.kubeconfigPath, hostsDir, kernelRelease: RELEASE, transitionMs: opts.transitionMs, resyncMs: opts.agentResyncMs, clock: elapsed, fromEpoch: (ms) => ms - performance.timeOrigin - t0 });
    const f = fleet;
    const [agentPort] = (await freePorts(1)) as [number];
    agentProc = await startAgentProcess({
      bundle: opts.agentBundle,
      flags: imageNodeFlags(REPO, "agent"),
      env: imageEnv(REPO, "agent"),
      name: c.nodes[0]!,
      root: path.join(hostsDir, c.nodes[0]!),
      kubeconfig: c.cp.kubeconfigPath,
      kernelRelease: RELEASE,
      transitionMs: opts.transitionMs,
      port: agentPort,
      logFile: path.join(dir, "agent.log"),
    });
    await fleet.start(c.nodes.slice(1));
    await until("every agent's first pass", 600_000, async () => f.passesDone === opts.nodes - 1 && (await httpOk(agentPort, "/readyz")));
    await sleep(2000);

    // --- the idle fleet: what every connected agent costs per second before any patch exists, a
    // cost that grows with the fleet times the rollout's length on these shared cores
    const procs = sampler(c, operator, agentProc, f.pids);
    const i0 = procs();
    await sleep(IDLE_FLEET_SECONDS * 1000);
    const i1 = procs();
    const idleFleet = { apiserver: cpuBetween(i0.apiserver, i1.apiserver) / IDLE_FLEET_SECONDS, agents: cpuBetween(i0.bench, i1.bench) / IDLE_FLEET_SECONDS };
    log(`idle fleet: API server ${(idleFleet.apiserver * 100).toFixed(1)}% of a core, simulated agents ${(idleFleet.agents * 100).toFixed(1)}%`);

    // --- the rollout
    const apiBefore = await scrapeApiServer(c.admin);
    const opBefore = await scrapeOperator(op.metricsPort);
    const p0 = procs();
    const load0 = loadavg()[0]!;
    const machine0 = sampleMachine();
    log(`applying ${opts.patches} patch(es) to ${opts.nodes} nodes`);
    tracker.startCounting();
    t0 = performance.now();
    for (let i = 0; i < opts.patches; i++) await createPatch(cluster, i);
    const progress = setInterval(() => log(`  ${(elapsed() / 1000).toFixed(0)} s: ${tracker.loaded}/${opts.nodes} Loaded (node objects), ${tracker.rolledUp}/${opts.nodes} rolled up`), 30_000);
    try {
      await until("Ready", opts.timeoutSeconds * 1000, () => tracker.ready);
    } catch {
      log(`  not Ready after ${opts.timeoutSeconds} s: ${tracker.loaded}/${opts.nodes} Loaded, ${tracker.rolledUp}/${opts.nodes} rolled up`);
    } finally {
      clearInterval(progress);
    }
    const p1 = procs();
    const load1 = loadavg()[0]!;
    const stealPct = stealPercent(machine0, sampleMachine());
    const opReady = await scrapeOperator(op.metricsPort).catch(() => opBefore);
    log(`Ready in ${tracker.timeline.readyMs === undefined ? "—" : `${Math.round(tracker.timeline.readyMs)} ms`}; idle window ${opts.idleSeconds} s`);

    // --- idle: what the rollout caused has landed; the operator's and one agent's idle cost
    await sleep(3000);
    const p2 = procs();
    await sleep(opts.idleSeconds * 1000);
    const p3 = procs();
    // A saturated API server may not answer: report what was measured rather than nothing.
    const apiAfter = await scrapeApiServer(c.admin).catch((err: unknown) => (log(`API server metrics unavailable: ${String(err)}`), apiBefore));
    const opAfter = await scrapeOperator(op.metricsPort).catch(() => opBefore);
    const idlePct = (k: string) => (cpuBetween(p2[k], p3[k]) / opts.idleSeconds) * 100;
    const totals = await fleet.totals();
    const loads = totals.actions.filter((a) => a.op === "installAndLoad" && a.outcome === "ok").map((a) => a.at);
    const versions = { ...tracker.versions };
    const sizes = tracker.sizes();

    // --- the floor, on the same API server with nothing else running
    for (const w of watchers.splice(0)) w.stop();
    await fleet.stop();
    fleet = undefined;
    await stopChild(agentProc);
    await stopChild(operator);
    const runWrites = runStatusWrites({ versions });
    const floorLoad0 = loadavg()[0]!;
    log(`floor: creating ${opts.nodes} node objects (not timed)`);
    const names = await createFloorObjects(c.admin, opts.nodes);
    const floorArgs = { conn: cluster.conn, names, patches: cluster.patches, kernelRelease: RELEASE, sha256: cluster.sha256[0]!, timeoutMs: opts.floorTimeoutSeconds * 1000 };
    // CPU is sampled from the moment every writer's connection is up: the rollout's agents were
    // connected before it began, so the floors do not pay N TLS handshakes either.
    const apiPid = c.cp.pids()["kube-apiserver"]!;
    let timedStart = sampleProc(apiPid);
    const onTimedStart = () => (timedStart = sampleProc(apiPid));
    const floor = (writes: number) => measureFloor({ ...floorArgs, writes, onTimedStart });
    const show = (r: FloorResult) =>
      `${r.ms === undefined ? `not done (${r.landed}/${r.writes})` : `${Math.round(r.ms)} ms`}, ${r.failures} failed attempts ${JSON.stringify(r.failuresByCode)}`;
    log(`floor: ${opts.nodes} bare status applies (one per node), ${opts.nodes} writers at once (limit ${opts.floorTimeoutSeconds} s)`);
    const isFloorWrite = (l: Record<string, string>) => l.resource === "kernellivepatchnodes" && l.subresource === "status" && l.verb === "APPLY";
    const m0 = await scrapeApiServer(c.admin);
    const floorOnePerNode = await floor(opts.nodes);
    const f0 = timedStart;
    const f1 = sampleProc(apiPid);
    const m1 = await scrapeApiServer(c.admin);
    let floorRunLatency: number | undefined;
    log(`floor, one write per node: ${show(floorOnePerNode)}`);
    let floorRunWrites: FloorResult | undefined;
    let floorRunCpu: number | undefined;
    if (runWrites !== opts.nodes && runWrites > 0) {
      log(`floor: ${runWrites} bare status applies (the run's status writes), ${opts.nodes} writers at once`);
      floorRunWrites = await floor(runWrites);
      floorRunCpu = cpuBetween(timedStart, sampleProc(apiPid));
      floorRunLatency = meanMs(m1, await scrapeApiServer(c.admin), isFloorWrite);
      log(`floor, the run's writes: ${show(floorRunWrites)}`);
    }
    const patchObjects = await Promise.all(cluster.patches.map(async (name) => KernelLivePatch.parse(await cluster.admin.json("GET", `${PATCHES_PATH}/${name}`))));
    const projectionOf = (node: string) =>
      projectNode({ nodeName: node, labels: { "kubernetes.io/hostname": node, bench: "yes" }, globalSelector: {}, patches: patchObjects, entryOf: () => undefined, admitted: () => true });
    log(`floor, the design's: ${opts.nodes} projection applies, then ${versions.agents} bare status applies (the agents' writes)`);
    const floorDesign = await measureFloor({ ...floorArgs, writes: versions.agents, projectionOf, onTimedStart });
    const floorDesignCpu = cpuBetween(timedStart, sampleProc(apiPid));
    log(`floor, the design's: ${show(floorDesign)}; API server CPU ${floorDesignCpu.toFixed(1)} s (the rollout's: ${cpuBetween(p0.apiserver, p1.apiserver).toFixed(1)} s)`);
    const floorLoad1 = loadavg()[0]!;

    return {
      nodes: opts.nodes,
      patches: opts.patches,
      load: [load0, load1],
      stealPct,
      floorLoad: [floorLoad0, floorLoad1],
      floorOnePerNode,
      floorRunWrites,
      floorDesign,
      readyMs: tracker.timeline.readyMs,
      loadedAtEnd: tracker.loaded,
      timeline: tracker.timeline,
      loadDone: { p50: percentile(loads, 50), p90: percentile(loads, 90), max: percentile(loads, 100) },
      api: apiCounts(apiBefore, apiAfter),
      versions,
      agentEntries: totals.writes,
      agentWriteFailures: totals.failures,
      agentWriteFailureKinds: totals.failureKinds,
      agentWritePhases: totals.phases,
      agentWriteMeanMs: totals.writes ? totals.writeMs / totals.writes : 0,
      deliveries: totals.deliveries,
      hostReads: totals.hostReads,
      reconciles: reconciles(opBefore, opAfter),
      reconcileSeconds: reconcileSeconds(opBefore, opReady),
      floorApiserverCpu: { onePerNode: cpuBetween(f0, f1), runWrites: floorRunCpu, design: floorDesignCpu },
      floorLatencyMs: { onePerNode: meanMs(m0, m1, isFloorWrite), runWrites: floorRunLatency },
      idleFleet,
      cpu: {
        apiserver: cpuBetween(p0.apiserver, p1.apiserver),
        etcd: cpuBetween(p0.etcd, p1.etcd),
        operator: cpuBetween(p0.operator, p1.operator),
        inProcessAgents: cpuBetween(p0.bench, p1.bench),
        benchProcess: cpuBetween(p0.benchProcess, p1.benchProcess),
        agentProcess: cpuBetween(p0.agent, p1.agent),
      },
      operator: { rssMiB: p3.operator?.rssMiB ?? NaN, peakMiB: p3.operator?.peakMiB ?? NaN, rolloutCpu: cpuBetween(p0.operator, p1.operator), idleCpuPct: idlePct("operator") },
      operatorHeap: { ready: heap(opReady), idle: heap(opAfter) },
      agentProcess: { rssMiB: p3.agent?.rssMiB ?? NaN, peakMiB: p3.agent?.peakMiB ?? NaN, idleCpuPct: idlePct("agent") },
      ...sizes,
    };
  } finally {
    for (const w of watchers) w.stop();
    await fleet?.stop().catch(() => undefined);
    agentProc?.kill("SIGTERM");
    operator?.kill("SIGTERM");
    c?.admin.close();
    await c?.cp.stop();
    await rm(hostsDir, { recursive: true, force: true });
  }
}
