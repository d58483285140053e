/**
 * The entry the agent writes for a patch: what the decision says (plan.ts's EntryUpdate) with the
 * host's facts and the time of the phase change. Pure: the host read and the clock are passed in.
 */
import type { NodeEntry } from "../../crds/schema.ts";
import type { HostState } from "../host/inspect.ts";
import type { EntryUpdate } from "./plan.ts";

export interface EntryFacts {
  readonly nodeName: string;
  readonly host: Pick<HostState, "kernelRelease" | "bootId" | "tainted" | "taintFlags"> & {
    readonly livepatches: ReadonlyArray<{ readonly name: string; readonly enabled: boolean; readonly transition: boolean }>;
  };
  /** The patch's generation the entry is written for. */
  readonly generation: number;
  readonly now: Date;
}

export function entryOf(update: EntryUpdate, current: NodeEntry | undefined, facts: EntryFacts): NodeEntry {
  const { host } = facts;
  return stripUndefined({
    nodeName: facts.nodeName,
    phase: update.phase,
    kernelRelease: host.kernelRelease,
    bootID: host.bootId,
    moduleName: update.moduleName,
    sha256: update.sha256,
    ...livepatchState(update.moduleName, host.livepatches),
    tainted: host.tainted,
    taintFlags: host.taintFlags,
    replacedBy: update.replacedBy,
    previousModuleName: update.previousModuleName,
    stalledTasks: update.stalledTasks,
    reason: update.reason,
    message: update.message,
    observedGeneration: facts.generation,
    lastTransitionTime: current?.phase === update.phase && current.lastTransitionTime ? current.lastTransitionTime : facts.now.toISOString(),
  });
}

/** What the kernel says of the entry's module (nothing when the entry names none). */
function livepatchState(moduleName: string | undefined, livepatches: EntryFacts["host"]["livepatches"]): { enabled?: boolean; transition?: boolean } {
  if (!moduleName) return {};
  const lp = livepatches.find((p) => p.name === moduleName);
  return { enabled: lp?.enabled ?? false, transition: lp?.transition ?? false };
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
