import type { DesiredState, NodeEntry, NodePhase } from "../../crds/schema.ts";

/** Phases in which a node has reached the desired state for this patch. */
export const DONE_PHASES: Record<DesiredState, readonly NodePhase[]> = {
  Loaded: ["Loaded", "Replaced"],
  Staged: ["Staged"],
  Unloaded: ["Unloaded"],
};

export const FAILED_PHASES: readonly NodePhase[] = ["Failed", "Stalled"];

/** Phases an agent reports while it is changing the host. */
export const CHANGING_PHASES: readonly NodePhase[] = ["Staging", "Loading", "Unloading"];

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
