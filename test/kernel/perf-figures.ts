// The agent's cost next to a bare insmod + transition wait, as the guest runner's `perf` step
// measures it (PERF_ROUNDS rounds alternating in one guest): the same figures for every release a suite boots,
// checked for sanity (they are benchmark figures, not timed assertions) and recorded beside the
// consoles so that docs/benchmarks.md can quote them.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { arr, obj, type Obj } from "./facts.ts";
import { PERF_ROUNDS } from "./guest/perf-rounds.ts";

export interface PerfFigures {
  release: string;
  accel: string;
  rounds: number;
  /** Medians of the rounds, ms. */
  bareMs: number;
  agentInsmodToLoadedMs: number;
  agentCliMs: number;
  agentBeforeInsmodMs: number;
  nodeStartupMs: number;
  cliStartupMs: number;
  agentKernelTransitionMs: number;
  bareKernelTransitionMs: number;
  /** The agent's insmod → loaded over bare insmod + wait; the whole CLI call over the same. */
  ratio: number;
  cliRatio: number;
  /** The agent's own transitionMs (its JSON) per round. */
  transitionMs: number[];
}

const sane = (ms: number): boolean => Number.isFinite(ms) && ms >= 0 && ms < 600_000;

/** Asserts every round loaded both ways and every figure is a plausible duration; returns them. */
export function perfFigures(d: Obj, release: string, accel: string): PerfFigures {
  const rounds = arr(d.rounds).map(obj);
  expect(rounds).toHaveLength(PERF_ROUNDS);
  for (const round of rounds) {
    expect(round.agentLoadRc, JSON.stringify(round)).toBe(0);
    expect(round.agentEnabled).toBe("1");
    expect(round.bareRc, JSON.stringify(round)).toBe(0);
    expect(round.bareEnabled).toBe("1");
  }
  const m = obj(d.median);
  const f: PerfFigures = {
    release, accel, rounds: rounds.length,
    bareMs: Number(m.bareLoadMs),
    agentInsmodToLoadedMs: Number(m.agentInsmodToLoadedMs),
    agentCliMs: Number(m.agentLoadMs),
    agentBeforeInsmodMs: Number(m.agentBeforeInsmodMs),
    nodeStartupMs: Number(m.nodeStartupMs),
    cliStartupMs: Number(m.cliStartupMs),
    agentKernelTransitionMs: Number(m.agentKernelTransitionMs),
    bareKernelTransitionMs: Number(m.bareKernelTransitionMs),
    ratio: Number(m.agentInsmodToLoadedMs) / Number(m.bareLoadMs),
    cliRatio: Number(m.agentLoadMs) / Number(m.bareLoadMs),
    transitionMs: rounds.map((x) => obj(x.agentLoadJson).transitionMs).filter((x): x is number => typeof x === "number"),
  };
  for (const key of ["bareMs", "agentInsmodToLoadedMs", "agentCliMs", "agentBeforeInsmodMs", "nodeStartupMs", "cliStartupMs", "agentKernelTransitionMs", "bareKernelTransitionMs"] as const) {
    expect(sane(f[key]), `${key} = ${f[key]} (the agent logged 'loading patch module' and 'patch module loaded'; the kernel its transition)`).toBe(true);
  }
  expect(f.bareMs, "a bare insmod + wait takes some time").toBeGreaterThan(0);
  expect(Number.isFinite(f.ratio) && f.ratio > 0).toBe(true);
  expect(f.agentCliMs, "the whole CLI call includes its insmod → loaded").toBeGreaterThanOrEqual(f.agentInsmodToLoadedMs);
  expect(f.transitionMs).toHaveLength(PERF_ROUNDS);
  return f;
}

export function describePerf(f: PerfFigures): string {
  return `load timing on ${f.release} (median of ${f.rounds}, ${f.accel}): bare insmod + transition wait ${f.bareMs} ms; ` +
    `agent: insmod + transition wait ${f.agentInsmodToLoadedMs} ms = ${f.ratio.toFixed(2)}x bare (goal 1.2x; ` +
    `transitionMs ${JSON.stringify(f.transitionMs)}); whole CLI call ${f.agentCliMs} ms = ${f.cliRatio.toFixed(2)}x bare, ` +
    `of which ${f.agentBeforeInsmodMs} ms before insmod (node alone starts in ${f.nodeStartupMs} ms, \`--help\` of the bundle takes ${f.cliStartupMs} ms); ` +
    `the kernel's own transition (its log, start to complete) took ${f.agentKernelTransitionMs} ms under the agent, ${f.bareKernelTransitionMs} ms bare`;
}

/** Writes the figures to `<dir>/perf-<release>.json`. */
export function recordPerf(dir: string, f: PerfFigures): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `perf-${f.release}.json`), JSON.stringify(f, null, 2) + "\n");
}
