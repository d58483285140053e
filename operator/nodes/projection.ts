/**
 * What the operator writes onto a node's KernelLivePatchNode: the patches that concern the node,
 * each with its spec and whether the rollout has admitted the node. Pure; the controller writes it.
 */
import { selectorMatches } from "../../crds/label-selector.ts";
import type { KernelLivePatch, NodeEntry, PatchOnNode } from "../../crds/schema.ts";
import { CLEAN_PHASES } from "../../crds/phases.ts";

/** Whether the patch targets a node with these labels (its nodeSelector and the agents' global one). */
export function targets(patch: KernelLivePatch, labels: Readonly<Record<string, string>>, globalSelector: Readonly<Record<string, string>>): boolean {
  return selectorMatches(patch.spec.nodeSelector, labels) && selectorMatches({ matchLabels: { ...globalSelector } }, labels);
}

export interface NodeProjectionInput {
  readonly nodeName: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly globalSelector: Readonly<Record<string, string>>;
  readonly patches: readonly KernelLivePatch[];
  /** What the node's agent has written for this patch (not an entry left by an earlier patch of the same name). */
  readonly entryOf: (patch: KernelLivePatch) => Pick<NodeEntry, "phase"> | undefined;
  /**
   * Whether the rollout admits this node for the patch's current generation: the operator's
   * decision (see Controller.admissionOf); undefined while none is decided for that generation.
   */
  readonly admitted: (patch: KernelLivePatch) => boolean | undefined;
}

/**
 * A patch concerns a node while it targets the node, and after that while the node still holds
 * something of it (the agent must unload and uninstall it first). A new patch is projected only
 * once its rollout has been decided for its generation: projecting it unadmitted first would write
 * every node's object twice at the start of a rollout, the first time for nothing. Sorted by name:
 * the same input gives the same object, so an unchanged projection is never written again.
 */
export function projectNode(input: NodeProjectionInput): PatchOnNode[] {
  const { labels, globalSelector } = input;
  return input.patches
    .filter((p) => {
      const entry = input.entryOf(p);
      if (entry === undefined && input.admitted(p) === undefined) return false;
      if (targets(p, labels, globalSelector)) return true;
      return entry !== undefined && !CLEAN_PHASES.includes(entry.phase);
    })
    .map((p): PatchOnNode => {
      const generation = p.metadata.generation ?? 0;
      return {
        name: p.metadata.name,
        uid: p.metadata.uid ?? "",
        generation,
        creationTimestamp: p.metadata.creationTimestamp ?? "",
        ...(p.metadata.deletionTimestamp ? { deletionTimestamp: p.metadata.deletionTimestamp } : {}),
        admitted: input.admitted(p) === true,
        spec: p.spec,
      };
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
