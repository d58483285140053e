import { GROUP, type KernelLivePatchSpec, type NodeEntry } from "../../crds/schema.ts";
import { CHANGING_PHASES, CLEAN_PHASES } from "../../crds/phases.ts";
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
 * The annotation that lets a deleted patch unload from every node at once instead of at the pace
 * of maxUnavailable (value "true").
 */
export const UNLOAD_IMMEDIATELY_ANNOTATION = `${GROUP}/unload-immediately`;

/**
 * Pacing: which nodes may change now. The controller projects the result onto each node's
 * KernelLivePatchNode (spec.patches[].admitted, with the patch's uid and generation) and counts it
 * in `status.rollout`; an agent changes its node's kernel for a patch — loads a module, or takes
 * one off (unload, leftover, uninstall) — only when its node is admitted for the patch's current
 * generation. So maxUnavailable paces every change, and a node needs admission when:
 *
 * - the patch is to be Loaded or Staged: it is targeted and not there yet for this generation (a
 *   node whose kernel release was dropped from spec.modules is done once it reports NotApplicable
 *   for the new generation);
 * - the patch is to be Unloaded: it is targeted and has an entry not yet Unloaded for this
 *   generation (a node without any entry holds nothing);
 * - the patch no longer targets it (its nodeSelector) while its entry says it holds something of
 *   the patch (a phase not in CLEAN_PHASES: the projection keeps the patch on such a node);
 * - the patch is being deleted: the finalizer waits for it (`deletion.waitingFor`). With
 *   UNLOAD_IMMEDIATELY_ANNOTATION these are admitted all at once, paused or not.
 *
 * Admission is monotonic within a generation (a node once admitted stays admitted while it is
 * targeted or still has something to unload), so an agent never sees its permission withdrawn in
 * the middle of a change; a node that leaves the selector with nothing on it loses its admission.
 * A node already changing (its entry says Staging, Loading or Unloading: the last generation
 * admitted it) goes first. `paused` stops new admissions of every kind. `halted` (failures
 * >= failureThreshold) stops new loads only: an unload is the way back and is never halted, so a
 * patch to be Unloaded or being deleted is never halted.
 *
 * Beside the Failed and Stalled entries the agents write, two failures are decided here (see
 * settled.ts): an admitted node that makes no progress within spec.rollout.progressDeadlineSeconds
 * (ProgressDeadlineExceeded), and a node whose Node went NotReady during its soak
 * (NodeNotReadyDuringSoak). They count towards failureThreshold, and free the node's slot, like
 * any failure.
 */
/** One admission decision: the nodes admitted for a generation, and whether loads are halted. */
export interface Admission {
  readonly generation: number;
  /** Sorted by name. */
  readonly admitted: readonly string[];
  readonly halted: boolean;
}

export interface AdmitInput {
  readonly generation: number;
  readonly spec: Pick<KernelLivePatchSpec, "state" | "rollout">;
  /** Names of the nodes the patch targets, in any order. */
  readonly targeted: readonly string[];
  readonly entries: ReadonlyMap<string, NodeEntry>;
  /**
   * The nodes admitted so far (`halted` is not read): those the node objects' projections show
   * admitted for this generation, and those this operator admitted since, not projected yet.
   * Admission of another generation is not kept.
   */
  readonly previous: (Pick<Admission, "generation" | "admitted"> & Partial<Admission>) | undefined;
  readonly now: Date;
  /** Readiness of the targeted Nodes (a node missing here gives no evidence). */
  readonly readiness?: ReadonlyMap<string, NodeReadiness>;
  /**
   * When each node of `previous.admitted` was admitted for the change it still needs, as far as
   * the caller knows (the projection keeps no times; the controller remembers when it first saw
   * each admitted and needing a change: see AdmitResult.needing). The progress deadline of a node
   * that has not reported yet counts from here; a node missing here is not judged.
   */
  readonly admittedAt?: ReadonlyMap<string, Date>;
  /**
   * Nodes that failed the health gate, with the lastTransitionTime of the Loaded entry they failed
   * on: `gateFailed` of the previous decision. The failure stands while that entry does, after the
   * Node is Ready again and after the soak (the evidence, a NotReady Node, is gone by then).
   */
  readonly gateFailed?: ReadonlyMap<string, string>;
  /**
   * The patch is being deleted: the nodes its finalizer still waits for (unloadComplete's
   * `waitingFor`: not gone, not NotReady past the grace period, no force-delete), and whether the
   * patch carries UNLOAD_IMMEDIATELY_ANNOTATION.
   */
  readonly deletion?: { readonly waitingFor: readonly string[]; readonly immediately: boolean };
}

export interface AdmitResult {
  readonly rollout: Admission;
  /** Nodes newly admitted by this decision. */
  readonly newlyAdmitted: readonly string[];
  /**
   * The admitted nodes that still need a change (not done; failed or not): the clocks of the
   * progress deadline run for these only. A node that was done and needs a change again while it
   * stays admitted (a loaded node that leaves the selector: now it must unload) starts a new clock.
   */
  readonly needing: readonly string[];
  /** Failed targeted nodes: entries Failed or Stalled for this generation, and `derived`. */
  readonly failed: number;
  /** The failures decided here, by node (never a node whose entry is Failed or Stalled). */
  readonly derived: ReadonlyMap<string, DerivedFailure>;
  /** For the next decision's `gateFailed`. */
  readonly gateFailed: ReadonlyMap<string, string>;
  /** When to look again because a soak or a progress deadline ends (undefined: nothing time-based pending). */
  readonly requeueAfterMs: number | undefined;
}

/**
 * maxUnavailable as a count: a percent is of the targeted nodes, as the API documents (the nodes
 * still to unload the patch elsewhere share those slots), rounded down; at least 1.
 */
export function resolveMaxUnavailable(value: number | string, targeted: number): number {
  if (typeof value === "number") return Math.max(1, value);
  const percent = Number.parseInt(value, 10);
  return Math.max(1, Math.floor((percent * targeted) / 100));
}

/** What a node needs admission for now, if anything (see admit). */
export type Need = "load" | "unload";

export function admit(input: AdmitInput): AdmitResult {
  const { generation, spec, entries, now, deletion } = input;
  const targeted = [...input.targeted].sort();
  const isTargeted = new Set(targeted);
  const waiting = new Set(deletion?.waitingFor ?? []);

  const needOf = (node: string): Need | undefined => {
    const entry = entries.get(node);
    if (deletion) return waiting.has(node) ? "unload" : undefined;
    if (!isTargeted.has(node)) return entry !== undefined && !CLEAN_PHASES.includes(entry.phase) ? "unload" : undefined;
    if (spec.state === "Unloaded") return entry !== undefined && !isDone(entry, "Unloaded", generation) ? "unload" : undefined;
    return isDone(entry, spec.state, generation) ? undefined : "load";
  };
  const need = new Map<string, Need>();
  for (const node of [...new Set([...targeted, ...entries.keys(), ...waiting])].sort()) {
    const n = needOf(node);
    if (n) need.set(node, n);
  }

  const kept = input.previous?.generation === generation ? input.previous.admitted : [];
  const admitted = new Set(kept.filter((n) => isTargeted.has(n) || need.get(n) === "unload"));

  let requeueAfterMs: number | undefined;
  const wakeIn = (ms: number) => (requeueAfterMs = Math.min(requeueAfterMs ?? Infinity, ms));

  const { derived, gateFailed } = judge(input, targeted, admitted, need, wakeIn);
  const failedNow = (node: string) => isFailed(entries.get(node), generation) || derived.has(node);
  const failed = targeted.filter(failedNow).length;
  const halted = !deletion && spec.state !== "Unloaded" && failed >= spec.rollout.failureThreshold;

  const occupiesSlot = (node: string): boolean => {
    if (failedNow(node)) return false;
    if (need.has(node)) return true;
    const entry = entries.get(node);
    const remaining = isCurrent(entry, generation) ? soakRemainingMs(entry, spec.rollout.soakSeconds, now) : 0;
    if (remaining > 0) wakeIn(remaining);
    return remaining > 0;
  };
  let busy = [...admitted].filter(occupiesSlot).length;

  const changing = (node: string) => {
    const entry = entries.get(node);
    return entry !== undefined && CHANGING_PHASES.includes(entry.phase);
  };
  // By name, those already changing first (a stable sort).
  const order = [...need.keys()].sort((a, b) => Number(changing(b)) - Number(changing(a)));
  const capacity = resolveMaxUnavailable(spec.rollout.maxUnavailable, targeted.length);
  const newlyAdmitted: string[] = [];
  for (const node of order) {
    if (admitted.has(node)) continue;
    const kind = need.get(node);
    const immediately = kind === "unload" && deletion?.immediately === true;
    if (!immediately && (spec.rollout.paused || (kind === "load" && halted) || busy >= capacity)) continue;
    admitted.add(node);
    newlyAdmitted.push(node);
    busy++;
  }
  return {
    rollout: { generation, admitted: [...admitted].sort(), halted },
    newlyAdmitted,
    needing: [...admitted].filter((n) => need.has(n)).sort(),
    failed,
    derived,
    gateFailed,
    requeueAfterMs,
  };
}

/**
 * The failures decided here: the health gate on every targeted node, the progress deadline on
 * admitted ones that still need their change (loads and unloads alike, during a deletion too: a
 * node that makes no progress must not keep a slot the others wait for).
 */
function judge(
  input: AdmitInput,
  targeted: readonly string[],
  admitted: ReadonlySet<string>,
  need: ReadonlyMap<string, Need>,
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
  const deadlineSeconds = spec.rollout.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS;
  for (const node of admitted) {
    const entry = entries.get(node);
    if (derived.has(node) || isFailed(entry, generation) || !need.has(node)) continue;
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
