/**
 * `--seed`: the operator's and one agent's memory at the size a rollout ends at, without paying
 * for the rollout (at 1000 nodes × 10 patches that is 20,000 status writes of ~1 MiB objects).
 * Each patch is created with N Loaded entries in one status apply; the entries' managedFields are
 * then split into one manager per node (kpatch-agent/<node>, as agents leave them) when the API
 * server accepts that, so the objects the operator caches have their real size. Then the operator
 * starts on that state, one agent process starts, and a churn of agent-like writes (a node going
 * Loading → Loaded again, as after a reboot) runs through every patch.
 */
import type { ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import { API_VERSION, KIND } from "../../../crds/schema.ts";
import { agentApi, agentFieldManager, PATCHES_PATH } from "../../../node-agent/kube/agent-api.ts";
import { Watcher } from "../../../node-agent/kube/watcher.ts";
import { freePorts } from "../../support/control-plane.ts";
import { createPatch, httpOk, prepareCluster, RELEASE, REPO, sleep, startOperator, until, type Cluster, type OperatorRunner } from "./cluster.ts";
import { agentImageFlags, startAgentProcess } from "./fleet.ts";
import { loadedEntry } from "./floor.ts";
import { heap, reconciles, scrapeApiServer, scrapeOperator, sumBy, diff, type HeapSample } from "./metrics.ts";
import { cpuBetween, sampleProc } from "./proc.ts";
import { failureKind } from "./util.ts";

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
  /** The API server took one managedFields entry per node (else: one for all, a smaller object). */
  managersPerNode: boolean;
  objectBytes: number;
  managedFieldsBytes: number;
  operatorStartMs: number;
  operator: { steadyMiB: number; churnMaxMiB: number; peakMiB: number; afterMiB: number; churnCpu: number; idleCpuPct: number };
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
    watchEvents: number;
    watchBytes: number;
    operatorWrites: number;
  };
  reconciles: Map<string, number>;
}

interface Managed {
  manager: string;
  operation: string;
  subresource?: string;
  fieldsV1?: { "f:status"?: { "f:nodes"?: Record<string, unknown> } };
  [k: string]: unknown;
}

/** Seeds one patch: N Loaded entries in one apply, then one managedFields entry per node. */
async function seedPatch(c: Cluster, i: number): Promise<boolean> {
  const name = c.patches[i]!;
  await createPatch(c, i);
  const entries = c.nodes.map((n) => loadedEntry(n, RELEASE, c.sha256[i]!, `bench_fix_${i}`));
  await c.admin.json("PATCH", `${PATCHES_PATH}/${name}/status`, {
    query: { fieldManager: "bench-seed", force: true },
    contentType: "application/apply-patch+yaml",
    body: { apiVersion: API_VERSION, kind: KIND, metadata: { name }, status: { nodes: entries } },
  });
  const obj = await c.admin.json<{ metadata: { managedFields: Managed[] } & Record<string, unknown> } & Record<string, unknown>>("GET", `${PATCHES_PATH}/${name}`);
  const seed = obj.metadata.managedFields.find((m) => m.manager === "bench-seed");
  const keys = seed?.fieldsV1?.["f:status"]?.["f:nodes"];
  if (!seed || !keys) return false;
  const perNode = Object.entries(keys)
    .filter(([k]) => k.startsWith("k:"))
    .map(([k, v]): Managed => {
      const node = (JSON.parse(k.slice(2)) as { nodeName: string }).nodeName;
      return { ...seed, manager: agentFieldManager(node), fieldsV1: { "f:status": { "f:nodes": { [k]: v } } } };
    });
  const managedFields = [...obj.metadata.managedFields.filter((m) => m !== seed), ...perNode];
  await c.admin.json("PUT", `${PATCHES_PATH}/${name}`, { body: { ...obj, metadata: { ...obj.metadata, managedFields } } });
  const after = await c.admin.json<{ metadata: { managedFields: Managed[] } }>("GET", `${PATCHES_PATH}/${name}`);
  return after.metadata.managedFields.filter((m) => m.manager.startsWith("kpatch-agent/")).length === c.nodes.length;
}

export async function runSeeded(opts: SeedOptions): Promise<SeedResult> {
  const dir = await mkdtemp(path.join(opts.workDir, `seed-${opts.nodes}x${opts.patches}-`));
  const hostsDir = await mkdtemp("/dev/shm/klp-bench-hosts-");
  const { log } = opts;
  let c: Cluster | undefined;
  let operator: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  let watcher: Watcher | undefined;
  try {
    c = await prepareCluster({ dir, binDir: opts.binDir, nodes: opts.nodes, patches: opts.patches, log });
    const cluster = c;
    log(`seeding ${opts.patches} patch(es) with ${opts.nodes} Loaded entries each`);
    let managersPerNode = true;
    for (let i = 0; i < opts.patches; i++) managersPerNode = (await seedPatch(cluster, i)) && managersPerNode;
    const one = await c.admin.json<{ metadata: { managedFields?: unknown[] } }>("GET", `${PATCHES_PATH}/${c.patches[0]}`);
    log(`seeded: one patch is ${(JSON.stringify(one).length / 1024).toFixed(0)} KiB, one manager per node: ${managersPerNode}`);

    // Ready = every patch rolled up by the operator.
    const ready = new Set<string>();
    watcher = new Watcher(c.admin, {
      path: PATCHES_PATH,
      onChange: (objects) => {
        for (const [name, o] of objects) {
          const s = (o as { status?: { conditions?: Array<{ type: string; status: string }> } }).status;
          if (s?.conditions?.some((x) => x.type === "Ready" && x.status === "True")) ready.add(name);
          else ready.delete(name);
        }
      },
    });
    await watcher.start();
    log(`starting the operator (${opts.operator.kind}) on that state`);
    const started = performance.now();
    const op = await startOperator(opts.operator, c.cp.kubeconfigPath, path.join(dir, "operator.log"));
    operator = op.child;
    await until("every patch Ready", 1_800_000, () => ready.size === opts.patches, 500);
    const operatorStartMs = performance.now() - started;

    const [port] = (await freePorts(1)) as [number];
    agent = await startAgentProcess({
      bundle: opts.agentBundle,
      flags: agentImageFlags(REPO),
      name: c.nodes[0]!,
      root: path.join(hostsDir, c.nodes[0]!),
      kubeconfig: c.cp.kubeconfigPath,
      kernelRelease: RELEASE,
      transitionMs: 0,
      port,
      logFile: path.join(dir, "agent.log"),
    });
    await until("the agent's first pass", 300_000, () => httpOk(port, "/readyz"), 500);
    await sleep(opts.idleSeconds * 1000);
    const opPid = operator.pid!;
    const agentPid = agent.pid!;
    const apiPid = c.cp.pids()["kube-apiserver"]!;
    const steady = { op: sampleProc(opPid), agent: sampleProc(agentPid), api: sampleProc(apiPid) };

    // --- churn: nodes (other than the agent process's) going Loading → Loaded again, every patch at once
    log(`churn: ${opts.churn} agent-like status applies over ${opts.patches} patch(es)`);
    const apiBefore = await scrapeApiServer(c.admin);
    const opBefore = await scrapeOperator(op.metricsPort);
    let churnMaxMiB = steady.op?.rssMiB ?? 0;
    const watch = setInterval(() => (churnMaxMiB = Math.max(churnMaxMiB, sampleProc(opPid)?.rssMiB ?? 0)), 500);
    const log0 = pino({ level: "silent" });
    // A saturated API server answers a write it could not finish in its own request timeout (60 s)
    // with a 504: retry it as an agent retries a failed pass (1 s, 2 s, 4 s ...), count it, and give
    // up on that write after 6 attempts rather than on the whole run.
    const churnStats = { writes: 0, failures: 0, failureKinds: {} as Record<string, number>, givenUp: 0 };
    const applyRetrying = async (api: ReturnType<typeof agentApi>, patch: string, entry: Parameters<ReturnType<typeof agentApi>["applyEntry"]>[1]) => {
      for (let attempt = 0; attempt < 6; attempt++) {
        try {
          await api.applyEntry(patch, entry);
          churnStats.writes++;
          return;
        } catch (err) {
          churnStats.failures++;
          const kind = failureKind(err);
          churnStats.failureKinds[kind] = (churnStats.failureKinds[kind] ?? 0) + 1;
          log(`  churn write to ${patch} failed (${kind}), attempt ${attempt + 1}`);
          await sleep(Math.min(30_000, 1000 * 2 ** attempt));
        }
      }
      churnStats.givenUp++;
    };
    const t0 = performance.now();
    await Promise.all(
      cluster.patches.map(async (patch, p) => {
        // Pairs: one node goes Loading, then Loaded again (each write a new version).
        for (let k = p; k < opts.churn / 2; k += opts.patches) {
          const node = cluster.nodes[1 + ((k * 7919) % (cluster.nodes.length - 1))]!;
          const api = agentApi(cluster.admin, node, log0);
          const entry = loadedEntry(node, RELEASE, cluster.sha256[p]!, `bench_fix_${p}`);
          await applyRetrying(api, patch, { ...entry, phase: "Loading", enabled: false, transition: true });
          await applyRetrying(api, patch, { ...entry, lastTransitionTime: new Date().toISOString() });
        }
      }),
    );
    const churnMs = performance.now() - t0;
    log(`churn: ${churnStats.writes} writes landed in ${(churnMs / 1000).toFixed(1)} s, ${churnStats.failures} failed attempts ${JSON.stringify(churnStats.failureKinds)}`);
    await until("every patch Ready again", 1_800_000, () => ready.size === opts.patches, 500);
    clearInterval(watch);
    const afterChurn = { op: sampleProc(opPid), agent: sampleProc(agentPid), api: sampleProc(apiPid) };
    const apiAfter = await scrapeApiServer(c.admin);
    const opAfter = await scrapeOperator(op.metricsPort);
    await sleep(opts.idleSeconds * 1000);
    const idle = { op: sampleProc(opPid), agent: sampleProc(agentPid) };
    const opIdle = await scrapeOperator(op.metricsPort).catch(() => opAfter);
    const d = (name: string, where: (l: Record<string, string>) => boolean) => diff(sumBy(apiBefore, name, undefined, where), sumBy(apiAfter, name, undefined, where)).get("") ?? 0;
    const isPatches = (l: Record<string, string>) => l.resource === "kernellivepatches" || l.kind === "KernelLivePatch";
    // Successful applies only: a 504 is counted too, and it is no write.
    const statusApplies = d("apiserver_request_total", (l) => isPatches(l) && l.subresource === "status" && l.verb === "APPLY" && /^2/.test(l.code ?? ""));

    return {
      nodes: opts.nodes,
      patches: opts.patches,
      managersPerNode,
      objectBytes: JSON.stringify(one).length,
      managedFieldsBytes: JSON.stringify(one.metadata.managedFields ?? []).length,
      operatorStartMs,
      operator: {
        steadyMiB: steady.op?.rssMiB ?? NaN,
        churnMaxMiB,
        peakMiB: idle.op?.peakMiB ?? NaN,
        afterMiB: idle.op?.rssMiB ?? NaN,
        churnCpu: cpuBetween(steady.op, afterChurn.op),
        idleCpuPct: (cpuBetween(afterChurn.op, idle.op) / opts.idleSeconds) * 100,
      },
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
        watchEvents: d("apiserver_watch_events_total", isPatches),
        watchBytes: d("apiserver_watch_events_sizes_sum", isPatches),
        operatorWrites: statusApplies - churnStats.writes,
      },
      operatorHeap: { steady: heap(opBefore), after: heap(opIdle) },
      reconciles: reconciles(opBefore, opAfter),
    };
  } finally {
    watcher?.stop();
    agent?.kill("SIGTERM");
    operator?.kill("SIGTERM");
    c?.admin.close();
    await c?.cp.stop();
    await rm(hostsDir, { recursive: true, force: true });
  }
}
