import { describe, expect, it } from "vitest";
import type { NodeEntry } from "../../crds/schema.ts";
import { judgeDelivery, OwnWrites, type Verdict } from "./own-writes.ts";

const entry = (phase: NodeEntry["phase"], lastTransitionTime = "2026-12-03T00:00:00Z"): NodeEntry => ({ nodeName: "n1", phase, lastTransitionTime });
const loading = entry("Loading");
const loaded = entry("Loaded");
const mine = (o: { rv?: string; shown?: boolean; earlier?: NodeEntry[] } = {}) => ({ entry: loaded, resourceVersion: o.rv, earlier: o.earlier ?? [loading], shown: o.shown ?? true, inFlight: false });

describe("judgeDelivery: a delivered entry against the agent's own writes", () => {
  it.each<[string, NodeEntry | undefined, string | undefined, ReturnType<typeof mine>, Verdict]>([
    ["the object at the version the write returned", loaded, "x7", mine({ rv: "x7" }), "believed"],
    ["the last write, by content (the time aside)", entry("Loaded", "2026-12-04T00:00:00Z"), "zz", mine({ rv: "x7" }), "believed"],
    ["an earlier write of the agent: older than the last", loading, "a1", mine({ rv: "x7" }), "stale"],
    ["no entry before any write was shown: older than the writes", undefined, "a0", mine({ shown: false }), "stale"],
    ["no entry after the writes were shown: someone removed it", undefined, "b9", mine({ rv: "x7" }), "foreign"],
    ["an entry the agent never wrote", entry("Failed"), "b9", mine({ rv: "x7" }), "foreign"],
    // Versions are opaque: a bigger number says nothing.
    ["an earlier write under a bigger number", loading, "99", mine({ rv: "7" }), "stale"],
  ])("%s: %s", (_case, delivered, rv, written, verdict) => {
    expect(judgeDelivery(delivered, rv, written)).toBe(verdict);
  });
});

describe("OwnWrites", () => {
  it("while a write is in flight, an older delivery shows the last answered write, not the one in flight", () => {
    const w = new OwnWrites();
    w.writing("p", loading);
    w.written("p", loading, "r1");
    w.writing("p", loaded);
    expect(w.entryFor("p", undefined, "r0")).toEqual(loading);
    w.written("p", loaded, "r2");
    expect(w.entryFor("p", loading, "r1")).toEqual(loaded);
  });

  it("a failed write is forgotten: deliveries are believed again", () => {
    const w = new OwnWrites();
    w.writing("p", loading);
    w.failed("p");
    expect(w.entryFor("p", undefined, "r0")).toBeUndefined();
  });

  it("a removal after the watch showed the writes is believed, and the memory goes", () => {
    const w = new OwnWrites();
    w.writing("p", loaded);
    w.written("p", loaded, "r1");
    expect(w.entryFor("p", loaded, "r1")).toEqual(loaded);
    expect(w.entryFor("p", undefined, "r2")).toBeUndefined();
    expect(w.entryFor("p", loading, "r3")).toEqual(loading);
  });
});
