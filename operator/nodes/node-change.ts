/**
 * Which Node events the operator reacts to. A Node matters to the patches through its existence,
 * its uid (the owner of its KernelLivePatchNode) and whether each patch's selectors (with the
 * operator's global selector) target it; everything else a Node event brings (a new
 * resourceVersion for a status the metadata watch does not even carry, an annotation, a label no
 * selector reads) changes no decision and enqueues nothing. Readiness is not among these: it is
 * read on demand for the few nodes that need it (see rollout/readiness-wanted.ts).
 */
import type { KernelLivePatch } from "../../crds/schema.ts";
import { targets } from "./projection.ts";

export interface NodeMeta {
  readonly uid?: string | undefined;
  readonly labels?: Readonly<Record<string, string>> | undefined;
}

/**
 * Whether a Node event can change what the patches decide: an add or a delete always; an update
 * when the uid changed (the Node was replaced under the same name) or some patch targets the node
 * before and not after, or after and not before.
 */
export function nodeChangeMatters(
  before: NodeMeta | undefined,
  after: NodeMeta | undefined,
  patches: readonly KernelLivePatch[],
  globalSelector: Readonly<Record<string, string>>,
): boolean {
  if (!before || !after) return true;
  if (before.uid !== after.uid) return true;
  const was = before.labels ?? {};
  const is = after.labels ?? {};
  if (sameLabels(was, is)) return false;
  return patches.some((p) => targets(p, was, globalSelector) !== targets(p, is, globalSelector));
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => b[k] === a[k]);
}
