import type { KernelLivePatchSpec, NodeEntry, NodePhase, Summary } from "../../crds/schema.ts";
import { DONE_PHASES, FAILED_PHASES, isCurrent } from "../rollout/settled.ts";
import type { ConditionInput } from "./conditions.ts";

export interface RollupInput {
  readonly generation: number;
  readonly spec: Pick<KernelLivePatchSpec, "state" | "rollout">;
  readonly targeted: ReadonlySet<string>;
  readonly entries: readonly NodeEntry[];
  readonly halted: boolean;
  readonly deleting: boolean;
}

export interface Rollup {
  readonly summary: Summary;
  readonly conditions: ConditionInput[];
}

const count = (entries: readonly NodeEntry[], phases: readonly NodePhase[]): number =>
  entries.filter((e) => phases.includes(e.phase)).length;

/** Rolls the per-node entries of targeted nodes up into the summary and the three conditions. */
export function rollup(input: RollupInput): Rollup {
  const { generation, spec, targeted, halted } = input;
  const entries = input.entries.filter((e) => targeted.has(e.nodeName));
  const current = entries.filter((e) => isCurrent(e, generation));

  const notApplicable = count(current, ["NotApplicable"]);
  const failed = count(current, FAILED_PHASES);
  const done = count(current, DONE_PHASES[spec.state]);
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
  };

  const c = (type: string, status: boolean, reason: string, message: string): ConditionInput => ({
    type,
    status: status ? "True" : "False",
    reason,
    message,
    observedGeneration: generation,
  });

  const ready = readyCondition();
  function readyCondition(): ConditionInput {
    if (input.deleting) return c("Ready", false, "Deleting", "Unloading from every node before the patch is removed");
    if (targeted.size === 0) return c("Ready", false, "NoTargetedNodes", "No Node matches spec.nodeSelector");
    if (applicable === 0)
      return c("Ready", true, "NotApplicable", `None of the ${targeted.size} targeted nodes runs a kernel release listed in spec.modules`);
    if (done === applicable) return c("Ready", true, spec.state, `${done}/${applicable} nodes ${spec.state.toLowerCase()}`);
    if (halted) return c("Ready", false, "RolloutHalted", `${failed} nodes failed (failureThreshold ${spec.rollout.failureThreshold}); see status.nodes for reasons`);
    if (spec.rollout.paused) return c("Ready", false, "Paused", `${done}/${applicable} nodes ${spec.state.toLowerCase()}; rollout paused`);
    return c("Ready", false, "RolloutInProgress", `${done}/${applicable} nodes ${spec.state.toLowerCase()}`);
  }

  const progressing =
    ready.status === "True"
      ? c("Progressing", false, "Complete", ready.message)
      : input.deleting
        ? c("Progressing", true, "Deleting", ready.message)
        : halted
          ? c("Progressing", false, "RolloutHalted", ready.message)
          : spec.rollout.paused
            ? c("Progressing", false, "Paused", ready.message)
            : targeted.size === 0
              ? c("Progressing", false, "NoTargetedNodes", ready.message)
              : c("Progressing", true, "RolloutInProgress", ready.message);

  const failedNodes = current.filter((e) => FAILED_PHASES.includes(e.phase));
  const degraded =
    failedNodes.length === 0
      ? c("Degraded", false, "AsExpected", "No node failed")
      : c(
          "Degraded",
          true,
          halted ? "RolloutHalted" : "NodesFailed",
          failedNodes
            .slice(0, 5)
            .map((e) => `${e.nodeName}: ${e.reason ?? e.phase}`)
            .join("; ") + (failedNodes.length > 5 ? `; and ${failedNodes.length - 5} more` : ""),
        );
  return { summary, conditions: [ready, progressing, degraded] };
}

/** Entries the controller removes: nodes that are gone, or no longer targeted and already clean. */
export function staleEntries(entries: readonly NodeEntry[], existing: ReadonlySet<string>, targeted: ReadonlySet<string>): string[] {
  const clean: readonly NodePhase[] = ["Unloaded", "NotApplicable", "Pending"];
  return entries
    .filter((e) => !existing.has(e.nodeName) || (!targeted.has(e.nodeName) && clean.includes(e.phase)))
    .map((e) => e.nodeName);
}

/** The finalizer may go when every existing node that has an entry reports it clean. */
export function unloadComplete(entries: readonly NodeEntry[], existing: ReadonlySet<string>): { done: boolean; waitingFor: string[] } {
  const waitingFor = entries
    .filter((e) => existing.has(e.nodeName) && e.phase !== "Unloaded" && e.phase !== "NotApplicable")
    .map((e) => e.nodeName);
  return { done: waitingFor.length === 0, waitingFor };
}
