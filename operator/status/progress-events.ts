import type { NodeEntry, NodePhase } from "../../crds/schema.ts";

/** Phases worth an event on the patch when nodes reach them. Failures are the agents' own warnings. */
const ANNOUNCED = ["Loaded", "Unloaded"] as const;
type Announced = (typeof ANNOUNCED)[number];

export interface ProgressEvent {
  readonly reason: Announced;
  readonly message: string;
}

/** Names shown in one event; the rest are counted. */
export const NAMES_SHOWN = 10;

/**
 * The patch's progress events for one status write: one per phase that nodes reached since the
 * previous write, naming them. The agents put each load and unload on their Node; on the patch
 * they are grouped here, so a rollout to 1000 nodes leaves a few dozen events on the patch, not a
 * thousand (and the API server takes a thousand fewer writes). Without a previous write (the
 * operator just started) nothing is announced: there is no "since".
 */
export function progressEvents(before: ReadonlyMap<string, NodePhase> | undefined, after: readonly NodeEntry[], targeted: number): ProgressEvent[] {
  if (!before) return [];
  const events: ProgressEvent[] = [];
  for (const phase of ANNOUNCED) {
    const reached = after.filter((e) => e.phase === phase && before.get(e.nodeName) !== phase).map((e) => e.nodeName).sort();
    if (reached.length === 0) continue;
    const total = after.filter((e) => e.phase === phase).length;
    const reachedSet = new Set(reached);
    const modules = [...new Set(after.filter((e) => reachedSet.has(e.nodeName)).map((e) => e.moduleName).filter((m) => m !== undefined))].sort();
    const shown = reached.slice(0, NAMES_SHOWN).join(", ") + (reached.length > NAMES_SHOWN ? ` and ${reached.length - NAMES_SHOWN} more` : "");
    const what = modules.length ? `${modules.join(", ")} ${phase.toLowerCase()}` : phase;
    const nodes = reached.length === 1 ? "1 node" : `${reached.length} nodes`;
    events.push({ reason: phase, message: `${what} on ${nodes} (${shown}); ${total} of ${targeted} targeted nodes ${phase.toLowerCase()}` });
  }
  return events;
}

/** The phases of a status write's entries, to compare the next write with. */
export function phasesOf(entries: readonly NodeEntry[]): Map<string, NodePhase> {
  return new Map(entries.map((e) => [e.nodeName, e.phase]));
}
