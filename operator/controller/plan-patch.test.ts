import { describe, expect, it } from "vitest";
import { FINALIZER, KernelLivePatch as KernelLivePatchSchema, type KernelLivePatch, type NodeEntry, type NodePhase } from "../../crds/schema.ts";
import type { NodeReadiness } from "../rollout/settled.ts";
import { FORCE_DELETE_ANNOTATION } from "../status/rollup.ts";
import { FINALIZER_AFTER_STATUS_MS, planPatch, type LastStatusWrite, type PatchObservation, type PatchPlan, type PatchPlanInput } from "./plan-patch.ts";

const NOW = new Date("2026-12-03T12:00:00.000Z");
const at = (secondsAgo: number) => new Date(NOW.getTime() - secondsAgo * 1000).toISOString();

interface PatchShape {
  uid?: string;
  finalizers?: string[];
  deleting?: boolean;
  annotations?: Record<string, string>;
  soakSeconds?: number;
  ready?: "True" | "False";
}
const patch = (o: PatchShape = {}): KernelLivePatch =>
  KernelLivePatchSchema.parse({
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: {
      name: "p",
      uid: o.uid ?? "uid-1",
      generation: 1,
      creationTimestamp: at(3600),
      finalizers: o.finalizers ?? [FINALIZER],
      ...(o.deleting ? { deletionTimestamp: at(10) } : {}),
      ...(o.annotations ? { annotations: o.annotations } : {}),
    },
    spec: {
      modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://example.com/m.ko" }],
      rollout: { maxUnavailable: 3, soakSeconds: o.soakSeconds ?? 0 },
    },
    ...(o.ready
      ? {
          status: {
            observedGeneration: 1,
            conditions: [{ type: "Ready", status: o.ready, reason: "RolloutInProgress", message: "", lastTransitionTime: at(60) }],
            rollout: { generation: 1, admittedCount: 2, halted: false },
          },
        }
      : {}),
  });

const entry = (nodeName: string, phase: NodePhase, secondsAgo = 30): NodeEntry => ({ nodeName, phase, observedGeneration: 1, moduleName: "klp", lastTransitionTime: at(secondsAgo) });
const ready: NodeReadiness = { ready: true };

/** Two Ready nodes, both targeted, with these entries. */
const seen = (entries: NodeEntry[], readiness: Record<string, NodeReadiness> = { a: ready, b: ready }): PatchObservation => ({
  entries,
  readiness: new Map(Object.entries(readiness)),
  targeted: new Set(Object.keys(readiness)),
  projectedAdmitted: new Set(["a", "b"].filter((n) => n in readiness)),
});

const input = (p: KernelLivePatch, observation: PatchObservation, lastWrite?: LastStatusWrite): PatchPlanInput => ({
  patch: p,
  lastWrite,
  memory: {},
  statusIntervalMs: 500,
  notReadyGraceSeconds: 60,
  observe: () => observation,
});

/** A write of this status long ago (no throttle), with these phases: as if it had been planned and carried out. */
const wrote = (i: PatchPlanInput, phases?: Record<string, NodePhase>): LastStatusWrite => {
  const plan = planPatch({ ...i, lastWrite: undefined }, NOW);
  if (plan.kind !== "act" || !plan.status) throw new Error("expected a status to write");
  return { uid: i.patch.metadata.uid, json: plan.status.json, at: 0, tookMs: 10, phases: phases ? new Map(Object.entries(phases)) : plan.status.phases };
};

const recent = (msAgo: number, tookMs = 10, uid = "uid-1"): LastStatusWrite => ({ uid, json: "{}", at: NOW.getTime() - msAgo, tookMs, phases: new Map() });

/** The plan as a reader checks it: what is written, which events follow, when to look again. */
function shape(plan: PatchPlan) {
  if (plan.kind === "throttled") return { throttledMs: plan.requeueAfterMs };
  return {
    status: plan.status ? plan.status.events.map((e) => `${e.type}/${e.reason}`) : "unchanged",
    finalizer: plan.finalizer ? [plan.finalizer.change, plan.finalizer.finalizers, plan.finalizer.events.map((e) => `${e.type}/${e.reason}`)] : "kept",
    requeueAfterMs: plan.requeueAfterMs,
    waitingFor: plan.waitingFor,
  };
}

const loaded = seen([entry("a", "Loaded"), entry("b", "Loaded")]);
const unloaded = seen([entry("a", "Unloaded"), entry("b", "Unloaded")]);

describe("planPatch", () => {
  // An input is built when its row runs (a row whose last write is planned first fails there, not at collection).
  it.each<[string, PatchPlanInput | (() => PatchPlanInput), ReturnType<typeof shape>]>([
    ["written 100 ms ago: wait out the 500 ms interval", input(patch(), loaded, recent(100)), { throttledMs: 400 }],
    ["the last write took 400 ms: wait twice that", input(patch(), loaded, recent(600, 400)), { throttledMs: 200 }],
    [
      "written 100 ms ago for a patch of the same name since deleted: no wait",
      input(patch({ ready: "True" }), loaded, recent(100, 10, "uid-0")),
      { status: [], finalizer: "kept", requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "the first status of a patch that is loaded everywhere says so",
      input(patch(), loaded),
      { status: ["Normal/RolloutComplete"], finalizer: "kept", requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "a new patch: the finalizer first, no status",
      input(patch({ finalizers: ["other"] }), loaded),
      { status: "unchanged", finalizer: ["add", ["other", FINALIZER], []], requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "every node loaded: the status, and RolloutComplete after it",
      input(patch({ ready: "False" }), loaded),
      { status: ["Normal/RolloutComplete"], finalizer: "kept", requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "nodes that reached Loaded since the last write are announced",
      () => {
        const i = input(patch({ ready: "True" }), loaded);
        return { ...i, lastWrite: { ...wrote(i, { a: "Loading", b: "Loading" }), json: "{}" } };
      },
      { status: ["Normal/Loaded"], finalizer: "kept", requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "the status this operator last wrote is not written again",
      () => {
        const i = input(patch(), loaded);
        return { ...i, lastWrite: wrote(i) };
      },
      { status: "unchanged", finalizer: "kept", requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "soaking: look again when the soak ends",
      input(patch({ soakSeconds: 60, ready: "True" }), seen([entry("a", "Loaded", 20), entry("b", "Loaded", 30)])),
      { status: [], finalizer: "kept", requeueAfterMs: 30_000 + 100, waitingFor: undefined },
    ],
    [
      "deleted without our finalizer: nothing to write",
      input(patch({ deleting: true, finalizers: [] }), loaded),
      { status: "unchanged", finalizer: "kept", requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "deleted, nodes still loaded: the status, waiting for them",
      input(patch({ deleting: true }), loaded),
      { status: [], finalizer: "kept", requeueAfterMs: undefined, waitingFor: ["a", "b"] },
    ],
    [
      "deleted, a node NotReady: look again when its grace period ends",
      input(patch({ deleting: true }), seen([entry("a", "Loaded"), entry("b", "Unloaded")], { a: { ready: false, since: at(20) }, b: ready })),
      { status: [], finalizer: "kept", requeueAfterMs: 40_000 + 100, waitingFor: ["a"] },
    ],
    [
      "deleted and unloaded everywhere, the last status not written yet: the status first, the finalizer soon after",
      input(patch({ deleting: true }), unloaded),
      { status: [], finalizer: "kept", requeueAfterMs: FINALIZER_AFTER_STATUS_MS, waitingFor: undefined },
    ],
    [
      "deleted and unloaded everywhere, the last status written: the finalizer goes",
      () => {
        const i = input(patch({ deleting: true, finalizers: ["other", FINALIZER] }), unloaded);
        return { ...i, lastWrite: wrote(i) };
      },
      { status: "unchanged", finalizer: ["remove", ["other"], ["Normal/Unloaded"]], requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "deleted, a node's Node gone before it unloaded: the finalizer goes, with a warning",
      () => {
        const i = input(patch({ deleting: true }), seen([entry("a", "Unloaded"), entry("b", "Loaded")], { a: ready }));
        return { ...i, lastWrite: wrote(i) };
      },
      { status: "unchanged", finalizer: ["remove", [], ["Warning/UnloadAbandoned"]], requeueAfterMs: undefined, waitingFor: undefined },
    ],
    [
      "deleted with force-delete: the finalizer goes without waiting",
      () => {
        const i = input(patch({ deleting: true, annotations: { [FORCE_DELETE_ANNOTATION]: "true" } }), loaded);
        return { ...i, lastWrite: wrote(i) };
      },
      { status: "unchanged", finalizer: ["remove", [], ["Warning/ForceDeleted"]], requeueAfterMs: undefined, waitingFor: undefined },
    ],
  ])("%s", (_name, i, want) => {
    expect(shape(planPatch(typeof i === "function" ? i() : i, NOW))).toEqual(want);
  });

  it("a throttled look does not gather the observation (it reads every node object)", () => {
    let observed = 0;
    const i = { ...input(patch(), loaded, recent(100)), observe: () => (observed++, loaded) };
    expect(planPatch(i, NOW).kind).toBe("throttled");
    expect(observed).toBe(0);
    expect(planPatch(i, new Date(NOW.getTime() + 500)).kind).toBe("act");
    expect(observed).toBe(1);
  });

  it("times come from the clock passed in: a condition that changes takes `now` as its transition time", () => {
    const plan = planPatch(input(patch({ ready: "False" }), loaded), NOW);
    expect(plan.kind === "act" && plan.status?.status.conditions?.find((c) => c.type === "Ready")).toMatchObject({ status: "True", lastTransitionTime: NOW.toISOString() });
  });

  it("what the rollout memory takes in is planned whatever is written", () => {
    const plan = planPatch(input(patch({ deleting: true, finalizers: [] }), seen([entry("a", "Loading")])), NOW);
    expect(plan.kind === "act" && plan.admission.needing).toEqual(["a"]);
  });

  describe("admission is rebuilt from the node objects (maxUnavailable 3, five nodes, a and b loading)", () => {
    const five = Object.fromEntries(["a", "b", "c", "d", "e"].map((n) => [n, ready]));
    const loading = (projected: string[], remembered?: string[]): PatchPlanInput => ({
      ...input(patch({ ready: "False" }), { ...seen([entry("a", "Loading"), entry("b", "Loading")], five), projectedAdmitted: new Set(projected) }),
      ...(remembered ? { memory: { admitted: new Set(remembered) } } : {}),
    });
    it.each<[string, PatchPlanInput, string[], number]>([
      ["just started: the nodes the projections show admitted hold their slots, one is left", loading(["a", "b"]), ["c"], 3],
      ["admitted by this operator, not projected yet: it holds its slot too", loading(["a", "b"], ["c"]), [], 3],
      ["remembered and projected alike: counted once", loading(["a", "b"], ["a", "b"]), ["c"], 3],
    ])("%s", (_what, i, newly, count) => {
      const plan = planPatch(i, NOW);
      if (plan.kind !== "act") throw new Error("expected a plan");
      expect(plan.admission.newlyAdmitted).toEqual(newly);
      expect(plan.status?.status.rollout).toEqual({ generation: 1, admittedCount: count, halted: false });
      expect(plan.admission.rollout.admitted).toHaveLength(count);
    });
  });
});
