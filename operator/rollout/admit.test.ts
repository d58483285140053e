import { describe, expect, it } from "vitest";
import type { NodeEntry, NodePhase } from "../../crds/schema.ts";
import { admit, resolveMaxUnavailable, UNLOAD_IMMEDIATELY_ANNOTATION, type AdmitInput } from "./admit.ts";

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
    [
      "a patch being deleted: an unload past the deadline too (it must not keep a slot others wait for)",
      base({ ...admitted1, deletion: { waitingFor: ["n1"], immediately: false }, entries: map(entry("n1", "Unloading", 1, 601)) }),
      "n1 made no progress within 600 s (Unloading since 2026-11-27T11:49:59.000Z)",
      undefined,
    ],
  ])("%s", (_name, input, message, requeueAfterMs) => {
    const r = admit(input);
    expect(r.derived.get("n1")).toEqual(message ? { reason: "ProgressDeadlineExceeded", message } : undefined);
    expect(r.failed).toBe(message ? 1 : 0);
    expect(r.rollout.halted).toBe(message !== undefined && input.deletion === undefined);
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

describe("admit: unloads are paced like loads", () => {
  const gen2 = (admitted: string[]) => ({ generation: 2, previous: { generation: 2, admitted, halted: false } });
  const allLoaded = (generation = 1) => [entry("n1", "Loaded", generation), entry("n2", "Loaded", generation), entry("n3", "Loaded", generation), entry("n4", "Loaded", generation)];
  const deleting = (waitingFor: string[], immediately = false) => ({ deletion: { waitingFor, immediately } });
  const entriesWith = (...es: NodeEntry[]) => {
    const m = map(...allLoaded());
    for (const e of es) m.set(e.nodeName, e);
    return m;
  };
  type Case = [string, AdmitInput, string[], boolean?];
  it.each<Case>([
    // 1. state: Unloaded (a new generation)
    ["Unloaded: the nodes holding the patch, maxUnavailable at a time", base({ generation: 2, state: "Unloaded", entries: map(...allLoaded()) }), ["n1"]],
    ["Unloaded: two at a time", base({ generation: 2, state: "Unloaded", rollout: { maxUnavailable: 2 }, entries: map(...allLoaded()) }), ["n1", "n2"]],
    ["Unloaded: an Unloading node keeps its slot", base({ ...gen2(["n1"]), state: "Unloaded", entries: entriesWith(entry("n1", "Unloading", 2, 10)) }), ["n1"]],
    ["Unloaded: the next node once the first says Unloaded", base({ ...gen2(["n1"]), state: "Unloaded", entries: entriesWith(entry("n1", "Unloaded", 2)) }), ["n1", "n2"]],
    ["Unloaded: a node without an entry holds nothing and needs no turn", base({ generation: 2, state: "Unloaded", entries: map(entry("n3", "Loaded"), entry("n4", "Loaded")) }), ["n3"]],
    ["Unloaded: a node already Unloaded for this generation needs no turn", base({ generation: 2, state: "Unloaded", entries: entriesWith(entry("n1", "Unloaded", 2)) }), ["n2"]],
    ["Unloaded: an entry of an earlier generation gets its turn (conservatively)", base({ generation: 2, state: "Unloaded", entries: map(entry("n1", "Unloaded", 1), entry("n2", "Loaded")) }), ["n1"]],
    ["Unloaded: paused stops new admissions", base({ generation: 2, state: "Unloaded", rollout: { paused: true }, entries: map(...allLoaded()) }), []],
    [
      "Unloaded: a Stalled unload frees its slot and counts as a failure, but never halts the way back",
      base({ ...gen2(["n1"]), state: "Unloaded", entries: entriesWith(entry("n1", "Stalled", 2)) }),
      ["n1", "n2"],
    ],
    ["Unloaded: an unload already under way goes first", base({ generation: 2, state: "Unloaded", entries: entriesWith(entry("n3", "Unloading", 1, 5)) }), ["n3"]],
    // 2. a node that leaves the selector while it holds the patch
    [
      "left the selector: admitted to unload only when there is capacity",
      base({ targeted: ["n2", "n3"], previous: { generation: 1, admitted: ["n2"], halted: false }, entries: map(entry("n1", "Loaded"), entry("n2", "Loading", 1, 10)) }),
      ["n2"],
    ],
    [
      "left the selector: admitted to unload once there is",
      base({ targeted: ["n2", "n3"], previous: { generation: 1, admitted: ["n2"], halted: false }, entries: map(entry("n1", "Loaded"), entry("n2", "Loaded")) }),
      ["n1", "n2"],
    ],
    ["left the selector: not while paused", base({ targeted: ["n2"], rollout: { paused: true }, entries: map(entry("n1", "Loaded"), entry("n2", "Loaded")) }), []],
    [
      "left the selector: unloaded even when the rollout is halted (its loads are)",
      base({ targeted: ["n2", "n3"], previous: { generation: 1, admitted: ["n2"], halted: true }, entries: map(entry("n1", "Loaded"), entry("n2", "Failed")) }),
      ["n1", "n2"],
      true,
    ],
    ["left the selector: a Failed entry may hold something too", base({ targeted: ["n2"], entries: map(entry("n1", "Failed"), entry("n2", "Loaded")) }), ["n1"]],
    [
      "left the selector: done once Unloaded (its admission goes)",
      base({ targeted: ["n2"], previous: { generation: 1, admitted: ["n1", "n2"], halted: false }, entries: map(entry("n1", "Unloaded"), entry("n2", "Loaded")) }),
      ["n2"],
    ],
    ["left the selector: a clean entry needs no turn", base({ targeted: ["n3"], entries: map(entry("n1", "NotApplicable"), entry("n2", "Pending"), entry("n3", "Loaded")) }), []],
    [
      "left the selector: a state Unloaded patch unloads it in turn with the targeted nodes",
      base({ generation: 2, state: "Unloaded", targeted: ["n2"], entries: map(entry("n1", "Loaded", 1), entry("n2", "Loaded", 1)) }),
      ["n1"],
    ],
    // 3. a kernel release dropped from spec.modules (a new generation)
    ["release dropped: the stale entries' nodes get their turn", base({ generation: 2, entries: map(...allLoaded()) }), ["n1"]],
    ["release dropped: unloading keeps the slot", base({ ...gen2(["n1"]), entries: entriesWith(entry("n1", "Unloading", 2, 10)) }), ["n1"]],
    ["release dropped: NotApplicable for the new generation frees it", base({ ...gen2(["n1"]), entries: entriesWith(entry("n1", "NotApplicable", 2)) }), ["n1", "n2"]],
    ["release dropped: NotApplicable of the old generation is not done yet", base({ ...gen2(["n1"]), entries: entriesWith(entry("n1", "NotApplicable", 1)) }), ["n1"]],
    // 4. deletion
    ["deleted: the nodes the finalizer waits for, maxUnavailable at a time", base({ generation: 2, ...deleting(nodes), entries: map(...allLoaded()) }), ["n1"]],
    [
      "deleted: the next node once the first says Unloaded",
      base({ ...gen2(["n1"]), ...deleting(["n2", "n3", "n4"]), entries: entriesWith(entry("n1", "Unloaded", 2)) }),
      ["n1", "n2"],
    ],
    ["deleted: an Unloading node keeps its slot", base({ ...gen2(["n1"]), ...deleting(nodes), entries: entriesWith(entry("n1", "Unloading", 2, 10)) }), ["n1"]],
    ["deleted, unload-immediately: every node at once", base({ generation: 2, ...deleting(nodes, true), entries: map(...allLoaded()) }), nodes],
    ["deleted, unload-immediately: paused or not", base({ generation: 2, rollout: { paused: true }, ...deleting(nodes, true), entries: map(...allLoaded()) }), nodes],
    ["deleted: paused holds a paced deletion", base({ generation: 2, rollout: { paused: true }, ...deleting(nodes), entries: map(...allLoaded()) }), []],
    [
      "deleted: a node the finalizer no longer waits for (gone, NotReady past the grace) frees its slot",
      base({ ...gen2(["n1"]), ...deleting(["n2", "n3", "n4"]), entries: map(...allLoaded()) }),
      ["n1", "n2"],
    ],
    ["deleted: a node no longer targeted is waited for and admitted too", base({ generation: 2, targeted: [], ...deleting(["n3"]), entries: map(entry("n3", "Loaded")) }), ["n3"]],
    ["deleted: a Stalled unload frees its slot and halts nothing", base({ ...gen2(["n1"]), ...deleting(nodes), entries: entriesWith(entry("n1", "Stalled", 2)) }), ["n1", "n2"]],
    // 5. monotonic within a generation
    [
      "an admitted unloading node stays admitted although more than maxUnavailable are",
      base({ ...gen2(["n1", "n2"]), state: "Unloaded", entries: entriesWith(entry("n1", "Unloading", 2, 5), entry("n2", "Unloading", 2, 5)) }),
      ["n1", "n2"],
    ],
    [
      "a node that leaves the selector in the middle of a load keeps its admission, to unload (though the slots are taken)",
      base({ targeted: ["n2"], previous: { generation: 1, admitted: ["n1", "n2"], halted: false }, entries: map(entry("n1", "Loading", 1, 5), entry("n2", "Loading", 1, 5)) }),
      ["n1", "n2"],
    ],
    [
      "deleted: an admitted node no longer targeted stays admitted while the finalizer waits for it (paused since)",
      base({ ...gen2(["n2"]), targeted: [], rollout: { paused: true }, ...deleting(nodes), entries: entriesWith(entry("n2", "Unloading", 2, 5)) }),
      ["n2"],
    ],
  ])("%s", (_name, input, admitted, halted = false) => {
    const r = admit(input);
    expect(r.rollout.admitted).toEqual(admitted);
    expect(r.rollout.halted).toBe(halted);
  });

  it("a Stalled unload counts as a failure without halting anything", () => {
    const r = admit(base({ ...gen2(["n1"]), state: "Unloaded", entries: entriesWith(entry("n1", "Stalled", 2)) }));
    expect(r.failed).toBe(1);
    expect(r.rollout.halted).toBe(false);
  });

  it("an unload that makes no progress fails on its deadline and frees its slot", () => {
    const r = admit(base({ ...gen2(["n1"]), state: "Unloaded", entries: entriesWith(entry("n1", "Unloading", 2, 601)) }));
    expect(r.derived.get("n1")?.reason).toBe("ProgressDeadlineExceeded");
    expect(r.rollout.admitted).toEqual(["n1", "n2"]);
  });

  it.each(["state Unloaded", "a deletion", "nodes leaving the selector"])("never more than maxUnavailable nodes unloading over a whole simulated unload: %s", (what) => {
    const entries = map(...allLoaded(1));
    let previous: AdmitInput["previous"];
    const generation = what === "nodes leaving the selector" ? 1 : 2;
    const maxBusy: number[] = [];
    for (let step = 0; step < 20; step++) {
      const waitingFor = nodes.filter((n) => entries.get(n)?.phase !== "Unloaded");
      const r = admit(
        base({
          generation,
          entries,
          previous,
          rollout: { maxUnavailable: 2 },
          ...(what === "state Unloaded" ? { state: "Unloaded" as const } : {}),
          ...(what === "a deletion" ? deleting(waitingFor) : {}),
          ...(what === "nodes leaving the selector" ? { targeted: [] } : {}),
        }),
      );
      previous = r.rollout;
      // Agents: an admitted node starts unloading; one unloading node finishes each step.
      const unloading = nodes.filter((n) => entries.get(n)?.phase === "Unloading");
      for (const n of unloading.slice(0, 1)) entries.set(n, entry(n, "Unloaded", generation));
      for (const n of r.rollout.admitted) if (entries.get(n)?.phase === "Loaded") entries.set(n, entry(n, "Unloading", generation, 1));
      maxBusy.push(nodes.filter((n) => entries.get(n)?.phase === "Unloading").length);
    }
    expect(Math.max(...maxBusy)).toBe(2);
    expect(nodes.map((n) => entries.get(n)?.phase)).toEqual(["Unloaded", "Unloaded", "Unloaded", "Unloaded"]);
  });

  it("the annotation's constant is the documented one", () => {
    expect(UNLOAD_IMMEDIATELY_ANNOTATION).toBe("livepatch.kpatch.dev/unload-immediately");
  });
});
