import { describe, expect, it } from "vitest";
import { DIGEST_MESSAGE_CHARS, DIGEST_STALLED_TASKS, MAX_TAINT_ROWS, OTHER_TAINTS, type NodeEntry, type NodePhase } from "../../crds/schema.ts";
import { cut, nodeDigest, taintSummary } from "./node-digest.ts";

const e = (nodeName: string, phase: NodePhase, more: Partial<NodeEntry> = {}): NodeEntry => ({ nodeName, phase, ...more });
const names = (d: ReturnType<typeof nodeDigest>) => d.nodes.map((n) => n.nodeName);

describe("nodeDigest", () => {
  it.each<[string, NodeEntry[], string[], number, string[], number]>([
    ["no entries", [], [], 3, [], 0],
    ["up to the bound: every entry, by name", [e("c", "Loaded"), e("a", "Loaded"), e("b", "Failed")], [], 3, ["a", "b", "c"], 0],
    [
      "beyond it: failed, stalled, changing first; listed by name",
      [e("a", "Loaded"), e("b", "Loading"), e("c", "Stalled"), e("d", "Failed"), e("e", "Loaded")],
      [],
      3,
      ["b", "c", "d"],
      2,
    ],
    ["failed before stalled", [e("a", "Stalled"), e("b", "Stalled"), e("c", "Failed")], [], 2, ["a", "c"], 1],
    ["staging, loading and unloading alike: by name", [e("d", "Unloading"), e("c", "Staging"), e("b", "Loading"), e("a", "Loaded")], [], 2, ["b", "c"], 2],
    ["changing before admitted and still to change", [e("a", "Loaded", { observedGeneration: 0 }), e("b", "Unloading")], ["a"], 1, ["b"], 1],
    ["admitted and still to change before the rest", [e("a", "Loaded"), e("b", "Loaded", { observedGeneration: 0 }), e("c", "NotApplicable")], ["b"], 1, ["b"], 2],
    ["ties by name", [e("z", "Failed"), e("y", "Failed"), e("x", "Failed")], [], 2, ["x", "y"], 1],
  ])("%s", (_what, entries, waiting, max, want, omitted) => {
    const d = nodeDigest(entries, new Set(waiting), max);
    expect(names(d)).toEqual(want);
    expect(d.omitted).toBe(omitted);
  });

  it("cuts every listed entry's message and stalled tasks, under the bound too", () => {
    const long = e("a", "Stalled", { message: "m".repeat(4096), stalledTasks: Array.from({ length: 32 }, (_, pid) => ({ pid, comm: "worker" })) });
    const [listed] = nodeDigest([long], new Set()).nodes;
    expect(listed!.message).toHaveLength(DIGEST_MESSAGE_CHARS);
    expect(listed!.message!.endsWith("…")).toBe(true);
    expect(listed!.stalledTasks).toEqual(long.stalledTasks!.slice(0, DIGEST_STALLED_TASKS));
  });

  it.each<[string, Partial<NodeEntry>]>([
    ["no message", {}],
    ["a message at the limit", { message: "m".repeat(DIGEST_MESSAGE_CHARS) }],
    ["stalled tasks at the limit", { stalledTasks: Array.from({ length: DIGEST_STALLED_TASKS }, (_, pid) => ({ pid, comm: "c" })) }],
  ])("leaves an entry within the limits as it is: %s", (_what, more) => {
    const entry = e("a", "Stalled", more);
    expect(cut(entry)).toBe(entry);
  });
});

describe("taintSummary", () => {
  const tainted = (name: string, flags: string) => e(name, "Loaded", { taintFlags: flags, tainted: 1 });

  it.each<[string, NodeEntry[], string[], Array<{ flags: string; nodes: number }> | undefined]>([
    ["no taint anywhere", [e("a", "Loaded", { taintFlags: "" }), e("b", "Loaded")], ["a", "b"], undefined],
    ["most common first, then by flags", [tainted("a", "OK"), tainted("b", "OEK"), tainted("c", "OK"), tainted("d", "E")], ["a", "b", "c", "d"], [{ flags: "OK", nodes: 2 }, { flags: "E", nodes: 1 }, { flags: "OEK", nodes: 1 }]],
    ["untargeted nodes do not count", [tainted("a", "OK"), tainted("x", "E")], ["a"], [{ flags: "OK", nodes: 1 }]],
  ])("%s", (_what, entries, targeted, want) => {
    expect(taintSummary(entries, new Set(targeted))).toEqual(want);
  });

  it(`adds up the flag sets beyond the ${MAX_TAINT_ROWS - 1} most common in one row`, () => {
    // 20 distinct flag sets; set i on 20 - i nodes.
    const entries = Array.from({ length: 20 }, (_, i) => Array.from({ length: 20 - i }, (_, j) => tainted(`n${i}-${j}`, `F${String(i).padStart(2, "0")}`))).flat();
    const rows = taintSummary(entries, new Set(entries.map((x) => x.nodeName)))!;
    expect(rows).toHaveLength(MAX_TAINT_ROWS);
    expect(rows[0]).toEqual({ flags: "F00", nodes: 20 });
    expect(rows[MAX_TAINT_ROWS - 2]).toEqual({ flags: "F14", nodes: 6 });
    expect(rows[MAX_TAINT_ROWS - 1]).toEqual({ flags: OTHER_TAINTS, nodes: 5 + 4 + 3 + 2 + 1 });
    expect(rows.reduce((n, r) => n + r.nodes, 0)).toBe(entries.length);
  });
});
