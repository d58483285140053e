/**
 * The operator's Prometheus metrics: controller-runtime's names for reconciles, the work queue
 * and leader election (so existing dashboards and alerts apply), and the domain gauges an admin
 * alerts on, per KernelLivePatch.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { CveCount, CvePosture } from "../crds/cve-posture.ts";
import { NodePhase } from "../crds/schema.ts";
import type { QueueSample } from "./controller/work-queue.ts";
import type { PatchGauges } from "./status/patch-gauges.ts";

export const PHASES = NodePhase.options;

/** controller-runtime's buckets for reconcile and work-queue durations. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 25, 30, 40, 50, 60];
const QUEUE_BUCKETS = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000];

/** The label values of state of the CVE series, from status.summary.cves's fields. */
const CVE_STATES = { fixed: "fixed", exposed: "exposed", notApplicable: "not_applicable" } as const satisfies Record<Exclude<keyof CveCount, "id">, string>;

export function operatorMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const r = [registry];
  const controller = ["controller"] as const;
  const queue = ["name", "controller"] as const;
  const patch = ["patch"] as const;
  /** The CVEs each patch's CVE series were last set for, so that a CVE dropped from spec.cves loses its series. */
  const cvesOf = new Map<string, readonly string[]>();
  /** Figures read when scraped (the controller plugs its work queue in). */
  const samplers: {
    queue?: { labels: { name: string; controller: string }; sample: () => QueueSample };
    /** Each CVE across every patch that lists it (crds/cve-posture.ts fleetCvePosture). */
    cves?: () => readonly CvePosture[];
  } = {};
  return {
    registry,
    samplers,
    cvesOf,
    reconcileTotal: new Counter({ name: "controller_runtime_reconcile_total", help: "Total number of reconciliations per controller", labelNames: ["controller", "result"], registers: r }),
    reconcileErrors: new Counter({ name: "controller_runtime_reconcile_errors_total", help: "Total number of reconciliation errors per controller", labelNames: controller, registers: r }),
    reconcileTime: new Histogram({ name: "controller_runtime_reconcile_time_seconds", help: "Length of time per reconciliation per controller", labelNames: controller, buckets: DURATION_BUCKETS, registers: r }),
    maxConcurrentReconciles: new Gauge({ name: "controller_runtime_max_concurrent_reconciles", help: "Maximum number of concurrent reconciles per controller", labelNames: controller, registers: r }),
    activeWorkers: new Gauge({ name: "controller_runtime_active_workers", help: "Number of currently used workers per controller", labelNames: controller, registers: r }),
    workqueueDepth: new Gauge({ name: "workqueue_depth", help: "Current depth of workqueue", labelNames: queue, registers: r }),
    workqueueAdds: new Counter({ name: "workqueue_adds_total", help: "Total number of adds handled by workqueue", labelNames: queue, registers: r }),
    workqueueRetries: new Counter({ name: "workqueue_retries_total", help: "Total number of retries handled by workqueue", labelNames: queue, registers: r }),
    workqueueQueueDuration: new Histogram({ name: "workqueue_queue_duration_seconds", help: "How long in seconds an item stays in workqueue before being requested", labelNames: queue, buckets: QUEUE_BUCKETS, registers: r }),
    workqueueWorkDuration: new Histogram({ name: "workqueue_work_duration_seconds", help: "How long in seconds processing an item from workqueue takes", labelNames: queue, buckets: QUEUE_BUCKETS, registers: r }),
    workqueueUnfinishedWork: new Gauge({
      name: "workqueue_unfinished_work_seconds",
      help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration",
      labelNames: queue,
      registers: r,
      collect() {
        if (samplers.queue) this.set(samplers.queue.labels, samplers.queue.sample().unfinishedSeconds);
      },
    }),
    workqueueLongestRunning: new Gauge({
      name: "workqueue_longest_running_processor_seconds",
      help: "How many seconds has the longest running processor for workqueue been running",
      labelNames: queue,
      registers: r,
      collect() {
        if (samplers.queue) this.set(samplers.queue.labels, samplers.queue.sample().longestRunningSeconds);
      },
    }),
    leader: new Gauge({ name: "leader_election_master_status", help: "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master", labelNames: ["name"], registers: r }),
    informerRelists: new Counter({ name: "kpatch_operator_informer_relists_total", help: "Fresh lists of a watched collection, by resource and cause (error, expired, periodic, stale)", labelNames: ["resource", "cause"], registers: r }),
    nodeEvents: new Counter({
      name: "kpatch_operator_node_events_total",
      help: "Node events of the metadata-only watch, by verb and outcome (enqueued: a Node added or deleted, or a change of targeting; readiness: a Node whose readiness a patch reads changed; ignored: nothing any patch reads)",
      labelNames: ["verb", "outcome"],
      registers: r,
    }),
    nodeReads: new Counter({ name: "kpatch_operator_node_reads_total", help: "GETs of whole Nodes for their Ready condition (the nodes in their soak, the nodes a deleted patch waits for)", registers: r }),
    nodesByPhase: new Gauge({ name: "kpatch_patch_nodes", help: "Targeted nodes per phase per KernelLivePatch (a node without an entry yet counts as Pending)", labelNames: ["patch", "phase"], registers: r }),
    targeted: new Gauge({ name: "kpatch_patch_targeted_nodes", help: "Nodes a KernelLivePatch targets", labelNames: patch, registers: r }),
    ready: new Gauge({ name: "kpatch_patch_ready", help: "1 while a KernelLivePatch's Ready condition is True", labelNames: patch, registers: r }),
    rolloutHalted: new Gauge({ name: "kpatch_rollout_halted", help: "1 when a KernelLivePatch rollout halted at its failure threshold", labelNames: patch, registers: r }),
    stalled: new Gauge({ name: "kpatch_transitions_stalled", help: "Nodes whose transition stalled and was reversed, per KernelLivePatch", labelNames: patch, registers: r }),
    // Per CVE, never per node: one series per CVE any patch lists and state.
    fleetCveNodes: new Gauge({
      name: "kpatch_cve_nodes",
      help: "Per CVE any KernelLivePatch lists: nodes where a patch listing it is live (fixed), else targeted by one with a module for their kernel (exposed), else targeted only by patches without one (not_applicable); each node counted once",
      labelNames: ["cve", "state"],
      registers: r,
      collect() {
        if (!samplers.cves) return;
        this.reset();
        for (const c of samplers.cves()) {
          this.set({ cve: c.id, state: CVE_STATES.fixed }, c.fixed.length);
          this.set({ cve: c.id, state: CVE_STATES.exposed }, c.exposed.length);
          this.set({ cve: c.id, state: CVE_STATES.notApplicable }, c.notApplicable.length);
        }
      },
    }),
    // Per patch and CVE, never per node: at most 64 CVEs (spec.cves) x 3 states per patch.
    cveNodes: new Gauge({
      name: "kpatch_patch_cve_nodes",
      help: "Per KernelLivePatch and CVE of its spec.cves: targeted nodes where the fix is live (fixed), not live (exposed), or no module is for their kernel (not_applicable)",
      labelNames: ["patch", "cve", "state"],
      registers: r,
    }),
  };
}

export type OperatorMetrics = ReturnType<typeof operatorMetrics>;

/** Sets a patch's domain gauges to what its status says now. */
export function setPatchGauges(m: OperatorMetrics, name: string, g: PatchGauges): void {
  for (const phase of PHASES) m.nodesByPhase.set({ patch: name, phase }, g.byPhase[phase]);
  m.targeted.set({ patch: name }, g.targeted);
  m.ready.set({ patch: name }, g.ready ? 1 : 0);
  m.rolloutHalted.set({ patch: name }, g.halted ? 1 : 0);
  m.stalled.set({ patch: name }, g.byPhase.Stalled);
  setCveGauges(m, name, g.cves);
}

function setCveGauges(m: OperatorMetrics, patch: string, cves: readonly CveCount[]): void {
  const now = new Set(cves.map((c) => c.id));
  for (const cve of m.cvesOf.get(patch) ?? []) if (!now.has(cve)) removeCve(m, patch, cve);
  for (const c of cves) for (const [field, state] of Object.entries(CVE_STATES)) m.cveNodes.set({ patch, cve: c.id, state }, c[field as keyof typeof CVE_STATES]);
  if (cves.length > 0) m.cvesOf.set(patch, [...now]);
  else m.cvesOf.delete(patch);
}

function removeCve(m: OperatorMetrics, patch: string, cve: string): void {
  for (const state of Object.values(CVE_STATES)) m.cveNodes.remove({ patch, cve, state });
}

/** Drops a deleted patch's series (a gauge left behind would alert forever). */
export function removePatchGauges(m: OperatorMetrics, name: string): void {
  for (const phase of PHASES) m.nodesByPhase.remove({ patch: name, phase });
  for (const g of [m.targeted, m.ready, m.rolloutHalted, m.stalled]) g.remove({ patch: name });
  setCveGauges(m, name, []);
}
