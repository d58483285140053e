import { describe, expect, it } from "vitest";
import type { Condition, NodeEntry, NodePhase } from "../../crds/schema.ts";
import { mergeConditions } from "./conditions.ts";
import type { DerivedFailure, NodeReadiness } from "../rollout/settled.ts";
import { FORCE_DELETE_ANNOTATION, rollup, staleEntries, unloadComplete, type RollupInput, type UnloadInput } from "./rollup.ts";

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
    ["being deleted", input([e("a", "Unloading")], { deleting: true }), "False/Deleting", "True/Deleting", "False/AsExpected", {}],
    [
      "being deleted while paused: the unloads wait",
      input([e("a", "Loaded")], { deleting: true, spec: { state: "Loaded", rollout: { maxUnavailable: 1, paused: true, failureThreshold: 1, soakSeconds: 0 } } }),
      "False/Deleting",
      "False/Paused",
      "False/AsExpected",
      {},
    ],
    [
      "being deleted while paused with unload-immediately: not paused",
      input([e("a", "Loaded")], { deleting: true, unloadImmediately: true, spec: { state: "Loaded", rollout: { maxUnavailable: 1, paused: true, failureThreshold: 1, soakSeconds: 0 } } }),
      "False/Deleting",
      "True/Deleting",
      "False/AsExpected",
      {},
    ],
  ])("%s", (_n, i, ready, progressing, degraded, summary) => {
    const r = rollup(i);
    const show = (t: string) => `${cond(r, t)?.status}/${cond(r, t)?.reason}`;
    expect([show("Ready"), show("Progressing"), show("Degraded")]).toEqual([ready, progressing, degraded]);
    expect(r.summary).toMatchObject(summary);
  });

  describe("failures the admission decided", () => {
    const overdue = (node: string): [string, DerivedFailure] => [node, { reason: "ProgressDeadlineExceeded", message: `${node} made no progress` }];
    const gate = (node: string): [string, DerivedFailure] => [node, { reason: "NodeNotReadyDuringSoak", message: `${node} went NotReady` }];

    it("a node past its progress deadline counts as failed, and Progressing says ProgressDeadlineExceeded naming it", () => {
      const r = rollup(input([e("a", "Loading"), e("b", "Loaded")], { halted: true, derived: new Map([overdue("a")]) }));
      expect(r.summary).toMatchObject({ ready: "1/3", failed: 1, pending: 1 });
      expect(cond(r, "Progressing")).toMatchObject({
        status: "False",
        reason: "ProgressDeadlineExceeded",
        message: "a made no progress within spec.rollout.progressDeadlineSeconds (600 s); rollout halted",
      });
      expect(cond(r, "Degraded")).toMatchObject({ status: "True", reason: "RolloutHalted", message: "a: ProgressDeadlineExceeded" });
    });

    it("names at most five overdue nodes", () => {
      const names = ["a", "b", "c", "d", "e", "f", "g"];
      const r = rollup(input([], { targeted: new Set(names), derived: new Map(names.map(overdue)), spec: { state: "Loaded", rollout: { maxUnavailable: 1, paused: false, failureThreshold: 10, soakSeconds: 0, progressDeadlineSeconds: 45 } } }));
      expect(cond(r, "Progressing")?.message).toBe("a, b, c, d, e and 2 more made no progress within spec.rollout.progressDeadlineSeconds (45 s)");
      expect(cond(r, "Degraded")?.message).toMatch(/; and 2 more$/);
    });

    it("a Loaded node that failed the health gate is failed, not ready", () => {
      const r = rollup(input([e("a", "Loaded"), e("b", "Loaded"), e("c", "Loaded")], { halted: true, derived: new Map([gate("b")]) }));
      expect(r.summary).toMatchObject({ ready: "2/3", loaded: 3, failed: 1, pending: 0 });
      expect(cond(r, "Ready")?.reason).toBe("RolloutHalted");
      expect(cond(r, "Degraded")?.message).toBe("b: NodeNotReadyDuringSoak");
    });

    it("ignores failures of nodes no longer targeted", () => {
      const r = rollup(input([], { derived: new Map([gate("x")]) }));
      expect(r.summary.failed).toBe(0);
      expect(cond(r, "Degraded")?.status).toBe("False");
    });
  });

  describe("CVE posture (spec.cves)", () => {
    const withCves = (cves: string[] | undefined) => ({ state: "Loaded" as const, cves, rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 } });
    it("counts the targeted nodes where the fix is live, exposed, or out of reach, per CVE, whatever the generation", () => {
      const r = rollup(input([e("a", "Loaded", 0), e("b", "Failed"), e("c", "NotApplicable"), e("x", "Loaded")], { targeted: new Set(["a", "b", "c", "d"]), spec: withCves(["CVE-2024-1086", "CVE-2023-0002"]) }));
      expect(r.summary.cves).toEqual([
        { id: "CVE-2023-0002", fixed: 1, exposed: 2, notApplicable: 1 },
        { id: "CVE-2024-1086", fixed: 1, exposed: 2, notApplicable: 1 },
      ]);
      expect(r.summary.cveExposure).toBe("CVE-2023-0002, CVE-2024-1086 (2 exposed)");
    });
    it.each([[undefined], [[]]])("says nothing of CVEs when spec.cves is %j", (cves) => {
      const r = rollup(input([e("a", "Loaded")], { spec: withCves(cves) }));
      expect(r.summary).not.toHaveProperty("cves");
      expect(r.summary).not.toHaveProperty("cveExposure");
    });
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
  const now = new Date("2026-11-27T12:00:00Z");
  const ago = (s: number) => new Date(now.getTime() - s * 1000).toISOString();
  const ready: NodeReadiness = { ready: true, since: ago(86_400) };
  const nodes = (...names: string[]) => new Map(names.map((n) => [n, ready]));
  const unload = (es: NodeEntry[], over: Partial<UnloadInput> = {}) => unloadComplete({ entries: es, nodes: nodes(), now, graceSeconds: 900, force: false, ...over });

  it("removes entries of deleted nodes, and of untargeted nodes once clean", () => {
    expect(staleEntries(entries, new Set(["moved", "moved-busy", "here"]), new Set(["here"]))).toEqual(["gone", "moved"]);
  });
  it("waits for every existing node to report Unloaded", () => {
    expect(unload(entries, { nodes: nodes("moved", "here") })).toMatchObject({ done: false, waitingFor: ["here"] });
    expect(unload([e("a", "Unloaded"), e("b", "NotApplicable"), e("gone", "Loaded")], { nodes: nodes("a", "b") }).done).toBe(true);
  });

  it.each<[string, NodeReadiness | undefined, Partial<UnloadInput>, boolean, string | undefined, number | undefined]>([
    ["a Ready node is waited for", ready, {}, false, undefined, undefined],
    ["a gone node is not waited for", undefined, {}, true, "NodeGone", undefined],
    ["a node NotReady within the grace period is waited for, and woken at its end", { ready: false, since: ago(600) }, {}, false, undefined, 300_000],
    ["a node NotReady past the grace period is not waited for", { ready: false, since: ago(901) }, {}, true, "NodeNotReady", undefined],
    ["the grace period is the operator's setting", { ready: false, since: ago(120) }, { graceSeconds: 60 }, true, "NodeNotReady", undefined],
    ["the force-delete annotation waits for no node", ready, { force: true }, true, "Forced", undefined],
    ["a NotReady node whose time is unknown is waited for", { ready: false }, {}, false, undefined, undefined],
  ])("%s", (_name, node, over, done, why, requeueAfterMs) => {
    const r = unload([e("n1", "Loaded"), e("n2", "Unloaded")], { nodes: new Map([...(node ? [["n1", node] as const] : []), ["n2", ready]]), ...over });
    expect(r.done).toBe(done);
    expect(r.waitingFor).toEqual(done ? [] : ["n1"]);
    expect(r.leftUndone).toEqual(why ? [{ node: "n1", why }] : []);
    expect(r.requeueAfterMs).toBe(requeueAfterMs);
  });

  it("the annotation's constant is the documented one", () => {
    expect(FORCE_DELETE_ANNOTATION).toBe("livepatch.kpatch.dev/force-delete");
  });
});
