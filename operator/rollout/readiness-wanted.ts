/**
 * Which Nodes' readiness a patch's decisions read now. The operator watches Nodes as metadata
 * only and reads a Node's Ready condition on demand (kube/node-readiness.ts), so it asks only for
 * the nodes where readiness can change a decision:
 *
 * - the health gate (settled.ts notReadyDuringSoak): a targeted node whose entry reports this
 *   generation Loaded, from its load until its soak has ended and the Node has been seen Ready
 *   since (it can no longer fail: a later NotReady is after the soak), at most GATE_LOOKBACK_MS
 *   past the soak's end (an operator that starts later does not judge that soak again);
 * - a deleted patch's finalizer (rollup.ts unloadComplete): the nodes admitted to unload that have
 *   not reported it UNLOAD_QUIET_MS after their admission (a node NotReady past the grace period is
 *   no longer waited for and frees its slot). A healthy node reports Unloading well within that, so
 *   a deletion reads no Node that is not silent; the grace period (15 min by default) counts from
 *   the NotReady transition, so reading late costs no time.
 *
 * Every other Node counts as Ready (no evidence) for the decisions.
 */
import { UNLOADED_PHASES } from "../../crds/phases.ts";
import type { NodeEntry } from "../../crds/schema.ts";
import { isCurrent } from "./settled.ts";

/** How long after a soak's end its health gate is still judged when it was not judged by then (a restart, a backlog). */
export const GATE_LOOKBACK_MS = 600_000;

/** How long a node admitted to unload a deleted patch may stay silent before its readiness is read. */
export const UNLOAD_QUIET_MS = 30_000;

export interface ReadinessWantedInput {
  readonly generation: number;
  readonly soakSeconds: number;
  readonly entries: readonly NodeEntry[];
  readonly targeted: ReadonlySet<string>;
  readonly now: Date;
  /** When each node was last known Ready (ms), as far as the readings say. */
  readonly readySeenAt: (node: string) => number | undefined;
  /**
   * The patch is being deleted and waits for its nodes (no force-delete): the nodes admitted to
   * unload, and when this operator saw each admitted (the rollout memory's admittedAt).
   */
  readonly deletion?: { readonly admitted: ReadonlySet<string>; readonly admittedAt: ReadonlyMap<string, Date> };
}

export function readinessWanted(input: ReadinessWantedInput): string[] {
  const { generation, soakSeconds, targeted, now, deletion } = input;
  const wanted: string[] = [];
  for (const e of input.entries) {
    const node = e.nodeName;
    if (deletion?.admitted.has(node) && !UNLOADED_PHASES.includes(e.phase) && silent(deletion.admittedAt.get(node), now)) wanted.push(node);
    else if (targeted.has(node) && inGateWindow(e, generation, soakSeconds, now.getTime(), input.readySeenAt(node))) wanted.push(node);
  }
  return wanted;
}

function silent(admittedAt: Date | undefined, now: Date): boolean {
  return admittedAt !== undefined && now.getTime() - admittedAt.getTime() >= UNLOAD_QUIET_MS;
}

function inGateWindow(e: NodeEntry, generation: number, soakSeconds: number, now: number, readySeenAt: number | undefined): boolean {
  if (soakSeconds <= 0 || !isCurrent(e, generation) || e.phase !== "Loaded" || !e.lastTransitionTime) return false;
  const soakEnd = Date.parse(e.lastTransitionTime) + soakSeconds * 1000;
  if (!Number.isFinite(soakEnd) || now > soakEnd + GATE_LOOKBACK_MS) return false;
  return readySeenAt === undefined || readySeenAt < soakEnd;
}
