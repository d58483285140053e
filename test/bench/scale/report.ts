/** The benchmark's tables (Markdown, so they paste into docs/benchmarks.md). */
import type { RunResult } from "./run.ts";
import type { SeedResult } from "./seed.ts";

const s = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? "—" : (ms / 1000).toFixed(1));
const n1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "—");
const n2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "—");
const label = (r: { nodes: number; patches: number }) => `${r.nodes} × ${r.patches}`;
const row = (cells: Array<string | number>) => `| ${cells.join(" | ")} |`;
const VERBS = ["LIST", "GET", "WATCH", "APPLY", "PATCH", "POST", "PUT", "DELETE"];

function floorCell(r: RunResult): string {
  const f = r.floor;
  const failed = f.failures ? `, ${f.failures} failed attempts (${Object.entries(f.failuresByCode).map(([k, v]) => `${v}× ${k}`).join(", ")})` : "";
  return f.ms === undefined ? `> limit: ${f.landed}/${f.writes} landed${failed}` : `${s(f.ms)}${failed}`;
}

export function headline(results: readonly RunResult[]): string {
  const lines = [
    row([
      "nodes × patches",
      "agents' watch",
      "load avg",
      "floor (s)",
      "apply → Ready (s)",
      "÷ floor (goal ≤ 1.5)",
      "status writes / node: agents + operator (goal ≤ 2)",
      "status apply requests / node (incl. failed)",
      "operator RSS / peak MiB",
      "agent process RSS MiB, idle CPU %",
    ]),
    row(["---", "---", "---", "---", "---:", "---:", "---", "---:", "---:", "---:"]),
  ];
  for (const r of results) {
    const agents = r.agentWrites / ((r.nodes - 1) * r.patches);
    const operator = r.versions.operator / (r.nodes * r.patches);
    const ready = r.readyMs === undefined ? `not Ready (${r.loadedAtEnd}/${r.nodes} Loaded)` : s(r.readyMs);
    lines.push(
      row([
        label(r),
        r.mode,
        `${n1(r.load[0])}–${n1(r.load[1])}`,
        floorCell(r),
        ready,
        r.readyMs === undefined || r.floor.ms === undefined ? "—" : n1(r.readyMs / r.floor.ms),
        `${n2(agents + operator)} = ${n2(agents)} + ${n2(operator)}`,
        n2(r.api.statusApplies / (r.nodes * r.patches)),
        `${n1(r.operator.rssMiB)} / ${n1(r.operator.peakMiB)}`,
        `${n1(r.agentProcess.rssMiB)}, ${n2(r.agentProcess.idleCpuPct)}`,
      ]),
    );
  }
  return lines.join("\n");
}

export function requestsPerNode(results: readonly RunResult[]): string {
  const lines = [row(["nodes × patches", ...VERBS, "all"]), row(["---", ...VERBS.map(() => "---:"), "---:"])];
  for (const r of results) {
    const per = (v: string) => (r.api.byVerb.get(v) ?? 0) / r.nodes;
    const all = [...r.api.byVerb.values()].reduce((a, b) => a + b, 0) / r.nodes;
    lines.push(row([label(r), ...VERBS.map((v) => n2(per(v))), n2(all)]));
  }
  return lines.join("\n");
}

export function whereTimeGoes(results: readonly RunResult[]): string {
  const lines = [
    row([
      "nodes × patches",
      "finalizer / admitted / first Loaded / all Loaded / Ready (s)",
      "agent loads done p50 / p90 / max (s)",
      "CPU s: apiserver / etcd / operator / in-process agents / agent process",
      "reconciles: patch / daemonset",
      "KLP watch events sent (GB)",
      "updatePatches per agent",
      "patch KiB (managedFields)",
      "agent apply: mean ms, failed",
      "agent writes by phase",
    ]),
    row(["---", "---", "---", "---", "---", "---", "---:", "---", "---", "---"]),
  ];
  for (const r of results) {
    const t = r.timeline;
    lines.push(
      row([
        label(r),
        [t.finalizerMs, t.admittedMs, t.firstLoadedMs, t.allLoadedMs, t.readyMs].map(s).join(" / "),
        [r.loadDone.p50, r.loadDone.p90, r.loadDone.max].map(s).join(" / "),
        [r.cpu.apiserver, r.cpu.etcd, r.cpu.operator, r.cpu.inProcessAgents, r.cpu.agentProcess].map(n1).join(" / "),
        `${r.reconciles.get("kernellivepatch") ?? 0} / ${r.reconciles.get("agent-daemonset") ?? 0}`,
        `${r.api.patchWatchEvents} (${n2(r.api.patchWatchBytes / 1e9)})`,
        n1(r.deliveries / Math.max(1, r.nodes - 1)),
        `${n1(r.objectBytes / 1024)} (${n1(r.managedFieldsBytes / 1024)})`,
        `${n1(r.agentWriteMeanMs)}, ${r.agentWriteFailures}${r.agentWriteFailures ? ` (${Object.entries(r.agentWriteFailureKinds).map(([k, v]) => `${v}× ${k}`).join(", ")})` : ""}`,
        Object.entries(r.agentWritePhases)
          .map(([phase, count]) => `${phase} ${count}`)
          .join(", "),
      ]),
    );
  }
  return lines.join("\n");
}

export function seeded(results: readonly SeedResult[]): string {
  const lines = [
    row([
      "nodes × patches (seeded)",
      "patch KiB (managedFields; one manager per node)",
      "operator start → all Ready (s)",
      "operator RSS MiB: steady / churn max / peak / after (goal ≤ 150)",
      "operator V8 heap used / total, external MiB: steady → after",
      "operator CPU s in churn, idle %",
      "agent process RSS MiB idle / peak, CPU s in churn",
      "churn: writes, s, apiserver CPU s per write",
      "KLP watch events (GB)",
      "reconciles: patch / daemonset",
    ]),
    row(["---", "---", "---:", "---", "---", "---", "---", "---", "---", "---"]),
  ];
  for (const r of results) {
    lines.push(
      row([
        label(r),
        `${n1(r.objectBytes / 1024)} (${n1(r.managedFieldsBytes / 1024)}; ${r.managersPerNode ? "yes" : "no"})`,
        s(r.operatorStartMs),
        [r.operator.steadyMiB, r.operator.churnMaxMiB, r.operator.peakMiB, r.operator.afterMiB].map(n1).join(" / "),
        [r.operatorHeap.steady, r.operatorHeap.after].map((h) => `${n1(h.heapUsedMiB)} / ${n1(h.heapTotalMiB)}, ${n1(h.externalMiB)}`).join(" → "),
        `${n1(r.operator.churnCpu)}, ${n2(r.operator.idleCpuPct)}`,
        `${n1(r.agentProcess.idleMiB)} / ${n1(r.agentProcess.peakMiB)}, ${n1(r.agentProcess.churnCpu)}`,
        `${r.churn.writes} (+${r.churn.operatorWrites} operator)${r.churn.failures ? `, ${r.churn.failures} failed attempts (${Object.entries(r.churn.failureKinds).map(([k, v]) => `${v}× ${k}`).join(", ")})${r.churn.givenUp ? `, ${r.churn.givenUp} given up` : ""}` : ""}, ${s(r.churn.ms)}, ${n2(r.churn.apiserverCpu / (r.churn.writes + r.churn.operatorWrites))}`,
        `${r.churn.watchEvents} (${n2(r.churn.watchBytes / 1e9)})`,
        `${r.reconciles.get("kernellivepatch") ?? 0} / ${r.reconciles.get("agent-daemonset") ?? 0}`,
      ]),
    );
  }
  return lines.join("\n");
}

/** JSON-friendly copy (Maps as objects). */
export function toJson(r: RunResult | SeedResult): unknown {
  return {
    ...r,
    ...("api" in r ? { api: { ...r.api, byVerb: Object.fromEntries(r.api.byVerb) } } : {}),
    reconciles: Object.fromEntries(r.reconciles),
  };
}
