import { describe, expect, it } from "vitest";
import type { NodeEntry, NodePhase } from "../../crds/schema.ts";
import { admit, resolveMaxUnavailable, type AdmitInput } from "./admit.ts";

const now = new Date("2026-11-27T12:00:00Z");
const entry = (nodeName: string, phase: NodePhase, generation = 1, secondsAgo = 3600): NodeEntry => ({
  nodeName,
  phase,
  observedGeneration: generation,
  lastTransitionTime: new Date(now.getTime() - secondsAgo * 1000).toISOString(),
});
const nodes = ["n1", "n2", "n3", "n4"];
const base = (over: Partial<AdmitInput> & { rollout?: Partial<AdmitInput["spec"]["rollout"]>; state?: "Loaded" | "Staged" | "Unloaded" } = {}): AdmitInput => ({
  generation: 1,
  targeted: nodes,
  entries: new Map(),
  previous: undefined,
  now,
  ...over,
  spec: {
    state: over.state ?? "Loaded",
    rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0, ...over.rollout },
  },
});
const map = (...es: NodeEntry[]) => new Map(es.map((e) => [e.nodeName, e]));

describe("resolveMaxUnavailable", () => {
  it.each<[number | string, number, number]>([
    [1, 10, 1],
    [3, 10, 3],
    ["25%", 10, 2],
    ["100%", 1000, 1000],
    ["1%", 10, 1],
    ["50%", 1, 1],
  ])("%s of %i nodes is %i", (v, n, expected) => expect(resolveMaxUnavailable(v, n)).toBe(expected));
});

describe("admit", () => {
  it.each<[string, AdmitInput, string[], boolean]>([
    ["first node when nothing started", base(), ["n1"], false],
    ["two at a time", base({ rollout: { maxUnavailable: 2 } }), ["n1", "n2"], false],
    ["everyone at 100%", base({ rollout: { maxUnavailable: "100%" } }), nodes, false],
    ["nothing when paused", base({ rollout: { paused: true } }), [], false],
    [
      "keeps the slot while loading",
      base({ previous: { generation: 1, admitted: ["n1"], halted: false }, entries: map(entry("n1", "Loading")) }),
      ["n1"],
      false,
    ],
    [
      "next node once the first is Loaded",
      base({ previous: { generation: 1, admitted: ["n1"], halted: false }, entries: map(entry("n1", "Loaded")) }),
      ["n1", "n2"],
      false,
    ],
    [
      "NotApplicable nodes need no slot",
      base({ entries: map(entry("n1", "NotApplicable"), entry("n2", "NotApplicable")) }),
      ["n3"],
      false,
    ],
    [
      "a Loaded entry from an older generation still needs admission",
      base({ generation: 2, entries: map(entry("n1", "Loaded", 1)) }),
      ["n1"],
      false,
    ],
    [
      "halts at the failure threshold, keeps what was admitted",
      base({ previous: { generation: 1, admitted: ["n1"], halted: false }, entries: map(entry("n1", "Failed")) }),
      ["n1"],
      true,
    ],
    [
      "a failure below the threshold frees the slot",
      base({ rollout: { failureThreshold: 2 }, previous: { generation: 1, admitted: ["n1"], halted: false }, entries: map(entry("n1", "Stalled")) }),
      ["n1", "n2"],
      false,
    ],
    [
      "a new generation starts a new admission round",
      base({ generation: 2, previous: { generation: 1, admitted: ["n1", "n2"], halted: false } }),
      ["n1"],
      false,
    ],
    ["unloading is not paced", base({ state: "Unloaded" }), [], false],
    [
      "drops nodes that are no longer targeted",
      base({ targeted: ["n2"], previous: { generation: 1, admitted: ["n1"], halted: false } }),
      ["n2"],
      false,
    ],
  ])("%s", (_name, input, admitted, halted) => {
    const r = admit(input);
    expect(r.rollout.admitted).toEqual(admitted);
    expect(r.rollout.halted).toBe(halted);
  });

  it("a loaded node keeps its slot until it has soaked, and asks to be woken then", () => {
    const input = base({
      rollout: { soakSeconds: 60 },
      previous: { generation: 1, admitted: ["n1"], halted: false },
      entries: map(entry("n1", "Loaded", 1, 20)),
    });
    const r = admit(input);
    expect(r.rollout.admitted).toEqual(["n1"]);
    expect(r.requeueAfterMs).toBe(40_000);
    const later = admit({ ...input, entries: map(entry("n1", "Loaded", 1, 61)) });
    expect(later.rollout.admitted).toEqual(["n1", "n2"]);
  });

  it("never admits more than maxUnavailable busy nodes over a whole simulated rollout", () => {
    const entries = new Map<string, NodeEntry>();
    let previous: AdmitInput["previous"];
    const maxBusy: number[] = [];
    for (let step = 0; step < 20; step++) {
      const r = admit(base({ rollout: { maxUnavailable: 2 }, entries, previous }));
      previous = r.rollout;
      const busy = r.rollout.admitted.filter((n) => entries.get(n)?.phase !== "Loaded");
      maxBusy.push(busy.length);
      // Agents: the first busy node finishes each step.
      for (const n of busy.slice(0, 1)) entries.set(n, entry(n, "Loaded"));
    }
    expect(Math.max(...maxBusy)).toBeLessThanOrEqual(2);
    expect([...entries.keys()].sort()).toEqual(nodes);
  });
});
