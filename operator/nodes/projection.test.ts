import { describe, expect, it } from "vitest";
import { ofThisPatch, type KernelLivePatch, type NodePatchEntry } from "../../crds/schema.ts";
import { projectNode } from "./projection.ts";

/** The rollout decisions the operator holds in memory, per patch: generation 1's, with the nodes it admits. */
const decisions = new WeakMap<KernelLivePatch, { generation: number; admitted: readonly string[] }>();
/** The operator's decision for n1, as the controller answers it (undefined: none for this generation). */
const admittedN1 = (p: KernelLivePatch): boolean | undefined => {
  const d = decisions.get(p);
  return d !== undefined && d.generation === p.metadata.generation ? d.admitted.includes("n1") : undefined;
};

const patch = (name: string, o: { selector?: Record<string, string>; admitted?: string[]; generation?: number; deleting?: boolean; uid?: string } = {}): KernelLivePatch => {
  const p = {
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: {
      name,
      uid: o.uid ?? `uid-${name}`,
      generation: o.generation ?? 1,
      creationTimestamp: "2026-11-27T00:00:00Z",
      ...(o.deleting ? { deletionTimestamp: "2026-11-27T01:00:00Z" } : {}),
    },
    spec: { state: "Loaded", modules: [], rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 }, transitionTimeoutSeconds: 75, ...(o.selector ? { nodeSelector: { matchLabels: o.selector } } : {}) },
  } as unknown as KernelLivePatch;
  decisions.set(p, { generation: 1, admitted: o.admitted ?? [] });
  return p;
};

/** The node's entries as the controller's cache answers for one patch. */
const lookup = (entries: readonly NodePatchEntry[]) => (p: KernelLivePatch) => entries.find((e) => e.patch === p.metadata.name && ofThisPatch(e.patchUID, p.metadata.uid));

const entry = (p: string, phase: NodePatchEntry["phase"], patchUID?: string): NodePatchEntry => ({ patch: p, nodeName: "n1", phase, ...(patchUID ? { patchUID } : {}) });

describe("projectNode", () => {
  const base = { nodeName: "n1", labels: { pool: "a" }, globalSelector: {}, entryOf: lookup([]), admitted: admittedN1 };

  it.each([
    ["a targeting patch, not admitted", [patch("p", { selector: { pool: "a" } })], [], [["p", false]]],
    ["a targeting patch, admitted", [patch("p", { admitted: ["n1"] })], [], [["p", true]]],
    ["admission of another generation does not count", [patch("p", { admitted: ["n1"], generation: 2 })], [entry("p", "Loaded")], [["p", false]]],
    ["a new patch before its rollout is decided: not yet", [patch("p", { admitted: ["n1"], generation: 2 })], [], []],
    ["a patch for another pool, nothing on the node", [patch("p", { selector: { pool: "b" } })], [], []],
    ["a patch for another pool, still loaded here", [patch("p", { selector: { pool: "b" } })], [entry("p", "Loaded")], [["p", false]]],
    ["a patch for another pool, still loaded here, its turn to unload", [patch("p", { selector: { pool: "b" }, admitted: ["n1"] })], [entry("p", "Loaded")], [["p", true]]],
    ["a patch for another pool, unloading here", [patch("p", { selector: { pool: "b" }, admitted: ["n1"] })], [entry("p", "Unloading")], [["p", true]]],
    ["a patch for another pool, unloaded here", [patch("p", { selector: { pool: "b" } })], [entry("p", "Unloaded")], []],
    ["a loaded entry of an earlier patch of the same name", [patch("p", { selector: { pool: "b" } })], [entry("p", "Loaded", "old")], []],
    ["sorted by name", [patch("z"), patch("a")], [], [["a", false], ["z", false]]],
  ] as const)("%s", (_, patches, entries, want) => {
    const got = projectNode({ ...base, patches: [...patches], entryOf: lookup(entries) });
    expect(got.map((p) => [p.name, p.admitted])).toEqual(want);
  });

  it("respects the agents' global node selector", () => {
    expect(projectNode({ ...base, globalSelector: { pool: "b" }, patches: [patch("p")] })).toEqual([]);
  });

  it("carries uid, generation, deletion and the spec", () => {
    const [p] = projectNode({ ...base, patches: [patch("p", { deleting: true, generation: 3 })], entryOf: lookup([entry("p", "Loaded")]) });
    expect(p).toMatchObject({ name: "p", uid: "uid-p", generation: 3, deletionTimestamp: "2026-11-27T01:00:00Z", spec: { state: "Loaded" } });
  });
});
