/**
 * The Node process's own memory behaviour, shared by both entry points (node-agent/main.ts and
 * operator/main.ts): a top-level module of its own, since it is neither the agent's nor the
 * operator's, and has nothing to do with Kubernetes (kube/) or the API (crds/).
 *
 * Keeps the agent's idle memory small. It runs on every node, mostly waiting: it needs neither
 * V8's optimizing compilers (their code and compile zones cost ~8 MiB of RSS for paths that are
 * not hot here; the image also runs node --jitless) nor a young generation that stays at the size
 * its busiest moment grew it to (module parsing, TLS, hashing a module file). An idle process
 * allocates too little for V8 to collect again on its own, so the agent asks for a collection
 * once a burst of work is over. Measured with `npm run bench:agent-rss`.
 */
import { getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Turns off the optimizing tiers (the interpreter and the baseline compiler remain) and returns a
 * full, memory-reducing garbage collection. Flags changed at run time apply to code compiled from
 * then on; these only withhold optimization, which V8 may always do.
 */
export function leanRuntime(): () => void {
  setFlagsFromString("--no-opt");
  setFlagsFromString("--no-maglev");
  setFlagsFromString("--no-sparkplug");
  return fullCollection();
}

/**
 * A full, memory-reducing garbage collection on demand (the operator uses it too, after bursts: a
 * thousand-node roll-up leaves tens of MiB of garbage that V8 would otherwise keep for a while).
 */
export function fullCollection(): () => void {
  setFlagsFromString("--expose-gc");
  const gc: unknown = runInNewContext("gc");
  if (typeof gc !== "function") return () => undefined;
  // "last-resort": the collection that also shrinks the young generation and compacts.
  return () => (gc as (options: object) => void)({ type: "major", execution: "sync", flavor: "last-resort" });
}

export interface Timers {
  setTimeout(f: () => void, ms: number): { unref?(): unknown };
  clearTimeout(t: unknown): void;
}

export interface IdleCollectorOptions {
  /** Quiet time after the last burst before collecting (default 5 s). */
  readonly delayMs?: number;
  /** Collect only when the heap grew this much since the last collection (default 1 MiB). */
  readonly growthBytes?: number;
  readonly heapBytes?: () => number;
  readonly timers?: Timers;
}

/**
 * Debounced: collect once the agent has been idle for `delayMs` after a burst of work in which
 * the heap grew. A resync pass that changed nothing does not cost a collection.
 */
export function idleCollector(collect: () => void, opts: IdleCollectorOptions = {}): () => void {
  const { delayMs = 5000, growthBytes = 1 << 20, heapBytes = () => getHeapStatistics().total_heap_size, timers = globalThis } = opts;
  let pending: unknown;
  let after = 0;
  return () => {
    if (pending !== undefined) timers.clearTimeout(pending);
    const t = timers.setTimeout(() => {
      pending = undefined;
      if (heapBytes() - after < growthBytes) return;
      collect();
      after = heapBytes();
    }, delayMs);
    t.unref?.();
    pending = t;
  };
}
