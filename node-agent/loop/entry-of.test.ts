import { describe, expect, it } from "vitest";
import type { NodeEntry } from "../../crds/schema.ts";
import { entryOf, type EntryFacts } from "./entry-of.ts";
import type { EntryUpdate } from "./plan.ts";

const NOW = new Date("2026-12-03T08:00:00Z");
const EARLIER = "2026-12-02T08:00:00Z";
const facts: EntryFacts = {
  nodeName: "n1",
  host: { kernelRelease: "6.1.0-56-amd64", bootId: "boot-1", tainted: 45056, taintFlags: "OEK", livepatches: [{ name: "klp_fix", enabled: true, transition: false }] },
  generation: 3,
  now: NOW,
};

describe("entryOf", () => {
  it.each<[string, EntryUpdate, NodeEntry | undefined, Partial<NodeEntry>]>([
    [
      "a module's entry carries what the kernel says of it and the host's facts",
      { phase: "Loaded", moduleName: "klp_fix", sha256: "a".repeat(64) },
      undefined,
      { nodeName: "n1", phase: "Loaded", kernelRelease: "6.1.0-56-amd64", bootID: "boot-1", moduleName: "klp_fix", enabled: true, transition: false, tainted: 45056, taintFlags: "OEK", observedGeneration: 3, lastTransitionTime: NOW.toISOString() },
    ],
    ["a module not in the kernel: not enabled, not in transition", { phase: "Staged", moduleName: "klp_other" }, undefined, { enabled: false, transition: false }],
    ["the same phase keeps the time it changed", { phase: "Loaded", moduleName: "klp_fix" }, { nodeName: "n1", phase: "Loaded", lastTransitionTime: EARLIER }, { lastTransitionTime: EARLIER }],
    ["another phase takes the clock's time", { phase: "Unloading", moduleName: "klp_fix" }, { nodeName: "n1", phase: "Loaded", lastTransitionTime: EARLIER }, { lastTransitionTime: NOW.toISOString() }],
  ])("%s", (_case, update, current, expected) => {
    expect(entryOf(update, current, facts)).toMatchObject(expected);
  });

  it("an entry without a module says nothing of enabled or transition, and has no undefined fields", () => {
    const e = entryOf({ phase: "NotApplicable", reason: "NoModuleForKernel", message: "none" }, undefined, facts);
    expect(Object.keys(e).sort()).toEqual(["bootID", "kernelRelease", "lastTransitionTime", "message", "nodeName", "observedGeneration", "phase", "reason", "taintFlags", "tainted"]);
  });
});
