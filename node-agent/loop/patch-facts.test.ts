import { describe, expect, it } from "vitest";
import type { NodePhase } from "../../crds/schema.ts";
import { patchFacts, type PatchFacts } from "./patch-facts.ts";
import type { PatchView, Want } from "./plan.ts";

const loaded: Want = { kind: "loaded", module: { name: "klp_a", sha256: "a".repeat(64) } };
const view = (want: Want, admitted: boolean, phase?: NodePhase): PatchView => ({
  name: "p",
  generation: 1,
  want,
  admitted,
  soakSeconds: 0,
  entry: phase ? { nodeName: "n", phase, observedGeneration: 1 } : undefined,
});
const live = [{ name: "klp_a", enabled: true }];
const disabled = [{ name: "klp_a", enabled: false }];

describe("patchFacts", () => {
  it.each<[string, PatchView, Array<{ name: string; enabled: boolean }>, PatchFacts]>([
    ["no entry yet: Pending, nothing wanted before admission", view(loaded, false), [], { patch: "p", phase: "Pending" }],
    ["admitted and live", view(loaded, true, "Loaded"), live, { patch: "p", phase: "Loaded", wanted: { module: "klp_a", live: true } }],
    ["admitted, the entry says Loaded, the kernel has it disabled", view(loaded, true, "Loaded"), disabled, { patch: "p", phase: "Loaded", wanted: { module: "klp_a", live: false } }],
    ["admitted, failed: not live", view(loaded, true, "Failed"), [], { patch: "p", phase: "Failed", wanted: { module: "klp_a", live: false } }],
    ["replaced by a cumulative patch: its fix is live", view(loaded, true, "Replaced"), [{ name: "klp_b", enabled: true }], { patch: "p", phase: "Replaced", wanted: { module: "klp_a", live: true } }],
    ["staged only: its module is not wanted live", view({ kind: "staged", module: loaded.module }, true, "Staged"), [], { patch: "p", phase: "Staged" }],
    ["unloaded on purpose", view({ kind: "absent" }, true, "Unloaded"), [], { patch: "p", phase: "Unloaded" }],
    ["no module for this kernel", view({ kind: "notApplicable" }, true, "NotApplicable"), [], { patch: "p", phase: "NotApplicable" }],
  ])("%s", (_name, v, livepatches, expected) => {
    expect(patchFacts([v], livepatches)).toEqual([expected]);
  });
});
