/**
 * What the agent's per-patch metrics show for its node: each patch's phase on this node (its
 * entry), and, where the patch wants its module live here, whether the kernel has it. Together with
 * the kernel's taint letters they answer "is this node tainted K without the patch's module live?"
 * (the chart's alert rules). Pure: from the pass's views and its host read.
 */
import type { NodePhase } from "../../crds/schema.ts";
import type { PatchView } from "./plan.ts";

export interface PatchFacts {
  readonly patch: string;
  /** This node's entry for the patch as last written; Pending before the first. */
  readonly phase: NodePhase;
  /**
   * Where the patch wants its module live on this node (state Loaded, a module for this kernel,
   * the rollout admitted the node): the module and whether its fix is in the kernel. Absent
   * otherwise, so that a node still waiting for its turn is not counted as missing the module.
   */
  readonly wanted?: { readonly module: string; readonly live: boolean };
}

type Livepatch = { readonly name: string; readonly enabled: boolean };

export function patchFacts(views: readonly PatchView[], livepatches: readonly Livepatch[]): PatchFacts[] {
  return views.map((v) => {
    const phase = v.entry?.phase ?? "Pending";
    if (v.want.kind !== "loaded" || !v.admitted) return { patch: v.name, phase };
    const module = v.want.module.name;
    // Replaced: a cumulative patch replaced the module live and carries its fix (crds/cve-posture.ts).
    const live = phase === "Replaced" || livepatches.some((lp) => lp.name === module && lp.enabled);
    return { patch: v.name, phase, wanted: { module, live } };
  });
}
