/** The operator's Prometheus metrics, named as controller-runtime names them where they overlap. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export function operatorMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const labelNames = ["controller"] as const;
  return {
    registry,
    reconcileTotal: new Counter({ name: "controller_runtime_reconcile_total", help: "Total reconciliations per controller and result", labelNames: ["controller", "result"], registers: [registry] }),
    reconcileErrors: new Counter({ name: "controller_runtime_reconcile_errors_total", help: "Total reconciliation errors per controller", labelNames, registers: [registry] }),
    reconcileTime: new Histogram({ name: "controller_runtime_reconcile_time_seconds", help: "Length of time per reconciliation per controller", labelNames, registers: [registry], buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] }),
    workqueueDepth: new Gauge({ name: "workqueue_depth", help: "Current depth of workqueue", labelNames: ["name"], registers: [registry] }),
    leader: new Gauge({ name: "leader_election_master_status", help: "1 while this process holds the leader lease", labelNames: ["name"], registers: [registry] }),
    nodesByPhase: new Gauge({ name: "kpatch_patch_nodes", help: "Nodes per phase per KernelLivePatch", labelNames: ["patch", "phase"], registers: [registry] }),
    rolloutHalted: new Gauge({ name: "kpatch_rollout_halted", help: "1 when a KernelLivePatch rollout halted at its failure threshold", labelNames: ["patch"], registers: [registry] }),
    stalled: new Gauge({ name: "kpatch_transitions_stalled", help: "Nodes whose transition stalled, per KernelLivePatch", labelNames: ["patch"], registers: [registry] }),
  };
}

export type OperatorMetrics = ReturnType<typeof operatorMetrics>;
