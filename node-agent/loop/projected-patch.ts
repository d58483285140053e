/**
 * What the agent reads about one patch: the operator's projection of it onto this node's
 * KernelLivePatchNode (spec.patches[]), this node's entry for it from the same object's status, and
 * the object's resourceVersion. Typed and checked by the KernelLivePatchNode schema (crds/schema.ts).
 */
import { z } from "zod";
import { NodeEntry, PatchOnNode } from "../../crds/schema.ts";

export const ProjectedPatch = z
  .object({
    patch: PatchOnNode,
    /** This node's entry for the patch, as the node object's status holds it (none yet: absent). */
    entry: NodeEntry.optional(),
    /** The node object's resourceVersion in this delivery: opaque, compared only for equality. */
    resourceVersion: z.string().optional(),
  })
  .strict();

/** `entry` is replaced by the agent's own write as soon as it makes one (read-your-writes). */
export type ProjectedPatch = z.output<typeof ProjectedPatch>;

/** One patch, not another of the same name created after it was deleted: its uid. */
export function patchKey(p: PatchOnNode): string {
  return p.uid || p.name;
}
