/**
 * The write commands as decisions (pure): the merge patch to send to the KernelLivePatch, if any,
 * and what to tell the admin. The spec has no per-node retry and no pause of its own beside the
 * rollout's: `retry` sets spec.retry (every Failed or Stalled node of the patch tries again), and
 * `pause`/`resume` set spec.rollout.paused.
 */
import type { KernelLivePatch } from "../crds/schema.ts";
import { failedNodes, type PatchOnFleet } from "./fleet-view.ts";

export type Decision =
  | { readonly ok: true; readonly patchBody?: Record<string, unknown>; readonly message: string }
  | { readonly ok: false; readonly message: string };

const names = (xs: readonly string[]): string => (xs.length === 0 ? "none" : xs.join(", "));

export function decideRetry(patch: KernelLivePatch, fleet: PatchOnFleet, now: Date, node?: string): Decision {
  const name = patch.metadata.name;
  const failed = failedNodes(fleet);
  if (node !== undefined && !failed.includes(node)) {
    const here = fleet.nodes.get(node);
    const why = !fleet.nodes.has(node) ? "the patch does not concern it" : `it is ${here?.phase ?? "Pending"}`;
    return { ok: false, message: `${node} is not Failed or Stalled for ${name} (${why}): nothing to retry there` };
  }
  // A new value is a new spec; the time makes one per call (the field holds any 63 characters).
  const value = now.toISOString();
  const scope =
    node === undefined
      ? `the nodes where it failed or stalled try again: ${names(failed)}`
      : `spec.retry has no node of its own: every node where it failed or stalled tries again: ${names(failed)}`;
  return {
    ok: true,
    patchBody: { spec: { retry: value } },
    message: `kernellivepatch/${name} retry requested (spec.retry=${value}); ${scope}; at the pace of spec.rollout.maxUnavailable\n`,
  };
}

export function decidePause(patch: KernelLivePatch, paused: boolean): Decision {
  const name = patch.metadata.name;
  if (patch.spec.rollout.paused === paused) return { ok: true, message: `kernellivepatch/${name} already ${paused ? "paused" : "running"} (spec.rollout.paused=${paused})\n` };
  const what = paused ? "paused: no new node is admitted to change; nodes already changing finish" : "resumed: nodes are admitted again at the pace of spec.rollout.maxUnavailable";
  return { ok: true, patchBody: { spec: { rollout: { paused } } }, message: `kernellivepatch/${name} ${what} (spec.rollout.paused=${paused})\n` };
}
