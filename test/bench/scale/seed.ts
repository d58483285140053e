/**
 * `--seed`: the operator's and one agent's memory at the size a rollout ends at, without paying
 * for the rollout. The state a finished rollout leaves is written directly:
 *   - P patches, each with the operator's finalizer and the status.rollout it leaves (generation 1,
 *     every node admitted; the rest of the status the operator rewrites once on start anyway);
 *   - N KernelLivePatchNodes, each with the projection the operator would write (computed by the
 *     operator's own projectNode and hashed as the controller hashes it, under its field manager,
 *     owned by the Node) and P `Loaded` entries in its status under the agent's field manager.
 * Then the operator starts on that state, with one agent process on the first node (seeded without
 * entries: that agent loads its patches itself), until every patch is Ready (the writes during the
 * start are counted: 0 projection writes means the operator found every projection as it would
 * have written it), and a churn of agent-like writes (a node going Loading → Loaded again on one patch,
 * as after a reboot: each write carries the node's P entries, as the agent's do) runs.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { API_VERSION, FINALIZER, KernelLivePatch, KIND, type NodePatchEntry } from "../../../crds/schema.ts";
import { KubeHttp } from "../../../kube/http-client.ts";
import { NODE_OBJECTS_PATH } from "../../../crds/schema.ts";
import { Watcher } from "../../../node-agent/kube/watcher.ts";
import { NodeObjectClient, projectionHash } from "../../../operator/kube/node-objects.ts";
import { OPERATOR_FIELD_MANAGER } from "../../../operator/kube/patches.ts";
import { projectNode } from "../../../operator/nodes/projection.ts";
import { freePorts } from "../../../scripts/dev/control-plane/index.ts";
import { httpOk, PATCHES_PATH, patchObject, prepareCluster, RELEASE, REPO, sleep, startOperator, until, type Cluster, type OperatorRunner } from "./cluster.ts";
import { imageEnv, imageNodeFlags, startAgentProcess } from "./fleet.ts";
import { applyEntries, loadedEntry } from "./floor.ts";
import { apiCounts, heap, reconciles, scrapeApiServer, scrapeOperator, type HeapSample } from "./metrics.ts";
import { cpuBetween, sampleProc } from "./proc.ts";
import { failureKind, pool } from "./util.ts";

export interface SeedOptions {
  nodes: number;
  patches: number;
  churn: number;
  idleSeconds: number;
  operator: OperatorRunner;
  agentBundle: string;
  binDir: string;
  workDir: string;
  log: (line: string) => void;
}

export interface SeedResult {
  nodes: number;
  patches: number;
  /** JSON size of one patch (its status holds N entries once the operator rolled up) and of one node object, with managedFields; and theirs. */
  patchBytes: number;
  patchManagedFieldsBytes: number;
  nodeObjectBytes: number;
  nodeObjectManagedFieldsBytes: number;
  operatorStartMs: number;
  /** The operator's successful writes from its start to every patch Ready: node-object projections, patch statuses. */
  startWrites: { projections: number; patchStatuses: number };
  /** idleBeforeCpuPct: CPU % in the idle window before the churn (after its start); idleCpuPct: in the one after. */
  operator: { steadyMiB: number; churnMaxMiB: number; peakMiB: number; afterMiB: number; churnCpu: number; idleBeforeCpuPct: number; idleCpuPct: number };
  /** Reconciles per controller in the idle window after the churn. */
  idleReconciles: Map<string, number>;
  /** The operator's V8 heap (used / total) and external memory, before the churn and after the idle window. */
  operatorHeap: { steady: HeapSample; after: HeapSample };
  agentProcess: { idleMiB: number; peakMiB: number; churnCpu: number; idleCpuPct: number };
  churn: {
    /** Churn writes that landed (a failed one is retried like an agent retries its pass; given up after 6 attempts). */
    writes: number;
    /** Failed attempts (e.g. the API server's own 60 s request timeout, 504), by kind; and writes given up. */
    failures: number;
    failureKinds: Record<string, number>;
    givenUp: number;
    ms: number;
    apiserverCpu: number;
    /** Watch events sent (all watchers): KernelLivePatches, KernelLivePatchNodes; and their bytes. */
    patchWatchEvents: number;
    patchWatchBytes: number;
    nodeObjectWatchEvents: number;
    nodeObjectWatchBytes: number;
    /** The operator's successful patch-status writes and node-object projection writes during the churn. */
    operatorStatusWrites: number;
    operatorProjectionWrites: number;
  };
  reconciles: Map<string, number>;
}

/** The agent's entries of one node: a Loaded entry per patch (or `phase` for patch `which`). */
function entriesOf(c: Cluster, uids: readonly string[], node: string, which?: { patch: number; loading: boolean }): NodePatchEntry[] {
  return c.patches.map((patch, i): NodePatchEntry => {
    const e = loadedEntry(node, RELEASE, c.sha256[i]!, `bench_fix_${i}`);
    const loading = which?.patch === i && which.loading ? { phase: "Loading" as const, enabled: false, transition: true } : {};
    return { ...e, ...loading, patch, patchUID: uids[i]! };
  });
}

/** Seeds the patches, then every node object (projection, then entries). Returns the patch uids. */
async function seedState(c: Cluster, log: (l: string) => void): Promise<string[]> {
  const patches: KernelLivePatch[] = [];
  for (let i = 0; i < c.patches.length; i++) {
    const name = c.patches[i]!;
    const body = patchObject(c, i) as { metadata: Record<string, unknown> };
    await c.admin.json("POST", PATCHES_PATH, { body: { ...body, metadata: { ...body.metadata, finalizers: [FINALIZER] } } });
    const created = await c.admin.json<{ metadata: { generation: number } }>("GET", `${PATCHES_PATH}/${name}`);
    const generation = created.metadata.generation;
    const written = await c.admin.json<unknown>("PATCH", `${PATCHES_PATH}/${name}/status`, {
      query: { fieldManager: OPERATOR_FIELD_MANAGER, force: true },
      contentType: "application/apply-patch+yaml",
      body: { apiVersion: API_VERSION, kind: KIND, metadata: { name }, status: { observedGeneration: generation, rollout: { generation, admittedCount: c.nodes.length, halted: false } } },
    });
    patches.push(KernelLivePatch.parse(written));
  }
  log(`seeding ${c.nodes.length} node objects: the operator's projection, then ${c.patches.length} Loaded entries each`);
  const uids = patches.map((p) => p.metadata.uid ?? "");
  await pool(c.nodes, 16, async (node) => {
    // As the controller's reconcileNode computes and writes it (operator/controller/controller.ts),
    // every node admitted: the projection is the record of admission.
    const desired = projectNode({ nodeName: node, labels: { "kubernetes.io/hostname": node, bench: "yes" }, globalSelector: {}, patches, entryOf: () => undefined, admitted: () => true });
    await new NodeObjectClient(c.admin).applySpec({ name: node, uid: c.nodeUids.get(node)! }, desired, projectionHash(desired));
    // The node the agent process runs on gets no entries: its simulated host is fresh, and Loaded
    // entries from another boot, with nothing live, are what a node that crashed during its soak
    // shows (its agent reports RebootDuringSoak and the rollout halts). Its agent loads the patches.
    if (node !== c.nodes[0]) await applyEntries(c.admin, node, entriesOf(c, uids, node));
  });
  return uids;
}

export async function runSeeded(opts: SeedOptions): Promise<SeedResult> {
  const dir = await mkdtemp(path.join(opts.workDir, `seed-${opts.nodes}x${opts.patches}-`));
  const hostsDir = await mkdtemp("/dev/shm/klp-bench-hosts-");
  const { log } = opts;
  let c: Cluster | undefined;
  let operator: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  let watcher: Watcher | undefined;
  const writers: KubeHttp[] = [];
  try {
    c = await prepareCluster({ dir, binDir: opts.binDir, nodes: opts.nodes, patches: opts.patches, log });
    const cluster = c;
    log(`seeding ${opts.patches} patch(es) (finalizer, status.rollout admitting every node)`);
    const uids = await seedState(c, log);

    // Ready = every patch rolled up by the operator.
    const ready = new Set<string>();
    watcher = new Watcher(c.admin, {
      path: PATCHES_PATH,
      onChange: (objects) => {
        for (const [name, o] of objects) {
          const s = (o as { status?: { conditions?: Array<{ type: string; status: string }>; summary?: { ready?: string } } }).status;
          if (s?.conditions?.some((x) => x.type === "Ready" && x.status === "True") && s.summary?.ready === `${opts.nodes}/${opts.nodes}`) ready.add(name);
          else ready.delete(name);
        }
      },
    });
    await watcher.start();
    log(`starting the operator (${opts.operator.kind}) on that state`);
    const apiStart = await scrapeApiServer(c.admin);
    const started = performance.now();
    const op = await startOperator(opts.operator, c.cp.kubeconfigPath, path.join(dir, "operator.log"));
    operator = op.child;
    const [port] = (await freePorts(1)) as [number];
    agent = await startAgentProcess({
      bundle: opts.agentBundle,
      flags: imageNodeFlags(REPO, "agent"),
      env: imageEnv(REPO, "agent"),
      name: c.nodes[0]!,
      root: path.join(hostsDir, c.nodes[0]!),
      kubeconfig: c.cp.kubeconfigPath,
      kernelRelease: RELEASE,
      transitionMs: 0,
      port,
      logFile: path.join(dir, "agent.log"),
    });
    await until("every patch Ready", 1_800_000, () => ready.size === opts.patches, 500);
    const operatorStartMs = performance.now() - started;
    await sleep(2000); // the node keys' reconciles that follow
    const startCounts = apiCounts(apiStart, await scrapeApiServer(c.admin));
    log(`operator: every patch Ready ${(operatorStartMs / 1000).toFixed(1)} s after its start; writes: ${startCounts.projectionApplies} projections, ${startCounts.patchStatusApplies} patch statuses`);
    const onePatch = await c.admin.json<{ metadata: { managedFields?: unknown[] } }>("GET", `${PATCHES_PATH}/${c.patches[0]}`);
    const oneNode = await c.admin.json<{ metadata: { managedFields?: unknown[] } }>("GET", `${NODE_OBJECTS_PATH}/${c.nodes[1]}`);

    await until("the agent's first pass", 300_000, () => httpOk(port, "/readyz"), 500);
    const opPid = operator.pid!;
    const beforeIdle = sampleProc(opPid);
    await sleep(opts.idleSeconds * 1000);
    const agentPid = agent.pid!;
    const apiPid = c.cp.pids()["kube-apiserver"]!;
    const steady = { op: sampleProc(opPid), agent: sampleProc(agentPid), api: sampleProc(apiPid) };

    // --- churn: nodes (other than the agent process's) going Loading → Loaded again, every patch at once
    log(`churn: ${opts.churn} agent-like status applies over ${opts.patches} patch(es)`);
    const apiBefore = await scrapeApiServer(c.admin);
    const opBefore = await scrapeOperator(op.metricsPort);
    let churnMaxMiB = steady.op?.rssMiB ?? 0;
    const watch = setInterval(() => (churnMaxMiB = Math.max(churnMaxMiB, sampleProc(opPid)?.rssMiB ?? 0)), 500);
    // A saturated API server answers a write it could not finish in its own request timeout (60 s)
    // with a 504: retry it as an agent retries a failed pass (1 s, 2 s, 4 s ...), count it, and give
    // up on that write after 6 attempts rather than on the whole run.
    const churnStats = { writes: 0, failures: 0, failureKinds: {} as Record<string, number>, givenUp: 0 };
    const applyRetrying = async (http: KubeHttp, node: string, entries: NodePatchEntry[]) => {
      for (let attempt = 0; attempt < 6; attempt++) {
        try {
          await applyEntries(http, node, entries);
          churnStats.writes++;
          return;
        } catch (err) {
          churnStats.failures++;
          const kind = failureKind(err);
          churnStats.failureKinds[kind] = (churnStats.failureKinds[kind] ?? 0) + 1;
          log(`  churn write to ${node} failed (${kind}), attempt ${attempt + 1}`);
          await sleep(Math.min(30_000, 1000 * 2 ** attempt));
        }
      }
      churnStats.givenUp++;
    };
    const t0 = performance.now();
    await Promise.all(
      cluster.patches.map(async (_, p) => {
        // One writer per patch, as before; pairs: one node goes Loading on this patch, then Loaded again.
        const http = new KubeHttp(cluster.conn);
        writers.push(http);
        for (let k = p; k < opts.churn / 2; k += opts.patches) {
          const node = cluster.nodes[1 + ((k * 7919) % (cluster.nodes.length - 1))]!;
          await applyRetrying(http, node, entriesOf(cluster, uids, node, { patch: p, loading: true }));
          await applyRetrying(http, node, entriesOf(cluster, uids, node));
        }
      }),
    );
    const churnMs = performance.now() - t0;
    log(`churn: ${churnStats.writes} writes landed in ${(churnMs / 1000).toFixed(1)} s, ${churnStats.failures} failed attempts ${JSON.stringify(churnStats.failureKinds)}`);
    await sleep(1000); // the operator's roll-up of the last write (it writes a status at most every 500 ms)
    await until("every patch Ready again", 1_800_000, () => ready.size === opts.patches, 500);
    await sleep(2000);
    clearInterval(watch);
    const afterChurn = { op: sampleProc(opPid), agent: sampleProc(agentPid), api: sampleProc(apiPid) };
    const apiAfter = await scrapeApiServer(c.admin);
    const opAfter = await scrapeOperator(op.metricsPort);
    await sleep(opts.idleSeconds * 1000);
    const idle = { op: sampleProc(opPid), agent: sampleProc(agentPid) };
    const opIdle = await scrapeOperator(op.metricsPort).catch(() => opAfter);
    const idleReconciles = reconciles(opAfter, opIdle);
    const churnCounts = apiCounts(apiBefore, apiAfter);

    return {
      nodes: opts.nodes,
      patches: opts.patches,
      patchBytes: JSON.stringify(onePatch).length,
      patchManagedFieldsBytes: JSON.stringify(onePatch.metadata.managedFields ?? []).length,
      nodeObjectBytes: JSON.stringify(oneNode).length,
      nodeObjectManagedFieldsBytes: JSON.stringify(oneNode.metadata.managedFields ?? []).length,
      operatorStartMs,
      startWrites: { projections: startCounts.projectionApplies, patchStatuses: startCounts.patchStatusApplies },
      operator: {
        steadyMiB: steady.op?.rssMiB ?? NaN,
        churnMaxMiB,
        peakMiB: idle.op?.peakMiB ?? NaN,
        afterMiB: idle.op?.rssMiB ?? NaN,
        churnCpu: cpuBetween(steady.op, afterChurn.op),
        idleBeforeCpuPct: (cpuBetween(beforeIdle, steady.op) / opts.idleSeconds) * 100,
        idleCpuPct: (cpuBetween(afterChurn.op, idle.op) / opts.idleSeconds) * 100,
      },
      idleReconciles,
      agentProcess: {
        idleMiB: steady.agent?.rssMiB ?? NaN,
        peakMiB: idle.agent?.peakMiB ?? NaN,
        churnCpu: cpuBetween(steady.agent, afterChurn.agent),
        idleCpuPct: (cpuBetween(afterChurn.agent, idle.agent) / opts.idleSeconds) * 100,
      },
      churn: {
        ...churnStats,
        ms: churnMs,
        apiserverCpu: cpuBetween(steady.api, afterChurn.api),
        patchWatchEvents: churnCounts.patchWatchEvents,
        patchWatchBytes: churnCounts.patchWatchBytes,
        nodeObjectWatchEvents: churnCounts.nodeObjectWatchEvents,
        nodeObjectWatchBytes: churnCounts.nodeObjectWatchBytes,
        operatorStatusWrites: churnCounts.patchStatusApplies,
        operatorProjectionWrites: churnCounts.projectionApplies,
      },
      operatorHeap: { steady: heap(opBefore), after: heap(opIdle) },
      reconciles: reconciles(opBefore, opAfter),
    };
  } finally {
    watcher?.stop();
    for (const w of writers) w.close();
    agent?.kill("SIGTERM");
    operator?.kill("SIGTERM");
    c?.admin.close();
    await c?.cp.stop();
    await rm(hostsDir, { recursive: true, force: true });
  }
}
