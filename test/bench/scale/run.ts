/**
 * One rollout run: its own control plane, N Node objects and simulated hosts, the floor, the
 * operator in its own process, the fleet of agents, P patches applied at once (maxUnavailable
 * 100%), then figures from the API server's metrics, the operator's metrics and /proc.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg } from "node:os";
import path from "node:path";
import { PATCHES_PATH } from "../../../node-agent/kube/agent-api.ts";
import { Watcher } from "../../../node-agent/kube/watcher.ts";
import { freePorts } from "../../support/control-plane.ts";
import { createPatch, httpOk, prepareCluster, RELEASE, REPO, sleep, startOperator, until, type Cluster, type OperatorRunner } from "./cluster.ts";
import { agentImageFlags, Fleet, startAgentProcess, type WatchMode } from "./fleet.ts";
import { measureFloor, type FloorResult } from "./floor.ts";
import { apiCounts, reconciles, scrapeApiServer, scrapeOperator, type ApiCounts } from "./metrics.ts";
import { cpuBetween, sampleProc, type ProcSample } from "./proc.ts";
import { Tracker, type Timeline } from "./tracker.ts";

export interface RunOptions {
  nodes: number;
  patches: number;
  mode: WatchMode;
  transitionMs: number;
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
  mode: WatchMode;
  /** 1-minute load average of the machine at the start and the end of the rollout. */
  load: [number, number];
  floor: FloorResult;
  readyMs: number | undefined;
  /** Nodes Loaded (fewest over the patches) when the run ended: N when Ready. */
  loadedAtEnd: number;
  timeline: Timeline;
  /** Completion of each in-process agent's load, ms after apply. */
  loadDone: { p50: number; p90: number; max: number };
  api: ApiCounts;
  /** Versions of the patches the benchmark's watch saw, by writer. */
  versions: { agents: number; operator: number };
  agentWrites: number;
  /** Failed status applies of the in-process agents (each fails the agent's pass; it retries). */
  agentWriteFailures: number;
  agentWriteFailureKinds: Record<string, number>;
  /** In-process agents' status applies by the phase written. */
  agentWritePhases: Record<string, number>;
  agentWriteMeanMs: number;
  /** updatePatches calls of the in-process agents (per-agent: watch events; shared: coalesced sets). */
  deliveries: number;
  reconciles: Map<string, number>;
  cpu: { apiserver: number; etcd: number; operator: number; inProcessAgents: number; agentProcess: number };
  operator: { rssMiB: number; peakMiB: number; idleCpuPct: number };
  agentProcess: { rssMiB: number; peakMiB: number; idleCpuPct: number };
  /** JSON size of one patch at the end, and the share of metadata.managedFields in it. */
  objectBytes: number;
  managedFieldsBytes: number;
}

const percentile = (xs: number[], p: number) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]! : NaN);

/** Process samples of every component, taken together. */
function sampler(c: Cluster, operator: ChildProcess, agent: ChildProcess): () => Record<string, ProcSample | undefined> {
  const pids = c.cp.pids();
  return () => ({
    apiserver: sampleProc(pids["kube-apiserver"]!),
    etcd: sampleProc(pids.etcd!),
    operator: sampleProc(operator.pid!),
    bench: sampleProc(process.pid),
    agent: sampleProc(agent.pid!),
  });
}

export async function runOnce(opts: RunOptions): Promise<RunResult> {
  const dir = await mkdtemp(path.join(opts.workDir, `run-${opts.nodes}x${opts.patches}-`));
  const hostsDir = await mkdtemp("/dev/shm/klp-bench-hosts-");
  const { log } = opts;
  let c: Cluster | undefined;
  let operator: ChildProcess | undefined;
  let agentProc: ChildProcess | undefined;
  let fleet: Fleet | undefined;
  let watcher: Watcher | undefined;
  try {
    c = await prepareCluster({ dir, binDir: opts.binDir, nodes: opts.nodes, patches: opts.patches, log });
    const cluster = c;

    log(`floor: ${opts.nodes * opts.patches} bare status applies, ${opts.nodes} writers at once (limit ${opts.floorTimeoutSeconds} s)`);
    const floor = await measureFloor({ conn: c.conn, admin: c.admin, nodes: c.nodes, patches: opts.patches, kernelRelease: RELEASE, sha256: c.sha256[0]!, timeoutMs: opts.floorTimeoutSeconds * 1000 });
    log(`floor: ${floor.ms === undefined ? `not done (${floor.landed}/${floor.writes})` : `${Math.round(floor.ms)} ms`}, ${floor.failures} failed attempts ${JSON.stringify(floor.failuresByCode)}`);

    log(`starting the operator (${opts.operator.kind})`);
    const op = await startOperator(opts.operator, c.cp.kubeconfigPath, path.join(dir, "operator.log"));
    operator = op.child;

    // The benchmark's own watch: the timeline, and in shared mode the feed of the in-process agents.
    let t0 = 0;
    const elapsed = () => performance.now() - t0;
    const tracker = new Tracker(c.patches, opts.nodes, elapsed);
    fleet = new Fleet({ conn: c.conn, hostsDir, kernelRelease: RELEASE, transitionMs: opts.transitionMs, mode: opts.mode, clock: elapsed });
    const f = fleet;
    watcher = new Watcher(c.admin, {
      path: PATCHES_PATH,
      onChange: (objects) => {
        if (opts.mode === "shared") f.feed(objects.values());
        if (t0 > 0) tracker.observe(objects);
      },
    });
    await watcher.start();

    log(`starting ${opts.nodes - 1} in-process agents (${opts.mode} watch) and one agent process`);
    const [agentPort] = (await freePorts(1)) as [number];
    agentProc = await startAgentProcess({
      bundle: opts.agentBundle,
      flags: agentImageFlags(REPO),
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

    // --- the rollout
    const apiBefore = await scrapeApiServer(c.admin);
    const opBefore = await scrapeOperator(op.metricsPort);
    const procs = sampler(c, operator, agentProc);
    const p0 = procs();
    const load0 = loadavg()[0]!;
    log(`applying ${opts.patches} patch(es) to ${opts.nodes} nodes`);
    t0 = performance.now();
    for (let i = 0; i < opts.patches; i++) await createPatch(cluster, i);
    const progress = setInterval(() => log(`  ${(elapsed() / 1000).toFixed(0)} s: ${tracker.loaded}/${opts.nodes} Loaded`), 30_000);
    try {
      await until("Ready", opts.timeoutSeconds * 1000, () => tracker.ready);
    } catch {
      log(`  not Ready after ${opts.timeoutSeconds} s: ${tracker.loaded}/${opts.nodes} Loaded`);
    } finally {
      clearInterval(progress);
    }
    const p1 = procs();
    const load1 = loadavg()[0]!;
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

    const one = await c.admin.json<{ metadata: { managedFields?: unknown[] } }>("GET", `${PATCHES_PATH}/${c.patches[0]}`).catch(() => ({ metadata: { managedFields: [] as unknown[] } }));
    const totals = fleet.totals();
    const loads = totals.actions.filter((a) => a.op === "installAndLoad" && a.outcome === "ok").map((a) => a.at);
    return {
      nodes: opts.nodes,
      patches: opts.patches,
      mode: opts.mode,
      load: [load0, load1],
      floor,
      readyMs: tracker.timeline.readyMs,
      loadedAtEnd: tracker.loaded,
      timeline: tracker.timeline,
      loadDone: { p50: percentile(loads, 50), p90: percentile(loads, 90), max: percentile(loads, 100) },
      api: apiCounts(apiBefore, apiAfter),
      versions: tracker.versions,
      agentWrites: totals.writes,
      agentWriteFailures: totals.failures,
      agentWriteFailureKinds: totals.failureKinds,
      agentWritePhases: totals.phases,
      agentWriteMeanMs: totals.writes ? totals.writeMs / totals.writes : 0,
      deliveries: totals.deliveries,
      reconciles: reconciles(opBefore, opAfter),
      cpu: {
        apiserver: cpuBetween(p0.apiserver, p1.apiserver),
        etcd: cpuBetween(p0.etcd, p1.etcd),
        operator: cpuBetween(p0.operator, p1.operator),
        inProcessAgents: cpuBetween(p0.bench, p1.bench),
        agentProcess: cpuBetween(p0.agent, p1.agent),
      },
      operator: { rssMiB: p3.operator?.rssMiB ?? NaN, peakMiB: p3.operator?.peakMiB ?? NaN, idleCpuPct: idlePct("operator") },
      agentProcess: { rssMiB: p3.agent?.rssMiB ?? NaN, peakMiB: p3.agent?.peakMiB ?? NaN, idleCpuPct: idlePct("agent") },
      objectBytes: JSON.stringify(one).length,
      managedFieldsBytes: JSON.stringify(one.metadata.managedFields ?? []).length,
    };
  } finally {
    watcher?.stop();
    await fleet?.stop().catch(() => undefined);
    agentProc?.kill("SIGTERM");
    operator?.kill("SIGTERM");
    c?.admin.close();
    await c?.cp.stop();
    await rm(hostsDir, { recursive: true, force: true });
  }
}
