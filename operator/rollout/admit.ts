import type { KernelLivePatchSpec, NodeEntry, RolloutStatus } from "../../crds/schema.ts";
import { isCurrent, isDone, isFailed, soakRemainingMs } from "./settled.ts";

/**
 * Pacing: which nodes may change now. The controller writes the result to `status.rollout`; an
 * agent loads only when its node is in `admitted` for the patch's current generation. Admission
 * is monotonic within a generation (a node once admitted stays admitted), so an agent never sees
 * its permission withdrawn in the middle of a load. Unloading (state Unloaded, deletion) is not
 * paced: backing a patch out should be fast.
 */
export interface AdmitInput {
  readonly generation: number;
  readonly spec: Pick<KernelLivePatchSpec, "state" | "rollout">;
  /** Names of the nodes the patch targets, in any order. */
  readonly targeted: readonly string[];
  readonly entries: ReadonlyMap<string, NodeEntry>;
  readonly previous: RolloutStatus | undefined;
  readonly now: Date;
}

export interface AdmitResult {
  readonly rollout: RolloutStatus;
  /** Nodes newly admitted by this decision. */
  readonly newlyAdmitted: readonly string[];
  readonly failed: number;
  /** When to look again because a soak ends (undefined: nothing time-based pending). */
  readonly requeueAfterMs: number | undefined;
}

export function resolveMaxUnavailable(value: number | string, targeted: number): number {
  if (typeof value === "number") return Math.max(1, value);
  const percent = Number.parseInt(value, 10);
  return Math.max(1, Math.floor((percent * targeted) / 100));
}

export function admit(input: AdmitInput): AdmitResult {
  const { generation, spec, entries, now } = input;
  const targeted = [...input.targeted].sort();
  const kept = input.previous?.generation === generation ? input.previous.admitted : [];
  const isTargeted = new Set(targeted);
  const admitted = new Set(kept.filter((n) => isTargeted.has(n)));

  const failed = targeted.filter((n) => isFailed(entries.get(n), generation)).length;
  const halted = failed >= spec.rollout.failureThreshold;

  let requeueAfterMs: number | undefined;
  const occupiesSlot = (node: string): boolean => {
    const entry = entries.get(node);
    if (isFailed(entry, generation)) return false;
    if (!isDone(entry, spec.state, generation)) return true;
    const remaining = isCurrent(entry, generation) ? soakRemainingMs(entry, spec.rollout.soakSeconds, now) : 0;
    if (remaining > 0) requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, remaining);
    return remaining > 0;
  };
  let busy = [...admitted].filter(occupiesSlot).length;

  const newlyAdmitted: string[] = [];
  if (!spec.rollout.paused && !halted && spec.state !== "Unloaded") {
    const capacity = resolveMaxUnavailable(spec.rollout.maxUnavailable, targeted.length);
    for (const node of targeted) {
      if (busy >= capacity) break;
      if (admitted.has(node) || isDone(entries.get(node), spec.state, generation)) continue;
      admitted.add(node);
      newlyAdmitted.push(node);
      busy++;
    }
  }
  return {
    rollout: { generation, admitted: targeted.filter((n) => admitted.has(n)), halted },
    newlyAdmitted,
    failed,
    requeueAfterMs,
  };
}
