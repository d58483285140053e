/**
 * The node phases (NodePhase in schema.ts) grouped once into the sets the operator and the agent
 * decide by, and the phase changes an agent may write into its entry for a patch.
 */
import type { DesiredState, NodePhase } from "./schema.ts";

/** Phases in which a node has reached the desired state for this patch. */
export const DONE_PHASES: Readonly<Record<DesiredState, readonly NodePhase[]>> = {
  Loaded: ["Loaded", "Replaced"],
  Staged: ["Staged"],
  Unloaded: ["Unloaded"],
};

/** Phases an agent writes when an operation of the patch failed on its node. */
export const FAILED_PHASES: readonly NodePhase[] = ["Failed", "Stalled"];

/** Phases in which a node holds nothing of a patch: one that stops targeting it can let it go. */
export const CLEAN_PHASES: readonly NodePhase[] = ["Unloaded", "NotApplicable", "Pending"];

/** Phases a node reports once it has taken a deleted patch off its host (a deleted patch's finalizer waits for them). */
export const UNLOADED_PHASES: readonly NodePhase[] = ["Unloaded", "NotApplicable"];

/** Phases an agent reports while it is changing the host (transient: the next write says how it went). */
export const CHANGING_PHASES: readonly NodePhase[] = ["Staging", "Loading", "Unloading"];

/** The phase of an entry not written yet. */
export const NO_ENTRY = "none";
export type PhaseOrNone = NodePhase | typeof NO_ENTRY;

/** Every phase the agent writes: all but Pending, which no one writes (it stands for "nothing reported yet"). */
const WRITTEN: readonly NodePhase[] = ["Staging", "Staged", "Loading", "Loaded", "Replaced", "Unloading", "Unloaded", "NotApplicable", "Failed", "Stalled"];
const but = (...not: NodePhase[]): readonly NodePhase[] => WRITTEN.filter((p) => !not.includes(p));

/**
 * The phase changes an agent may write, from → to (writing the same phase again is no change).
 *
 * The agent decides from what the host says each time (node-agent/loop/plan.ts), not from the
 * phase it wrote last: a reboot, a spec change, a label change or an agent restart between two
 * writes may lead from almost any phase to any other (a Loaded module that the reboot took away
 * loads again: Loading; a module staged for another kernel comes back live with that kernel:
 * NotApplicable → Loaded; a stalled unload keeps Stalled until a retry works: Stalled → Unloaded).
 * What the agent never does:
 * - write Pending (nothing writes it);
 * - report Unloaded without an entry: there is nothing it has unloaded (decideAbsent);
 * - go Stalled or Replaced from an entry that holds nothing (none, Pending, Unloaded,
 *   NotApplicable): it writes Loading or Unloading before any operation that can stall (a retry
 *   after a stall keeps Stalled), or names the module it retires in the entry, and only a module
 *   that is live is replaced.
 */
export const PHASE_TRANSITIONS: Readonly<Record<PhaseOrNone, readonly NodePhase[]>> = {
  none: but("Unloaded", "Stalled"),
  Pending: but("Stalled", "Replaced"),
  Staging: WRITTEN,
  Staged: WRITTEN,
  Loading: WRITTEN,
  Loaded: WRITTEN,
  Replaced: WRITTEN,
  Unloading: WRITTEN,
  Unloaded: but("Stalled", "Replaced"),
  NotApplicable: but("Stalled", "Replaced"),
  Failed: WRITTEN,
  Stalled: WRITTEN,
};

/** Whether an entry may go from `from` (undefined: no entry yet) to `to`. */
export function transitionAllowed(from: NodePhase | undefined, to: NodePhase): boolean {
  if (from === to) return true;
  return PHASE_TRANSITIONS[from ?? NO_ENTRY].includes(to);
}
