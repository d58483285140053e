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
      base({ previous: { generation: 1, admitted: ["n1"], halted: false }, entries: map(entry("n1", "Loading", 1, 10)) }),
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

describe("admit: the progress deadline", () => {
  const at = (secondsAgo: number) => new Date(now.getTime() - secondsAgo * 1000);
  const admitted1 = { previous: { generation: 1, admitted: ["n1"], halted: false } };
  type Case = [string, AdmitInput, string | undefined, number | undefined];
  it.each<Case>([
    ["Loading within the deadline: not failed, woken when it ends", base({ ...admitted1, entries: map(entry("n1", "Loading", 1, 599)) }), undefined, 1000],
    ["Loading past the deadline: failed", base({ ...admitted1, entries: map(entry("n1", "Loading", 1, 601)) }), "n1 made no progress within 600 s (Loading since 2026-11-27T11:49:59.000Z)", undefined],
    ["Staging past the deadline: failed", base({ ...admitted1, state: "Staged", entries: map(entry("n1", "Staging", 1, 601)) }), "n1 made no progress within 600 s (Staging since 2026-11-27T11:49:59.000Z)", undefined],
    ["Unloading past the deadline: failed", base({ ...admitted1, state: "Staged", entries: map(entry("n1", "Unloading", 1, 601)) }), "n1 made no progress within 600 s (Unloading since 2026-11-27T11:49:59.000Z)", undefined],
    ["the deadline is the spec's", base({ ...admitted1, rollout: { progressDeadlineSeconds: 30 }, entries: map(entry("n1", "Loading", 1, 31)) }), "n1 made no progress within 30 s (Loading since 2026-11-27T11:59:29.000Z)", undefined],
    ["no report since admission, past the deadline: failed", base({ ...admitted1, admittedAt: new Map([["n1", at(700)]]) }), "n1 made no progress within 600 s (no report since admission)", undefined],
    ["no report since admission, within the deadline: woken when it ends", base({ ...admitted1, admittedAt: new Map([["n1", at(100)]]) }), undefined, 500_000],
    ["an entry of an earlier generation counts as no report", base({ ...admitted1, generation: 1, entries: map(entry("n1", "Loaded", 0, 5000)), admittedAt: new Map([["n1", at(700)]]) }), "n1 made no progress within 600 s (no report since admission)", undefined],
    ["no report and no known admission time: not judged", base({ ...admitted1 }), undefined, undefined],
    ["done long ago: not judged", base({ ...admitted1, entries: map(entry("n1", "Loaded", 1, 5000)) }), undefined, undefined],
    ["a node not admitted: not judged", base({ entries: map(entry("n1", "Loading", 1, 5000)), rollout: { paused: true } }), undefined, undefined],
    ["a patch being deleted: not judged", base({ ...admitted1, deleting: true, entries: map(entry("n1", "Unloading", 1, 5000)) }), undefined, undefined],
  ])("%s", (_name, input, message, requeueAfterMs) => {
    const r = admit(input);
    expect(r.derived.get("n1")).toEqual(message ? { reason: "ProgressDeadlineExceeded", message } : undefined);
    expect(r.failed).toBe(message ? 1 : 0);
    expect(r.rollout.halted).toBe(message !== undefined);
    expect(r.requeueAfterMs).toBe(requeueAfterMs);
  });

  it("an overdue node under the failure threshold frees its slot", () => {
    const r = admit(base({ ...admitted1, rollout: { failureThreshold: 2 }, entries: map(entry("n1", "Loading", 1, 601)) }));
    expect(r.rollout).toEqual({ generation: 1, admitted: ["n1", "n2"], halted: false });
    expect(r.failed).toBe(1);
  });

  it("a Failed entry counts once, with the agent's reason", () => {
    const r = admit(base({ ...admitted1, entries: map(entry("n1", "Failed", 1, 5000)), admittedAt: new Map([["n1", at(5000)]]) }));
    expect(r.derived.size).toBe(0);
    expect(r.failed).toBe(1);
  });
});

describe("admit: the node health gate", () => {
  const soaking = { previous: { generation: 1, admitted: ["n1"], halted: false }, rollout: { soakSeconds: 300 } };
  const ago = (s: number) => new Date(now.getTime() - s * 1000).toISOString();
  const node = (ready: boolean, sinceSecondsAgo: number) => new Map([["n1", { ready, since: ago(sinceSecondsAgo) }]]);
  type Case = [string, AdmitInput, boolean];
  it.each<Case>([
    ["NotReady during the soak: failed", base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 100)), readiness: node(false, 50) }), true],
    ["NotReady during the soak, the soak since over: still failed", base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 1000)), readiness: node(false, 800) }), true],
    ["NotReady within the second of the load (condition times are whole seconds): failed", base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 100.4)), readiness: node(false, 101) }), true],
    ["NotReady after the soak: not failed", base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 1000)), readiness: node(false, 600) }), false],
    ["NotReady since before the load: not failed", base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 100)), readiness: node(false, 200) }), false],
    ["NotReady before its load, still Loading: not failed", base({ ...soaking, entries: map(entry("n1", "Loading", 1, 10)), readiness: node(false, 5) }), false],
    ["Ready: not failed", base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 100)), readiness: node(true, 50) }), false],
    ["no soak, no window: not failed", base({ ...soaking, rollout: { soakSeconds: 0 }, entries: map(entry("n1", "Loaded", 1, 100)), readiness: node(false, 50) }), false],
    ["an entry of an earlier generation: not failed", base({ ...soaking, generation: 2, entries: map(entry("n1", "Loaded", 1, 100)), readiness: node(false, 50) }), false],
    [
      "failed before, Ready again and past the soak: still failed (same load)",
      base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 1000)), readiness: node(true, 900), gateFailed: new Map([["n1", ago(1000)]]) }),
      true,
    ],
    [
      "failed before on another load: not failed now",
      base({ ...soaking, entries: map(entry("n1", "Loaded", 1, 1000)), readiness: node(true, 900), gateFailed: new Map([["n1", ago(2000)]]) }),
      false,
    ],
  ])("%s", (_name, input, failed) => {
    const r = admit(input);
    expect(r.derived.get("n1")?.reason).toBe(failed ? "NodeNotReadyDuringSoak" : undefined);
    expect(r.failed).toBe(failed ? 1 : 0);
    expect(r.rollout.halted).toBe(failed);
    expect(r.gateFailed.has("n1")).toBe(failed);
  });

  it("a failed node is remembered by its load, and the rollout stays halted", () => {
    const loaded = entry("n1", "Loaded", 1, 100);
    const first = admit(base({ ...soaking, entries: map(loaded), readiness: node(false, 50) }));
    expect(first.gateFailed).toEqual(new Map([["n1", loaded.lastTransitionTime]]));
    expect(first.derived.get("n1")?.message).toBe(`n1 went NotReady during its 300 s soak after loading at ${loaded.lastTransitionTime}`);
    const later = admit(base({ ...soaking, entries: map(loaded), readiness: node(true, 10), gateFailed: first.gateFailed }));
    expect(later.rollout).toEqual({ generation: 1, admitted: ["n1"], halted: true });
  });
});
