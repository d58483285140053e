import { describe, expect, it } from "vitest";
import type { NodeEntry, NodePhase } from "../../crds/schema.ts";
import { patchGauges } from "./patch-gauges.ts";

const e = (nodeName: string, phase: NodePhase): NodeEntry => ({ nodeName, phase, observedGeneration: 1 });

describe("patchGauges", () => {
  it.each<[string, NodeEntry[], string[], Partial<Record<NodePhase, number>>]>([
    ["nothing reported: every targeted node Pending", [], ["a", "b"], { Pending: 2, Loaded: 0 }],
    ["one loaded, one loading, one not reported", [e("a", "Loaded"), e("b", "Loading")], ["a", "b", "c"], { Loaded: 1, Loading: 1, Pending: 1 }],
    ["entries of untargeted nodes do not count", [e("a", "Loaded"), e("x", "Failed")], ["a"], { Loaded: 1, Failed: 0, Pending: 0 }],
    ["failed and stalled", [e("a", "Failed"), e("b", "Stalled"), e("c", "NotApplicable")], ["a", "b", "c"], { Failed: 1, Stalled: 1, NotApplicable: 1, Pending: 0 }],
  ])("%s", (_n, entries, targeted, expected) => {
    const g = patchGauges(entries, new Set(targeted), false, false);
    expect(g.byPhase).toMatchObject(expected);
    expect(Object.values(g.byPhase).reduce((a, b) => a + b, 0)).toBe(targeted.length);
    expect(g.targeted).toBe(targeted.length);
  });

  it("carries ready and halted", () => {
    expect(patchGauges([], new Set(), true, true)).toMatchObject({ ready: true, halted: true });
  });
});
