import { describe, expect, it } from "vitest";
import type { Condition, NodeEntry, NodePhase } from "../../crds/schema.ts";
import { mergeConditions } from "./conditions.ts";
import { rollup, staleEntries, unloadComplete, type RollupInput } from "./rollup.ts";

const e = (nodeName: string, phase: NodePhase, observedGeneration = 1, reason?: string): NodeEntry => ({
  nodeName,
  phase,
  observedGeneration,
  ...(reason ? { reason } : {}),
});
const input = (entries: NodeEntry[], over: Partial<RollupInput> = {}): RollupInput => ({
  generation: 1,
  spec: { state: "Loaded", rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 } },
  targeted: new Set(["a", "b", "c"]),
  entries,
  halted: false,
  deleting: false,
  ...over,
});
const cond = (r: ReturnType<typeof rollup>, type: string) => r.conditions.find((c) => c.type === type);

describe("rollup", () => {
  it.each<[string, RollupInput, string, string, string, Partial<ReturnType<typeof rollup>["summary"]>]>([
    ["nothing reported yet", input([]), "False/RolloutInProgress", "True/RolloutInProgress", "False/AsExpected", { ready: "0/3", pending: 3 }],
    [
      "all loaded, one not applicable",
      input([e("a", "Loaded"), e("b", "Loaded"), e("c", "NotApplicable")]),
      "True/Loaded",
      "False/Complete",
      "False/AsExpected",
      { ready: "2/2", loaded: 2, notApplicable: 1, pending: 0 },
    ],
    [
      "replaced counts as covered",
      input([e("a", "Replaced"), e("b", "Loaded"), e("c", "Loaded")]),
      "True/Loaded",
      "False/Complete",
      "False/AsExpected",
      { ready: "3/3", replaced: 1 },
    ],
    [
      "an entry from the previous generation is not done",
      input([e("a", "Loaded", 0), e("b", "Loaded"), e("c", "Loaded")]),
      "False/RolloutInProgress",
      "True/RolloutInProgress",
      "False/AsExpected",
      { ready: "2/3", pending: 1 },
    ],
    [
      "failure halts",
      input([e("a", "Failed", 1, "VermagicMismatch"), e("b", "Loaded")], { halted: true }),
      "False/RolloutHalted",
      "False/RolloutHalted",
      "True/RolloutHalted",
      { failed: 1, pending: 1 },
    ],
    ["paused", input([], { spec: { state: "Loaded", rollout: { maxUnavailable: 1, paused: true, failureThreshold: 1, soakSeconds: 0 } } }), "False/Paused", "False/Paused", "False/AsExpected", {}],
    ["no targeted node", input([], { targeted: new Set() }), "False/NoTargetedNodes", "False/NoTargetedNodes", "False/AsExpected", { ready: "0/0" }],
    [
      "staged state",
      input([e("a", "Staged"), e("b", "Staged"), e("c", "Staged")], { spec: { state: "Staged", rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 } } }),
      "True/Staged",
      "False/Complete",
      "False/AsExpected",
      { staged: 3, ready: "3/3" },
    ],
    ["entries of untargeted nodes are ignored", input([e("x", "Failed")]), "False/RolloutInProgress", "True/RolloutInProgress", "False/AsExpected", { failed: 0 }],
  ])("%s", (_n, i, ready, progressing, degraded, summary) => {
    const r = rollup(i);
    const show = (t: string) => `${cond(r, t)?.status}/${cond(r, t)?.reason}`;
    expect([show("Ready"), show("Progressing"), show("Degraded")]).toEqual([ready, progressing, degraded]);
    expect(r.summary).toMatchObject(summary);
  });

  it("names the failed nodes and their reasons in Degraded", () => {
    const r = rollup(input([e("a", "Failed", 1, "VermagicMismatch"), e("b", "Stalled", 1, "TransitionStalled")]));
    expect(cond(r, "Degraded")?.message).toBe("a: VermagicMismatch; b: TransitionStalled");
  });
});

describe("mergeConditions", () => {
  const t0 = "2026-01-01T00:00:00.000Z";
  const now = new Date("2026-02-01T00:00:00Z");
  const old: Condition[] = [{ type: "Ready", status: "False", reason: "X", message: "", lastTransitionTime: t0 }];
  it("keeps lastTransitionTime when the status does not change", () => {
    expect(mergeConditions(old, [{ type: "Ready", status: "False", reason: "Y", message: "m" }], now)[0]?.lastTransitionTime).toBe(t0);
  });
  it("moves it when the status changes", () => {
    expect(mergeConditions(old, [{ type: "Ready", status: "True", reason: "Y", message: "m" }], now)[0]?.lastTransitionTime).toBe(now.toISOString());
  });
});

describe("staleEntries / unloadComplete", () => {
  const entries = [e("gone", "Loaded"), e("moved", "Unloaded"), e("moved-busy", "Loaded"), e("here", "Loaded")];
  it("removes entries of deleted nodes, and of untargeted nodes once clean", () => {
    expect(staleEntries(entries, new Set(["moved", "moved-busy", "here"]), new Set(["here"]))).toEqual(["gone", "moved"]);
  });
  it("waits for every existing node to report Unloaded", () => {
    expect(unloadComplete(entries, new Set(["moved", "here"]))).toEqual({ done: false, waitingFor: ["here"] });
    expect(unloadComplete([e("a", "Unloaded"), e("b", "NotApplicable"), e("gone", "Loaded")], new Set(["a", "b"])).done).toBe(true);
  });
});
