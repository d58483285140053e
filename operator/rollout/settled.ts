import { CHANGING_PHASES, DONE_PHASES, FAILED_PHASES } from "../../crds/phases.ts";
import type { DesiredState, NodeEntry } from "../../crds/schema.ts";

export function isCurrent(entry: NodeEntry | undefined, generation: number): entry is NodeEntry {
  return entry !== undefined && entry.observedGeneration === generation;
}

export function isDone(entry: NodeEntry | undefined, state: DesiredState, generation: number): boolean {
  if (!isCurrent(entry, generation)) return false;
  return entry.phase === "NotApplicable" || DONE_PHASES[state].includes(entry.phase);
}

export function isFailed(entry: NodeEntry | undefined, generation: number): boolean {
  return isCurrent(entry, generation) && FAILED_PHASES.includes(entry.phase);
}

/**
 * Milliseconds a Loaded node still has to soak before it frees its slot (0 when settled).
 * Soak counts from the entry's lastTransitionTime into Loaded.
 */
export function soakRemainingMs(entry: NodeEntry, soakSeconds: number, now: Date): number {
  if (soakSeconds <= 0 || entry.phase !== "Loaded" || !entry.lastTransitionTime) return 0;
  const since = now.getTime() - Date.parse(entry.lastTransitionTime);
  return Math.max(0, soakSeconds * 1000 - since);
}

/**
 * spec.rollout.progressDeadlineSeconds when the spec does not say (the CRD's default: the API
 * server fills it in; the zod schema leaves it optional so specs built in code need not).
 */
export { DEFAULT_PROGRESS_DEADLINE_SECONDS } from "../../crds/schema.ts";

/** Failures the operator decides itself, beside the Failed and Stalled entries the agents write. */
export type DerivedFailureReason = "ProgressDeadlineExceeded" | "NodeNotReadyDuringSoak";

export interface DerivedFailure {
  readonly reason: DerivedFailureReason;
  /** One line for events and conditions; stable while the failure stands (no running clock). */
  readonly message: string;
}

/** What the operator keeps of a Node for these decisions. */
export interface NodeReadiness {
  /**
   * False when the Node's Ready condition is False or Unknown. A Node that has reported no Ready
   * condition at all counts as ready: it gives no evidence either way.
   */
  readonly ready: boolean;
  /** When the Ready condition last changed (its lastTransitionTime), when known. */
  readonly since?: string | undefined;
}

/**
 * When the step an admitted node is taking began, for the progress deadline: the entry's
 * lastTransitionTime while it reports a changing phase (Staging, Loading, Unloading) for this
 * generation, otherwise (no entry yet, one of an earlier generation, Pending) the moment the node
 * was admitted. Only for nodes that are neither done nor failed; undefined when nothing says.
 */
export function progressStartedAt(entry: NodeEntry | undefined, generation: number, admittedAt: Date | undefined): number | undefined {
  if (isCurrent(entry, generation) && CHANGING_PHASES.includes(entry.phase) && entry.lastTransitionTime) {
    const t = Date.parse(entry.lastTransitionTime);
    if (Number.isFinite(t)) return t;
  }
  return admittedAt?.getTime();
}

/**
 * The progress deadline of an admitted node that is neither done nor failed: milliseconds left
 * (<= 0: exceeded), or undefined when no start is known.
 */
export function progressRemainingMs(
  entry: NodeEntry | undefined,
  generation: number,
  admittedAt: Date | undefined,
  deadlineSeconds: number,
  now: Date,
): number | undefined {
  const started = progressStartedAt(entry, generation, admittedAt);
  return started === undefined ? undefined : started + deadlineSeconds * 1000 - now.getTime();
}

/**
 * The node health gate: a node whose entry reports this generation Loaded, and whose Node went
 * NotReady (Ready False or Unknown) between that load and the end of its soak, and is NotReady
 * still. Not when it went NotReady before the load (the load did not make it so) or after the soak
 * (the node had settled); with soakSeconds 0 there is no window. Judged from the Ready condition's
 * lastTransitionTime, so the verdict holds, across operator restarts, while the node stays NotReady.
 */
export function notReadyDuringSoak(entry: NodeEntry | undefined, generation: number, soakSeconds: number, node: NodeReadiness | undefined): boolean {
  if (!isCurrent(entry, generation) || entry.phase !== "Loaded" || !entry.lastTransitionTime) return false;
  if (soakSeconds <= 0 || node === undefined || node.ready || node.since === undefined) return false;
  const loaded = Date.parse(entry.lastTransitionTime);
  const wentNotReady = Date.parse(node.since);
  // A Node condition's time has whole seconds (truncated): one within the second of the load may follow it.
  return wentNotReady + 1000 > loaded && wentNotReady <= loaded + soakSeconds * 1000;
}
