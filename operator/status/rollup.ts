import { GROUP, type KernelLivePatchSpec, type NodeEntry, type NodePhase, type Summary } from "../../crds/schema.ts";
import { CLEAN_PHASES, DONE_PHASES, FAILED_PHASES, UNLOADED_PHASES } from "../../crds/phases.ts";
import { cveLine, patchCveCounts } from "../../crds/cve-posture.ts";
import { DEFAULT_PROGRESS_DEADLINE_SECONDS, isCurrent, type DerivedFailure, type NodeReadiness } from "../rollout/settled.ts";
import type { ConditionInput } from "./conditions.ts";

export interface RollupInput {
  readonly generation: number;
  readonly spec: Pick<KernelLivePatchSpec, "state" | "rollout" | "cves">;
  readonly targeted: ReadonlySet<string>;
  readonly entries: readonly NodeEntry[];
  readonly halted: boolean;
  readonly deleting: boolean;
  /** Failures the admission decided (admit's `derived`): they count as failed, not as done. */
  readonly derived?: ReadonlyMap<string, DerivedFailure>;
  /** Being deleted with the unload-immediately annotation: unloads are not paced, nor paused. */
  readonly unloadImmediately?: boolean;
}

export interface Rollup {
  readonly summary: Summary;
  readonly conditions: ConditionInput[];
}

const count = (entries: readonly NodeEntry[], phases: readonly NodePhase[]): number =>
  entries.filter((e) => phases.includes(e.phase)).length;

/** At most this many nodes are named in a condition message or an event. */
export const NAMED_NODES = 5;

/** "a, b, c" or "a, b, c, d, e and 7 more": a bounded list of names. */
export function nameSome(names: readonly string[], max = NAMED_NODES): string {
  const shown = names.slice(0, max).join(", ");
  return names.length > max ? `${shown} and ${names.length - max} more` : shown;
}

/** Rolls the per-node entries of targeted nodes up into the summary and the three conditions. */
export function rollup(input: RollupInput): Rollup {
  const { generation, spec, targeted, halted } = input;
  const derived = new Map([...(input.derived ?? [])].filter(([node]) => targeted.has(node)));
  const entries = input.entries.filter((e) => targeted.has(e.nodeName));
  const current = entries.filter((e) => isCurrent(e, generation));
  // A node that failed the health gate is Loaded, but not done.
  const settled = current.filter((e) => !derived.has(e.nodeName));

  const notApplicable = count(current, ["NotApplicable"]);
  const agentFailed = current.filter((e) => FAILED_PHASES.includes(e.phase));
  const failed = agentFailed.length + derived.size;
  const done = count(settled, DONE_PHASES[spec.state]);
  const applicable = targeted.size - notApplicable;
  const summary: Summary = {
    ready: `${done}/${applicable}`,
    targeted: targeted.size,
    staged: count(entries, ["Staged"]),
    loaded: count(entries, ["Loaded"]),
    replaced: count(entries, ["Replaced"]),
    unloaded: count(entries, ["Unloaded"]),
    notApplicable,
    failed,
    pending: targeted.size - done - notApplicable - failed,
    ...cveSummary(spec.cves, targeted, entries),
  };

  const c = (type: string, status: boolean, reason: string, message: string): ConditionInput => ({
    type,
    status: status ? "True" : "False",
    reason,
    message,
    observedGeneration: generation,
  });

  // A deletion unloads at the pace of the rollout, so spec.rollout.paused holds it (not the annotation).
  const deletionPaused = input.deleting && spec.rollout.paused && !input.unloadImmediately;
  const ready = readyCondition();
  function readyCondition(): ConditionInput {
    if (input.deleting)
      return c(
        "Ready",
        false,
        "Deleting",
        deletionPaused
          ? "Unloading from every node before the patch is removed; paused (spec.rollout.paused): no further node is admitted to unload"
          : "Unloading from every node before the patch is removed",
      );
    if (targeted.size === 0) return c("Ready", false, "NoTargetedNodes", "No Node matches spec.nodeSelector");
    if (applicable === 0)
      return c("Ready", true, "NotApplicable", `None of the ${targeted.size} targeted nodes runs a kernel release listed in spec.modules`);
    if (done === applicable) return c("Ready", true, spec.state, `${done}/${applicable} nodes ${spec.state.toLowerCase()}`);
    if (halted) return c("Ready", false, "RolloutHalted", `${failed} nodes failed (failureThreshold ${spec.rollout.failureThreshold}); see status.nodes for reasons`);
    if (spec.rollout.paused) return c("Ready", false, "Paused", `${done}/${applicable} nodes ${spec.state.toLowerCase()}; rollout paused`);
    return c("Ready", false, "RolloutInProgress", `${done}/${applicable} nodes ${spec.state.toLowerCase()}`);
  }

  const overdue = [...derived].filter(([, f]) => f.reason === "ProgressDeadlineExceeded").map(([node]) => node).sort();
  const deadline = spec.rollout.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS;
  const progressing =
    ready.status === "True"
      ? c("Progressing", false, "Complete", ready.message)
      : input.deleting
        ? c("Progressing", !deletionPaused, deletionPaused ? "Paused" : "Deleting", ready.message)
        : overdue.length > 0
          ? c(
              "Progressing",
              false,
              "ProgressDeadlineExceeded",
              `${nameSome(overdue)} made no progress within spec.rollout.progressDeadlineSeconds (${deadline} s)${halted ? "; rollout halted" : ""}`,
            )
        : halted
          ? c("Progressing", false, "RolloutHalted", ready.message)
          : spec.rollout.paused
            ? c("Progressing", false, "Paused", ready.message)
            : targeted.size === 0
              ? c("Progressing", false, "NoTargetedNodes", ready.message)
              : c("Progressing", true, "RolloutInProgress", ready.message);

  const failedNodes = [
    ...agentFailed.map((e) => ({ node: e.nodeName, reason: e.reason ?? e.phase })),
    ...[...derived].map(([node, f]) => ({ node, reason: f.reason })),
  ].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const degraded =
    failedNodes.length === 0
      ? c("Degraded", false, "AsExpected", "No node failed")
      : c(
          "Degraded",
          true,
          halted ? "RolloutHalted" : "NodesFailed",
          failedNodes
            .slice(0, NAMED_NODES)
            .map((f) => `${f.node}: ${f.reason}`)
            .join("; ") + (failedNodes.length > NAMED_NODES ? `; and ${failedNodes.length - NAMED_NODES} more` : ""),
        );
  return { summary, conditions: [ready, progressing, degraded] };
}

/** The CVE posture of the patch's targeted nodes (crds/cve-posture.ts), when spec.cves lists any. */
function cveSummary(cves: readonly string[] | undefined, targeted: ReadonlySet<string>, entries: readonly NodeEntry[]): Pick<Summary, "cves" | "cveExposure"> {
  if (!cves || cves.length === 0) return {};
  const counts = patchCveCounts({ cves, targeted, phases: new Map(entries.map((e) => [e.nodeName, e.phase])) });
  return { cves: counts, cveExposure: cveLine(counts) };
}

/** Entries the controller removes: nodes that are gone, or no longer targeted and already clean. */
export function staleEntries(entries: readonly NodeEntry[], existing: ReadonlySet<string>, targeted: ReadonlySet<string>): string[] {
  return entries
    .filter((e) => !existing.has(e.nodeName) || (!targeted.has(e.nodeName) && CLEAN_PHASES.includes(e.phase)))
    .map((e) => e.nodeName);
}

/** The annotation that lets a deleted patch go without waiting for any node to unload it. */
export const FORCE_DELETE_ANNOTATION = `${GROUP}/force-delete`;

export interface UnloadInput {
  readonly entries: readonly NodeEntry[];
  /** Every Node that exists, with its readiness. */
  readonly nodes: ReadonlyMap<string, NodeReadiness>;
  readonly now: Date;
  /** A node NotReady for longer than this is no longer waited for (the operator's KLP_NOT_READY_GRACE_SECONDS). */
  readonly graceSeconds: number;
  /** The patch carries FORCE_DELETE_ANNOTATION "true": wait for no node. */
  readonly force: boolean;
}

export type UndoneWhy = "NodeGone" | "NodeNotReady" | "Forced";

export interface UnloadDecision {
  /** The finalizer may go. */
  readonly done: boolean;
  /** Nodes still to report Unloaded. */
  readonly waitingFor: string[];
  /** Nodes not waited for although they never reported Unloaded: the module may still be there. */
  readonly leftUndone: Array<{ readonly node: string; readonly why: UndoneWhy }>;
  /** When a node waited for passes the grace period (undefined: none is NotReady). */
  readonly requeueAfterMs: number | undefined;
}

/**
 * Whether a deleted patch's finalizer may go: when every node with an entry reports it clean —
 * except nodes whose agent may never run again: a Node that is gone, or NotReady for longer than
 * the grace period; and none at all with the force-delete annotation. Those are left undone: the
 * operator stops projecting the patch (it is gone), and the node's agent, when it runs again,
 * unloads what it holds of a patch no longer projected to it.
 */
export function unloadComplete(input: UnloadInput): UnloadDecision {
  const { nodes, now, graceSeconds, force } = input;
  const waitingFor: string[] = [];
  const leftUndone: Array<{ node: string; why: UndoneWhy }> = [];
  let requeueAfterMs: number | undefined;
  for (const e of input.entries) {
    if (UNLOADED_PHASES.includes(e.phase)) continue;
    const node = nodes.get(e.nodeName);
    if (node === undefined) leftUndone.push({ node: e.nodeName, why: "NodeGone" });
    else if (force) leftUndone.push({ node: e.nodeName, why: "Forced" });
    else {
      const left = notReadyGraceRemainingMs(node, graceSeconds, now);
      if (left !== undefined && left <= 0) leftUndone.push({ node: e.nodeName, why: "NodeNotReady" });
      else {
        waitingFor.push(e.nodeName);
        if (left !== undefined) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, left);
      }
    }
  }
  return { done: waitingFor.length === 0, waitingFor, leftUndone, requeueAfterMs };
}

/** For a NotReady node: milliseconds until it has been NotReady for the grace period (undefined: Ready, or since unknown). */
function notReadyGraceRemainingMs(node: NodeReadiness, graceSeconds: number, now: Date): number | undefined {
  if (node.ready || node.since === undefined) return undefined;
  const since = Date.parse(node.since);
  return Number.isFinite(since) ? since + graceSeconds * 1000 - now.getTime() : undefined;
}
