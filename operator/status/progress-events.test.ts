import { describe, expect, it } from "vitest";
import type { NodeEntry, NodePhase } from "../../crds/schema.ts";
import { phasesOf, progressEvents } from "./progress-events.ts";

const e = (nodeName: string, phase: NodePhase, moduleName = "klp_fix"): NodeEntry => ({ nodeName, phase, moduleName });

describe("progressEvents", () => {
  it.each<[string, Map<string, NodePhase> | undefined, NodeEntry[], number, string[]]>([
    ["no previous write: nothing to compare with", undefined, [e("a", "Loaded")], 1, []],
    ["nothing reached", phasesOf([e("a", "Loading")]), [e("a", "Loading")], 1, []],
    ["already Loaded before", phasesOf([e("a", "Loaded")]), [e("a", "Loaded")], 1, []],
    ["one node loaded", phasesOf([e("a", "Loading")]), [e("a", "Loaded"), e("b", "Loading")], 2, ["Loaded: klp_fix loaded on 1 node (a); 1 of 2 targeted nodes loaded"]],
    [
      "several, sorted, a node new since the last write counts",
      phasesOf([e("a", "Loaded"), e("c", "Loading")]),
      [e("a", "Loaded"), e("c", "Loaded"), e("b", "Loaded")],
      4,
      ["Loaded: klp_fix loaded on 2 nodes (b, c); 3 of 4 targeted nodes loaded"],
    ],
    [
      "loads and unloads in the same write are two events",
      phasesOf([e("a", "Unloading"), e("b", "Loading")]),
      [e("a", "Unloaded"), e("b", "Loaded")],
      2,
      ["Loaded: klp_fix loaded on 1 node (b); 1 of 2 targeted nodes loaded", "Unloaded: klp_fix unloaded on 1 node (a); 1 of 2 targeted nodes unloaded"],
    ],
    ["a failure is the agent's warning, not announced here", phasesOf([e("a", "Loading")]), [e("a", "Failed")], 1, []],
  ])("%s", (_what, before, after, targeted, want) => {
    expect(progressEvents(before, after, targeted).map((p) => `${p.reason}: ${p.message}`)).toEqual(want);
  });

  it("names ten nodes and counts the rest", () => {
    const after = Array.from({ length: 25 }, (_, i) => e(`n${String(i).padStart(2, "0")}`, "Loaded"));
    const [ev] = progressEvents(new Map(), after, 1000);
    expect(ev!.message).toBe("klp_fix loaded on 25 nodes (n00, n01, n02, n03, n04, n05, n06, n07, n08, n09 and 15 more); 25 of 1000 targeted nodes loaded");
  });
});
