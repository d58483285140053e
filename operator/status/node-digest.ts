/**
 * What a patch's status says of its nodes, bounded whatever the fleet's size: status.nodes lists
 * every node's entry up to MAX_STATUS_NODES, and beyond that the ones an admin looks at first,
 * with status.nodesOmitted counting the rest; status.summary.taints counts the taint flag sets.
 * The full entries stay in the nodes' KernelLivePatchNodes. Pure.
 */
import {
  DIGEST_MESSAGE_CHARS,
  DIGEST_STALLED_TASKS,
  MAX_STATUS_NODES,
  MAX_TAINT_ROWS,
  OTHER_TAINTS,
  type NodeEntry,
  type TaintCount,
} from "../../crds/schema.ts";
import { CHANGING_PHASES } from "../../crds/phases.ts";

export interface NodeDigest {
  /** At most MAX_STATUS_NODES entries, most in need of attention first, each cut to size. */
  readonly nodes: NodeEntry[];
  /** How many entries are not listed. */
  readonly omitted: number;
}

/**
 * How much an entry needs an admin's attention, lowest first: failed, stalled, changing now,
 * admitted and still to change (`waiting`: the rollout's turn has come, the change not made), then
 * the rest.
 */
export function attention(e: NodeEntry, waiting: ReadonlySet<string>): number {
  if (e.phase === "Failed") return 0;
  if (e.phase === "Stalled") return 1;
  if (CHANGING_PHASES.includes(e.phase)) return 2;
  if (waiting.has(e.nodeName)) return 3;
  return 4;
}

/**
 * The entries status.nodes lists: all of them when they are at most `max`, else the `max` with the
 * lowest attention (ties by node name); listed by node name either way, each cut to size.
 */
export function nodeDigest(entries: readonly NodeEntry[], waiting: ReadonlySet<string>, max = MAX_STATUS_NODES): NodeDigest {
  const byName = (a: NodeEntry, b: NodeEntry) => (a.nodeName < b.nodeName ? -1 : a.nodeName > b.nodeName ? 1 : 0);
  const chosen =
    entries.length <= max
      ? [...entries]
      : entries
          .map((e) => ({ e, rank: attention(e, waiting) }))
          .sort((a, b) => a.rank - b.rank || byName(a.e, b.e))
          .slice(0, max)
          .map(({ e }) => e);
  return { nodes: chosen.sort(byName).map(cut), omitted: entries.length - chosen.length };
}

/** An entry as the digest shows it: its message and stalled tasks shortened (the node object has them whole). */
export function cut(e: NodeEntry): NodeEntry {
  const longMessage = e.message !== undefined && e.message.length > DIGEST_MESSAGE_CHARS;
  const manyTasks = e.stalledTasks !== undefined && e.stalledTasks.length > DIGEST_STALLED_TASKS;
  if (!longMessage && !manyTasks) return e;
  return {
    ...e,
    ...(longMessage ? { message: `${e.message!.slice(0, DIGEST_MESSAGE_CHARS - 1)}…` } : {}),
    ...(manyTasks ? { stalledTasks: e.stalledTasks!.slice(0, DIGEST_STALLED_TASKS) } : {}),
  };
}

/**
 * How many targeted nodes report each set of taint flags, most common first (ties by flags); at
 * most MAX_TAINT_ROWS rows, the sets beyond the first MAX_TAINT_ROWS - 1 added up in one row
 * OTHER_TAINTS. Undefined when no targeted node reports a taint.
 */
export function taintSummary(entries: readonly NodeEntry[], targeted: ReadonlySet<string>): TaintCount[] | undefined {
  const counts = new Map<string, number>();
  for (const e of entries) if (e.taintFlags && targeted.has(e.nodeName)) counts.set(e.taintFlags, (counts.get(e.taintFlags) ?? 0) + 1);
  if (counts.size === 0) return undefined;
  const rows = [...counts]
    .map(([flags, nodes]) => ({ flags, nodes }))
    .sort((a, b) => b.nodes - a.nodes || (a.flags < b.flags ? -1 : a.flags > b.flags ? 1 : 0));
  if (rows.length <= MAX_TAINT_ROWS) return rows;
  const kept = rows.slice(0, MAX_TAINT_ROWS - 1);
  const rest = rows.slice(MAX_TAINT_ROWS - 1).reduce((n, r) => n + r.nodes, 0);
  return [...kept, { flags: OTHER_TAINTS, nodes: rest }];
}
