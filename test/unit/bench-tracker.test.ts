import { describe, expect, it } from "vitest";
import { Tracker, type NodeObjectView } from "../bench/scale/tracker.ts";

const node = (name: string, rv: string, admitted: boolean, phase?: string): NodeObjectView => ({
  metadata: { name, resourceVersion: rv },
  spec: { patches: [{ name: "p", admitted }] },
  ...(phase ? { status: { entries: [{ patch: "p", phase }] } } : {}),
});

describe("the benchmark's tracker counts node objects event by event", () => {
  it("admits, loads and forgets as each object's versions arrive, without a recount", () => {
    let now = 0;
    const t = new Tracker(["p"], 2, () => now);
    t.startCounting();
    now = 1;
    t.observeNodeObject(node("a", "1", true));
    t.observeNodeObject(node("b", "2", false));
    expect(t.timeline.projectedMs).toBe(1);
    expect(t.timeline.projectedAdmittedMs).toBeUndefined();
    now = 2;
    t.observeNodeObject(node("b", "3", true));
    expect(t.timeline.projectedAdmittedMs).toBe(2);
    now = 3;
    t.observeNodeObject(node("a", "4", true, "Loaded"));
    // The same object seen again counts once, not twice.
    t.observeNodeObject(node("a", "5", true, "Loaded"));
    expect([t.loaded, t.timeline.firstLoadedMs, t.timeline.allLoadedMs]).toEqual([1, 3, undefined]);
    t.forgetNodeObject(node("a", "6", true, "Loaded"));
    expect(t.loaded).toBe(0);
    t.observeNodeObject(node("b", "7", true, "Loaded"));
    expect(t.loaded).toBe(1);
    now = 4;
    t.observeNodeObject(node("a", "8", true, "Loaded"));
    expect([t.loaded, t.timeline.allLoadedMs]).toEqual([2, 4]);
    // Versions with a changed status are the agents' writes: a's first Loaded and b's.
    expect(t.versions.agents).toBe(2);
  });
});
