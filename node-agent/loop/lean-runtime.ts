/**
 * Keeps the agent's idle memory small. It runs on every node, mostly waiting: it needs neither
 * V8's optimizing compilers (their code and compile zones cost ~8 MiB of RSS for hot paths that
 * are not hot here) nor a young generation that stays at the size its busiest moment grew it to
 * (module parsing, TLS, hashing a module file: ~8 MiB more). Measured with
 * `npm run bench:agent-rss`.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/**
 * Turns off the optimizing tiers (the interpreter and the baseline compiler remain) and returns a
 * full, memory-reducing garbage collection. Flags changed at run time apply to code compiled from then on; these
 * two only withhold optimization, which V8 may always do.
 */
export function leanRuntime(): () => void {
  setFlagsFromString("--no-opt");
  setFlagsFromString("--no-maglev");
  setFlagsFromString("--no-sparkplug");
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

/**
 * Debounced: collect once the agent has been idle for `delayMs` after a burst of work. An idle
 * process allocates too little for V8 to collect again on its own, so without this the young
 * generation keeps the size the burst grew it to. A collection of the agent's ~10 MiB heap takes
 * a few milliseconds.
 */
export function idleCollector(collect: () => void, delayMs = 5000, timers: Timers = globalThis): () => void {
  let pending: unknown;
  return () => {
    if (pending !== undefined) timers.clearTimeout(pending);
    const t = timers.setTimeout(() => {
      pending = undefined;
      collect();
    }, delayMs);
    t.unref?.();
    pending = t;
  };
}
