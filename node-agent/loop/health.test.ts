import { describe, expect, it } from "vitest";
import { liveness, readiness, type LoopState } from "./health.ts";

const NOW = 10_000_000;
const state = (over: Partial<LoopState> = {}): LoopState => ({ nodeKnown: true, lastPassAt: NOW - 1000, busySince: undefined, maxTransitionSeconds: 75, ...over });

describe("agent probes", () => {
  it.each<[string, LoopState, boolean]>([
    ["idle", state(), true],
    ["busy for a minute", state({ busySince: NOW - 60_000 }), true],
    ["busy for a transition, its reversal and slack (2 × 75 s + 300 s)", state({ busySince: NOW - 450_000 }), true],
    ["busy longer than that: wedged", state({ busySince: NOW - 451_000 }), false],
    ["a long transition timeout allows a longer pass", state({ busySince: NOW - 3_000_000, maxTransitionSeconds: 3600 }), true],
    ["before the first pass", state({ lastPassAt: 0 }), true],
  ])("liveness: %s", (_n, s, ok) => {
    expect(liveness(s, NOW).ok).toBe(ok);
  });

  it.each<[string, LoopState, boolean]>([
    ["after a pass", state(), true],
    ["the Node not read yet", state({ nodeKnown: false, lastPassAt: 0 }), false],
    ["no pass yet", state({ lastPassAt: 0 }), false],
    ["busy after a pass", state({ busySince: NOW - 1000 }), true],
  ])("readiness: %s", (_n, s, ok) => {
    expect(readiness(s).ok).toBe(ok);
  });
});
