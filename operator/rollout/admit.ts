import type { KernelLivePatchSpec, NodeEntry, RolloutStatus } from "../../crds/schema.ts";
import {
  DEFAULT_PROGRESS_DEADLINE_SECONDS,
  isCurrent,
  isDone,
  isFailed,
  notReadyDuringSoak,
  progressRemainingMs,
  soakRemainingMs,
  type DerivedFailure,
  type NodeReadiness,
} from "./settled.ts";

/**
 * Pacing: which nodes may change now. The controller writes the result to `status.rollout`; an
 * agent loads only when its node is in `admitted` for the patch's current generation. Admission
 * is monotonic within a generation (a node once admitted stays admitted), so an agent never sees
 * its permission withdrawn in the middle of a load. Unloading (state Unloaded, deletion) is not
 * paced: backing a patch out should be fast.
 *
 * Beside the Failed and Stalled entries the agents write, two failures are decided here (see
 * settled.ts): an admitted node that makes no progress within spec.rollout.progressDeadlineSeconds
 * (ProgressDeadlineExceeded), and a node whose Node went NotReady during its soak
 * (NodeNotReadyDuringSoak). They count towards failureThreshold, and free the node's slot, like
 * any failure.
 */
export interface AdmitInput {
  readonly generation: number;
  readonly spec: Pick<KernelLivePatchSpec, "state" | "rollout">;
  /** Names of the nodes the patch targets, in any order. */
  readonly targeted: readonly string[];
  readonly entries: ReadonlyMap<string, NodeEntry>;
  readonly previous: RolloutStatus | undefined;
  readonly now: Date;
  /** Readiness of the targeted Nodes (a node missing here gives no evidence). */
  readonly readiness?: ReadonlyMap<string, NodeReadiness>;
  /**
   * When each node of `previous.admitted` was admitted for this generation, as far as the caller
   * knows (status.rollout keeps no times; the controller remembers when it first saw each). The
   * progress deadline of a node that has not reported yet counts from here; a node missing here is
   * not judged.
   */
  readonly admittedAt?: ReadonlyMap<string, Date>;
  /**
   * Nodes that failed the health gate, with the lastTransitionTime of the Loaded entry they failed
   * on: `gateFailed` of the previous decision. The failure stands while that entry does, after the
   * Node is Ready again and after the soak (the evidence, a NotReady Node, is gone by then).
   */
  readonly gateFailed?: ReadonlyMap<string, string>;
  /** The patch is being deleted: no progress is expected of anyone, no deadline is judged. */
  readonly deleting?: boolean;
}

export interface AdmitResult {
  readonly rollout: RolloutStatus;
  /** Nodes newly admitted by this decision. */
  readonly newlyAdmitted: readonly string[];
  /** Failed targeted nodes: entries Failed or Stalled for this generation, and `derived`. */
  readonly failed: number;
  /** The failures decided here, by node (never a node whose entry is Failed or Stalled). */
  readonly derived: ReadonlyMap<string, DerivedFailure>;
  /** For the next decision's `gateFailed`. */
  readonly gateFailed: ReadonlyMap<string, string>;
  /** When to look again because a soak or a progress deadline ends (undefined: nothing time-based pending). */
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

  let requeueAfterMs: number | undefined;
  const wakeIn = (ms: number) => (requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, ms));

  const { derived, gateFailed } = judge(input, targeted, admitted, wakeIn);
  const failedNow = (node: string) => isFailed(entries.get(node), generation) || derived.has(node);
  const failed = targeted.filter(failedNow).length;
  const halted = failed >= spec.rollout.failureThreshold;

  const occupiesSlot = (node: string): boolean => {
    const entry = entries.get(node);
    if (failedNow(node)) return false;
    if (!isDone(entry, spec.state, generation)) return true;
    const remaining = isCurrent(entry, generation) ? soakRemainingMs(entry, spec.rollout.soakSeconds, now) : 0;
    if (remaining > 0) wakeIn(remaining);
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
    derived,
    gateFailed,
    requeueAfterMs,
  };
}

/** The failures decided here: the health gate on every targeted node, the progress deadline on admitted ones. */
function judge(
  input: AdmitInput,
  targeted: readonly string[],
  admitted: ReadonlySet<string>,
  wakeIn: (ms: number) => void,
): { derived: Map<string, DerivedFailure>; gateFailed: Map<string, string> } {
  const { generation, spec, entries, now } = input;
  const derived = new Map<string, DerivedFailure>();
  const gateFailed = new Map<string, string>();
  const soakSeconds = spec.rollout.soakSeconds;
  for (const node of targeted) {
    const entry = entries.get(node);
    if (!isCurrent(entry, generation) || entry.phase !== "Loaded" || !entry.lastTransitionTime) continue;
    const remembered = input.gateFailed?.get(node) === entry.lastTransitionTime;
    if (!remembered && !notReadyDuringSoak(entry, generation, soakSeconds, input.readiness?.get(node))) continue;
    gateFailed.set(node, entry.lastTransitionTime);
    derived.set(node, {
      reason: "NodeNotReadyDuringSoak",
      message: `${node} went NotReady during its ${soakSeconds} s soak after loading at ${entry.lastTransitionTime}`,
    });
  }
  if (input.deleting) return { derived, gateFailed };
  const deadlineSeconds = spec.rollout.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS;
  for (const node of admitted) {
    const entry = entries.get(node);
    if (derived.has(node) || isFailed(entry, generation) || isDone(entry, spec.state, generation)) continue;
    const remaining = progressRemainingMs(entry, generation, input.admittedAt?.get(node), deadlineSeconds, now);
    if (remaining === undefined) continue;
    if (remaining > 0) {
      wakeIn(remaining);
      continue;
    }
    const where = isCurrent(entry, generation) ? `${entry.phase} since ${entry.lastTransitionTime ?? "?"}` : "no report since admission";
    derived.set(node, { reason: "ProgressDeadlineExceeded", message: `${node} made no progress within ${deadlineSeconds} s (${where})` });
  }
  return { derived, gateFailed };
}
