/**
 * Modules the agent's record (host/agent-record.ts) gives to a patch the node's object no longer
 * lists (deleted while the node could not answer): which one comes off the host next, and which
 * records go because nothing of their module is on the host any more. Pure, with the retry
 * schedule and the clock passed in; the agent runs the step (agent.ts).
 */
import type { AgentRecord, RecordedModule } from "../host/agent-record.ts";
import { cleanupOf, type Action, type HostView } from "./plan.ts";

/** Retry-schedule keys of the modules of patches that are gone. */
export const ORPHAN_KEY = "orphan ";

export interface OrphanInput {
  readonly record: AgentRecord;
  /** The keys (uids) of the patches the node's object lists. */
  readonly owners: ReadonlySet<string>;
  readonly host: HostView;
  /**
   * The agent may start a host operation for an orphan: it is not stopping, no other operation
   * ran in this pass, and the patches came from the node's object (a patch absent from them is
   * gone, not just unknown).
   */
  readonly mayAct: boolean;
  readonly dueInMs: (key: string, now: number) => number;
  readonly now: number;
}

export interface OrphanPlan {
  /** Records of modules that are nowhere on the host any more. */
  readonly forget: readonly string[];
  /** The one host operation of this pass for an orphan, if one is due. */
  readonly step?: { readonly name: string; readonly owner: RecordedModule; readonly action: Action; readonly key: string };
  /** When an orphan's failed operation may be tried again (ms), if one waits. */
  readonly waitMs?: number;
}

export function orphanPlan(input: OrphanInput): OrphanPlan {
  const forget: string[] = [];
  let step: OrphanPlan["step"];
  let waitMs: number | undefined;
  for (const [name, owner] of input.record) {
    const key = `${ORPHAN_KEY}${name}`;
    const action = cleanupOf(name, input.host);
    if (!action) {
      forget.push(name);
      continue;
    }
    if (step || !input.mayAct || input.owners.has(owner.uid)) continue;
    const dueIn = input.dueInMs(key, input.now);
    if (dueIn > 0) waitMs = Math.min(waitMs ?? Infinity, dueIn);
    else step = { name, owner, action, key };
  }
  return { forget, ...(step ? { step } : {}), ...(waitMs === undefined ? {} : { waitMs }) };
}
