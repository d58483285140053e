/** The benchmark's tables (Markdown, so they paste into docs/benchmarks.md). */
import type { FloorResult } from "./floor.ts";
import { runStatusWrites, type RunResult } from "./run.ts";
import type { SeedResult } from "./seed.ts";

const s = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? "—" : (ms / 1000).toFixed(1));
const n1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "—");
const n2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "—");
const label = (r: { nodes: number; patches: number }) => `${r.nodes} × ${r.patches}`;
const row = (cells: Array<string | number>) => `| ${cells.join(" | ")} |`;
const VERBS = ["LIST", "GET", "WATCH", "APPLY", "PATCH", "POST", "PUT", "DELETE"];

function floorCell(f: FloorResult | undefined): string {
  if (!f) return "(same)";
  const failed = f.failures ? `, ${f.failures} failed attempts (${Object.entries(f.failuresByCode).map(([k, v]) => `${v}× ${k}`).join(", ")})` : "";
  return f.ms === undefined ? `> limit: ${f.landed}/${f.writes} landed${failed}` : `${s(f.ms)}${failed}`;
}

/** The floor the ratio uses: the run's own number of status writes (one per node when that is what the run made). */
export const floorUsed = (r: RunResult): FloorResult => r.floorRunWrites ?? r.floorOnePerNode;

const perNode = (r: RunResult, x: number) => x / (r.nodes * r.patches);

export function headline(results: readonly RunResult[]): string {
  const lines = [
    row([
      "nodes × patches",
      "load avg",
      "CPU stolen by the hypervisor (%)",
      "apply → Ready (s)",
      "apply → Ready per node (ms; goal at 5000 ≤ 1.2× the figure at 1000)",
      "floor: the run's W status writes (s)",
      "÷ floor",
      "API server CPU: rollout ÷ the design's floor (goal ≤ 1.25)",
      "status writes / node: agents + operator (goal ≤ 2)",
      "operator RSS / peak MiB",
      "operator CPU s (rollout), idle %",
      "agent process idle RSS MiB, idle CPU %",
    ]),
    row(["---", "---", "---:", "---:", "---:", "---", "---:", "---:", "---", "---:", "---", "---"]),
  ];
  for (const r of results) {
    const f = floorUsed(r);
    const ready = r.readyMs === undefined ? `not Ready (${r.loadedAtEnd}/${r.nodes} Loaded)` : s(r.readyMs);
    lines.push(
      row([
        label(r),
        `${n1(r.load[0])}–${n1(r.load[1])}`,
        n1(r.stealPct),
        ready,
        r.readyMs === undefined ? "—" : n2(r.readyMs / r.nodes),
        `W = ${f.writes}: ${floorCell(f)}`,
        r.readyMs === undefined || f.ms === undefined ? "—" : n2(r.readyMs / f.ms),
        n2(r.cpu.apiserver / r.floorApiserverCpu.design),
        `${n2(perNode(r, runStatusWrites(r)))} = ${n2(perNode(r, r.versions.agents))} + ${n2(perNode(r, r.versions.operatorStatus))}`,
        `${n1(r.operator.rssMiB)} / ${n1(r.operator.peakMiB)}`,
        `${n1(r.operator.rolloutCpu)}, ${n2(r.operator.idleCpuPct)}`,
        `${n1(r.agentProcess.rssMiB)}, ${n2(r.agentProcess.idleCpuPct)}`,
      ]),
    );
  }
  return lines.join("\n");
}

export function floors(results: readonly RunResult[]): string {
  const lines = [
    row([
      "nodes × patches",
      "load avg",
      "writers",
      "one write per node: writes, s",
      "the run's status writes: writes, s (the ratio's)",
      "API server CPU s: one per node / the run's",
      "server-side ms per apply: one per node / the run's",
      "the rollout's API server CPU s (apply → Ready)",
      "the design's floor (a projection per node + the agents' writes): writes, s; API server CPU s",
      "API server CPU: rollout ÷ design floor",
    ]),
    row(["---", "---", "---:", "---", "---", "---", "---", "---:", "---", "---:"]),
  ];
  for (const r of results) {
    lines.push(
      row([
        label(r),
        `${n1(r.floorLoad[0])}–${n1(r.floorLoad[1])}`,
        r.floorOnePerNode.writers,
        `${r.floorOnePerNode.writes}: ${floorCell(r.floorOnePerNode)}`,
        r.floorRunWrites ? `${r.floorRunWrites.writes}: ${floorCell(r.floorRunWrites)}` : "(the same: one per node)",
        `${n1(r.floorApiserverCpu.onePerNode)} / ${r.floorApiserverCpu.runWrites === undefined ? "—" : n1(r.floorApiserverCpu.runWrites)}`,
        `${n1(r.floorLatencyMs.onePerNode)} / ${r.floorLatencyMs.runWrites === undefined ? "—" : n1(r.floorLatencyMs.runWrites)}`,
        n1(r.cpu.apiserver),
        `${r.floorDesign.projectionWrites} + ${r.floorDesign.writes}: ${floorCell(r.floorDesign)}; ${n1(r.floorApiserverCpu.design)}`,
        n2(r.cpu.apiserver / r.floorApiserverCpu.design),
      ]),
    );
  }
  return lines.join("\n");
}

export function writesPerNode(results: readonly RunResult[]): string {
  const lines = [
    row([
      "nodes × patches",
      "status writes / node: agents + operator",
      "operator projection writes / node (node objects' spec)",
      "operator finalizer writes",
      "entry applies / node: all (successful)",
      "projection applies / node",
      "patch status applies",
      "server-side ms per request: entry apply / projection apply / patch status apply / event POST",
    ]),
    row(["---", "---", "---:", "---:", "---", "---:", "---:", "---"]),
  ];
  for (const r of results) {
    lines.push(
      row([
        label(r),
        `${n2(perNode(r, runStatusWrites(r)))} = ${n2(perNode(r, r.versions.agents))} + ${n2(perNode(r, r.versions.operatorStatus))}`,
        n2(r.versions.operatorSpec / r.nodes),
        r.versions.operatorMeta,
        `${n2(perNode(r, r.api.entryApplies))} (${n2(perNode(r, r.api.entryAppliesOk))})`,
        n2(r.api.projectionApplies / r.nodes),
        r.api.patchStatusApplies,
        [r.api.latencyMs.entry, r.api.latencyMs.projection, r.api.latencyMs.patchStatus, r.api.latencyMs.events].map(n1).join(" / "),
      ]),
    );
  }
  return lines.join("\n");
}

/** A run's requests (of the kinds `where` accepts), as "APPLY kernellivepatchnodes/status" and the like. */
const allRequests = (r: RunResult, where: (kind: string) => boolean = () => true) =>
  [...r.api.byRequest].filter(([kind]) => where(kind)).reduce((a, [, n]) => a + n, 0);

export function requestsPerNode(results: readonly RunResult[]): string {
  const lines = [row(["nodes × patches", ...VERBS, "all"]), row(["---", ...VERBS.map(() => "---:"), "---:"])];
  for (const r of results) {
    const per = (v: string) => (r.api.byVerb.get(v) ?? 0) / r.nodes;
    lines.push(row([label(r), ...VERBS.map((v) => n2(per(v))), n2(allRequests(r) / r.nodes)]));
  }
  return [...lines, "", requestsByKind(results), "", requestsPerAddedNode(results)].join("\n");
}

/**
 * Requests no client of this project makes (its operator renews its Lease with PATCH; nothing of it
 * reads Endpoints, Services or OpenAPI): the API server's own, its identity Lease renewed every 10 s,
 * its endpoint reconciler's and its service repair's reads, which grow with a run's duration, not
 * with its nodes.
 */
const apiServersOwn = (kind: string) => ["PUT leases", "GET endpoints", "GET endpointslices", "LIST services"].includes(kind) || kind.startsWith("GET /openapi");

/**
 * What each node adds: the requests of the largest run less those of the smallest, per node added
 * (runs of as many patches). The rest do not grow with the fleet: the operator's roll-ups and
 * progress events (at most one each per 500 ms per patch), the patch, its finalizer, the DaemonSet.
 */
function requestsPerAddedNode(results: readonly RunResult[]): string {
  const sizes = [...results].filter((r) => r.patches === results[0]?.patches).sort((a, b) => a.nodes - b.nodes);
  const [small, large] = [sizes[0], sizes.at(-1)];
  if (!small || !large || large.nodes === small.nodes) return "Requests per node added: needs two fleet sizes (--nodes 1000,5000).";
  const ours = (kind: string) => !apiServersOwn(kind);
  const slope = (where?: (kind: string) => boolean) => (allRequests(large, where) - allRequests(small, where)) / (large.nodes - small.nodes);
  const perAdded = slope(ours);
  const fixed = (r: RunResult) => Math.round(allRequests(r, ours) - perAdded * r.nodes);
  const own = (r: RunResult) => Math.round(allRequests(r, apiServersOwn));
  return (
    `Requests per node added, ${small.nodes} → ${large.nodes} nodes (goal ≤ 5): **${n2(perAdded)}** by this project's clients (${n2(slope())} with the API server's own); ` +
    `beyond them, per run: ${[small, large].map((r) => `${fixed(r)} at ${r.nodes} (and ${own(r)} of the API server's own)`).join(", ")}.`
  );
}

/** Requests by verb and resource: how many in all, and per node. */
function requestsByKind(results: readonly RunResult[]): string {
  const last = results.at(-1);
  const kinds = [...new Set(results.flatMap((r) => [...r.api.byRequest.keys()]))]
    .filter((k) => results.some((r) => (r.api.byRequest.get(k) ?? 0) > 0))
    .sort((a, b) => (last?.api.byRequest.get(b) ?? 0) - (last?.api.byRequest.get(a) ?? 0) || a.localeCompare(b));
  const lines = [row(["request", ...results.map((r) => `${label(r)}: all (per node)`)]), row(["---", ...results.map(() => "---:")])];
  for (const k of kinds) lines.push(row([k, ...results.map((r) => `${Math.round(r.api.byRequest.get(k) ?? 0)} (${n2((r.api.byRequest.get(k) ?? 0) / r.nodes)})`)]));
  return lines.join("\n");
}

export function whereTimeGoes(results: readonly RunResult[]): string {
  const lines = [
    row([
      "nodes × patches",
      "finalizer / projected / admitted / projected admitted / first Loaded / all Loaded / rolled up / Ready (s)",
      "agent loads done p50 / p90 / max (s)",
      "CPU s: apiserver / etcd / operator / simulated agents and the benchmark (the benchmark's process) / agent process",
      "idle fleet before apply, % of a core: apiserver / simulated agents",
      "reconciles: patch / node / daemonset (their s, apply → Ready)",
      "watch events sent: KLP (MB) / KLPN (MB)",
      "updatePatches / host reads (passes) per agent",
      "KiB: patch / node object",
      "agent entries: mean ms until written, failed",
      "agent entries by phase",
      "operator V8 heap used / total, external MiB: Ready → idle",
    ]),
    row(["---", "---", "---", "---", "---", "---", "---", "---:", "---", "---", "---", "---"]),
  ];
  for (const r of results) {
    const t = r.timeline;
    lines.push(
      row([
        label(r),
        [t.finalizerMs, t.projectedMs, t.admittedMs, t.projectedAdmittedMs, t.firstLoadedMs, t.allLoadedMs, t.rolledUpMs, t.readyMs].map(s).join(" / "),
        [r.loadDone.p50, r.loadDone.p90, r.loadDone.max].map(s).join(" / "),
        `${[r.cpu.apiserver, r.cpu.etcd, r.cpu.operator].map(n1).join(" / ")} / ${n1(r.cpu.inProcessAgents)} (${n1(r.cpu.benchProcess)}) / ${n1(r.cpu.agentProcess)}`,
        [r.idleFleet.apiserver, r.idleFleet.agents].map((c) => n1(c * 100)).join(" / "),
        `${r.reconciles.get("kernellivepatch") ?? 0} / ${r.reconciles.get("kernellivepatchnode") ?? 0} / ${r.reconciles.get("agent-daemonset") ?? 0} (${["kernellivepatch", "kernellivepatchnode", "agent-daemonset"].map((k) => n1(r.reconcileSeconds.get(k) ?? 0)).join(" / ")})`,
        `${r.api.patchWatchEvents} (${n1(r.api.patchWatchBytes / 1e6)}) / ${r.api.nodeObjectWatchEvents} (${n1(r.api.nodeObjectWatchBytes / 1e6)})`,
        `${n1(r.deliveries / Math.max(1, r.nodes - 1))} / ${n1(r.hostReads / Math.max(1, r.nodes - 1))}`,
        `${n1(r.patchBytes / 1024)} / ${n1(r.nodeObjectBytes / 1024)}`,
        `${n1(r.agentWriteMeanMs)}, ${r.agentWriteFailures}${r.agentWriteFailures ? ` (${Object.entries(r.agentWriteFailureKinds).map(([k, v]) => `${v}× ${k}`).join(", ")})` : ""}`,
        Object.entries(r.agentWritePhases)
          .map(([phase, count]) => `${phase} ${count}`)
          .join(", "),
        [r.operatorHeap.ready, r.operatorHeap.idle].map((h) => `${n1(h.heapUsedMiB)} / ${n1(h.heapTotalMiB)}, ${n1(h.externalMiB)}`).join(" → "),
      ]),
    );
  }
  return lines.join("\n");
}

export function seeded(results: readonly SeedResult[]): string {
  const lines = [
    row([
      "nodes × patches (seeded)",
      "KiB (managedFields): patch / node object",
      "operator start → all Ready (s); its writes: projections, patch statuses",
      "operator RSS MiB: steady / churn max / peak / after (goal ≤ 150 at 1000 × 10, ≤ 256 at 15000 × 10)",
      "operator V8 heap used / total, external MiB: steady → after",
      "operator CPU s in churn; idle % before / after it (reconciles in the idle window after: patch / node / daemonset)",
      "agent process RSS MiB idle / peak, CPU s in churn",
      "churn: writes (+ operator status, projection writes), s, apiserver CPU s per write",
      "watch events: KLP (MB) / KLPN (MB)",
      "reconciles: patch / node / daemonset",
    ]),
    row(["---", "---", "---", "---", "---", "---", "---", "---", "---", "---"]),
  ];
  for (const r of results) {
    const c = r.churn;
    lines.push(
      row([
        label(r),
        `${n1(r.patchBytes / 1024)} (${n1(r.patchManagedFieldsBytes / 1024)}) / ${n1(r.nodeObjectBytes / 1024)} (${n1(r.nodeObjectManagedFieldsBytes / 1024)})`,
        `${s(r.operatorStartMs)}; ${r.startWrites.projections}, ${r.startWrites.patchStatuses}`,
        [r.operator.steadyMiB, r.operator.churnMaxMiB, r.operator.peakMiB, r.operator.afterMiB].map(n1).join(" / "),
        [r.operatorHeap.steady, r.operatorHeap.after].map((h) => `${n1(h.heapUsedMiB)} / ${n1(h.heapTotalMiB)}, ${n1(h.externalMiB)}`).join(" → "),
        `${n1(r.operator.churnCpu)}; ${n2(r.operator.idleBeforeCpuPct)} / ${n2(r.operator.idleCpuPct)} (${r.idleReconciles.get("kernellivepatch") ?? 0} / ${r.idleReconciles.get("kernellivepatchnode") ?? 0} / ${r.idleReconciles.get("agent-daemonset") ?? 0})`,
        `${n1(r.agentProcess.idleMiB)} / ${n1(r.agentProcess.peakMiB)}, ${n1(r.agentProcess.churnCpu)}`,
        `${c.writes} (+${c.operatorStatusWrites}, ${c.operatorProjectionWrites})${c.failures ? `, ${c.failures} failed attempts (${Object.entries(c.failureKinds).map(([k, v]) => `${v}× ${k}`).join(", ")})${c.givenUp ? `, ${c.givenUp} given up` : ""}` : ""}, ${s(c.ms)}, ${n2(c.apiserverCpu / (c.writes + c.operatorStatusWrites + c.operatorProjectionWrites))}`,
        `${c.patchWatchEvents} (${n1(c.patchWatchBytes / 1e6)}) / ${c.nodeObjectWatchEvents} (${n1(c.nodeObjectWatchBytes / 1e6)})`,
        `${r.reconciles.get("kernellivepatch") ?? 0} / ${r.reconciles.get("kernellivepatchnode") ?? 0} / ${r.reconciles.get("agent-daemonset") ?? 0}`,
      ]),
    );
  }
  return lines.join("\n");
}

/** JSON-friendly copy (Maps as objects). */
export function toJson(r: RunResult | SeedResult): unknown {
  return {
    ...r,
    ...("api" in r ? { api: { ...r.api, byVerb: Object.fromEntries(r.api.byVerb), byRequest: Object.fromEntries(r.api.byRequest) }, reconcileSeconds: Object.fromEntries(r.reconcileSeconds) } : {}),
    reconciles: Object.fromEntries(r.reconciles),
    ...("idleReconciles" in r ? { idleReconciles: Object.fromEntries(r.idleReconciles) } : {}),
  };
}
