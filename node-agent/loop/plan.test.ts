import { describe, expect, it } from "vitest";
import type { NodeEntry } from "../../crds/schema.ts";
import { decide, type HostView, type PatchView } from "./plan.ts";

const v1 = { name: "klp_v1", sha256: "1".repeat(64), buildId: "b1" };
const v2 = { name: "klp_v2", sha256: "2".repeat(64), buildId: "b2" };
const BUILD_IDS: Record<string, string> = { klp_v1: "b1", klp_v2: "b2" };
const host = (h: Partial<HostView> = {}): HostView => ({ bootId: "boot-1", now: Date.parse("2026-12-03T08:00:00Z"), livepatches: [], modules: [], installed: [], blockers: [], ...h });
const live = (name: string, buildId = BUILD_IDS[name]) => ({ name, enabled: true, transition: false, buildId });
const entry = (e: Partial<NodeEntry>): NodeEntry => ({ nodeName: "n1", phase: "Loaded", observedGeneration: 1, ...e });
const patch = (p: Partial<PatchView>): PatchView => ({
  name: "p1",
  generation: 1,
  want: { kind: "loaded", module: v1 },
  admitted: true,
  entry: undefined,
  soakSeconds: 0,
  ...p,
});
const summary = (d: ReturnType<typeof decide>): string => {
  switch (d.kind) {
    case "none":
      return "none";
    case "report":
      return `report ${d.entry.phase}${d.entry.replacedBy ? ` by ${d.entry.replacedBy}` : ""}${d.entry.reason && d.entry.phase === "Failed" ? ` ${d.entry.reason}` : ""}`;
    case "wait":
      return `wait ${d.entry.phase}`;
    case "act":
      return `${d.action.op} ${"module" in d.action ? d.action.module.name : d.action.name}${d.before ? ` after ${d.before.phase}` : ""}`;
  }
};

describe("decide", () => {
  const p2Live = patch({ name: "p2", want: { kind: "loaded", module: v2 } });
  it.each<[string, PatchView, HostView, PatchView[], string]>([
    ["fresh node, admitted: stage and load, saying Loading first", patch({}), host(), [], "installAndLoad klp_v1 after Loading"],
    ["fresh node, not admitted: nothing (no Pending write)", patch({ admitted: false }), host(), [], "none"],
    ["loaded and staged: report", patch({}), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "report Loaded"],
    ["loaded but not staged (e.g. by hand): stage without a status write", patch({}), host({ livepatches: [live("klp_v1")] }), [], "install klp_v1"],
    ["not admitted but already live (restart): report Loaded", patch({ admitted: false }), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "report Loaded"],
    ["in transition: wait", patch({}), host({ livepatches: [{ name: "klp_v1", enabled: true, transition: true, buildId: "b1" }] }), [], "wait Loading"],
    // The status never lies: the live build is compared with the verified file's.
    [
      "another build of this name live, our entry names the earlier build: unload it first",
      patch({ generation: 2, want: { kind: "loaded", module: { ...v1, sha256: "3".repeat(64), buildId: "b3" } }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v1")], installed: [v1] }),
      [],
      "unload klp_v1 after Unloading",
    ],
    ["another build of this name live that the agent did not load: Failed, left alone", patch({}), host({ livepatches: [live("klp_v1", "b9")] }), [], "report Failed ForeignLivepatch"],
    ["a live module of this name without a build-id in sysfs: Failed, never claimed", patch({}), host({ livepatches: [{ name: "klp_v1", enabled: true, transition: false }] }), [], "report Failed ForeignLivepatch"],
    ["another build mid-transition that the agent did not load: Failed at once", patch({}), host({ livepatches: [{ name: "klp_v1", enabled: true, transition: true, buildId: "b9" }] }), [], "report Failed ForeignLivepatch"],
    // A bad patch cannot hurt a node twice.
    [
      "rebooted while Loading, module not live: Failed, not loaded again",
      patch({ entry: entry({ phase: "Loading", moduleName: "klp_v1", sha256: v1.sha256, bootID: "boot-0" }) }),
      host(),
      [],
      "report Failed RebootDuringLoad",
    ],
    [
      "rebooted while Loaded in its soak (not staged for boot): Failed, not loaded again",
      patch({ entry: entry({ phase: "Loaded", moduleName: "klp_v1", sha256: v1.sha256, bootID: "boot-0" }) }),
      host(),
      [],
      "report Failed RebootDuringSoak",
    ],
    [
      "rebooted after the soak (staged for boot): loaded again",
      patch({ entry: entry({ phase: "Loaded", moduleName: "klp_v1", sha256: v1.sha256, bootID: "boot-0" }) }),
      host({ installed: [v1] }),
      [],
      "installAndLoad klp_v1 after Loading",
    ],
    [
      "live and verified, soak not over: Loaded, not staged for boot yet",
      patch({ soakSeconds: 600, entry: entry({ phase: "Loaded", moduleName: "klp_v1", sha256: v1.sha256, bootID: "boot-1", lastTransitionTime: "2026-12-03T07:55:00Z" }) }),
      host({ livepatches: [live("klp_v1")] }),
      [],
      "wait Loaded",
    ],
    [
      "live and verified, soak over: staged for boot",
      patch({ soakSeconds: 600, entry: entry({ phase: "Loaded", moduleName: "klp_v1", sha256: v1.sha256, bootID: "boot-1", lastTransitionTime: "2026-12-03T07:45:00Z" }) }),
      host({ livepatches: [live("klp_v1")] }),
      [],
      "install klp_v1",
    ],
    // Paced unloads: taking a module off the kernel waits for admission like a load.
    ["Unloaded wanted, not admitted: nothing yet", patch({ admitted: false, want: { kind: "absent" }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "none"],
    ["Unloaded wanted, admitted: unload", patch({ want: { kind: "absent" }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "unload klp_v1 after Unloading"],
    ["release dropped from spec.modules, not admitted: nothing yet", patch({ admitted: false, want: { kind: "notApplicable" }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "none"],
    ["Staged wanted while live, not admitted: nothing yet", patch({ admitted: false, want: { kind: "staged", module: v1 }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "none"],
    // Bounded retries: a stalled unload is retried as Stalled, not flipped back to Unloading.
    [
      "Unloaded wanted, the last unload stalled: try again without an Unloading write",
      patch({ want: { kind: "absent" }, entry: entry({ phase: "Stalled", moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v1")], installed: [v1] }),
      [],
      "unload klp_v1",
    ],
    [
      "a failure is final for the generation",
      patch({ entry: entry({ phase: "Failed", sha256: v1.sha256, reason: "VermagicMismatch" }) }),
      host(),
      [],
      "report Failed VermagicMismatch",
    ],
    ["a failure of an older generation is retried", patch({ generation: 2, entry: entry({ phase: "Failed", sha256: v1.sha256 }) }), host(), [], "installAndLoad klp_v1 after Loading"],
    ["a preflight blocker fails the node instead of loading", patch({}), host({ blockers: [{ reason: "LivepatchUnsupported", message: "x" }] }), [], "report Failed LivepatchUnsupported"],
    [
      "the spec moved to v2: load v2 first",
      patch({ want: { kind: "loaded", module: v2 }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v1")], installed: [v1] }),
      [],
      "installAndLoad klp_v2 after Loading",
    ],
    [
      "v2 live: then retire v1's leftover",
      patch({ want: { kind: "loaded", module: v2 }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v2")], modules: [{ name: "klp_v1", leftover: true }], installed: [v1, v2] }),
      [],
      "removeLeftover klp_v1",
    ],
    [
      "v2 live, v1 out of the kernel: uninstall v1's file",
      patch({ want: { kind: "loaded", module: v2 }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v2")], installed: [v1, v2] }),
      [],
      "uninstall klp_v1",
    ],
    [
      "after the Loading(v2) write (or a restart): the entry's previousModuleName still retires v1",
      patch({ want: { kind: "loaded", module: v2 }, entry: entry({ phase: "Loading", moduleName: "klp_v2", sha256: v2.sha256, previousModuleName: "klp_v1" }) }),
      host({ livepatches: [live("klp_v2")], modules: [{ name: "klp_v1", leftover: true }], installed: [v1, v2] }),
      [],
      "removeLeftover klp_v1",
    ],
    [
      "previousModuleName, v1 out of the kernel: uninstall its file",
      patch({ want: { kind: "loaded", module: v2 }, entry: entry({ phase: "Loading", moduleName: "klp_v2", sha256: v2.sha256, previousModuleName: "klp_v1" }) }),
      host({ livepatches: [live("klp_v2")], installed: [v1, v2] }),
      [],
      "uninstall klp_v1",
    ],
    [
      "previousModuleName, v1 gone: report Loaded",
      patch({ want: { kind: "loaded", module: v2 }, entry: entry({ phase: "Loading", moduleName: "klp_v2", sha256: v2.sha256, previousModuleName: "klp_v1" }) }),
      host({ livepatches: [live("klp_v2")], installed: [v2] }),
      [],
      "report Loaded",
    ],
    [
      "v2 refused while v1 stays live, then the patch deleted: v2's nothing, then v1 unloaded",
      patch({ want: { kind: "absent" }, entry: entry({ phase: "Failed", moduleName: "klp_v2", sha256: v2.sha256, previousModuleName: "klp_v1" }) }),
      host({ livepatches: [live("klp_v1")], installed: [v1] }),
      [],
      "unload klp_v1 after Unloading",
    ],
    [
      "deleted while unloading the previous module: its file next, no second Unloading write",
      patch({ want: { kind: "absent" }, entry: entry({ phase: "Unloading", moduleName: "klp_v2", sha256: v2.sha256, previousModuleName: "klp_v1" }) }),
      host({ installed: [v1] }),
      [],
      "uninstall klp_v1",
    ],
    [
      "not applicable any more with the previous module still staged: uninstall it",
      patch({ want: { kind: "notApplicable" }, entry: entry({ phase: "Failed", moduleName: "klp_v2", previousModuleName: "klp_v1" }) }),
      host({ installed: [v1] }),
      [],
      "uninstall klp_v1",
    ],
    [
      "replaced by another patch (recorded): clean the leftover",
      patch({ entry: entry({ phase: "Replaced", replacedBy: "p2", moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v2")], modules: [{ name: "klp_v1", leftover: true }], installed: [v1, v2] }),
      [p2Live],
      "removeLeftover klp_v1 after Replaced",
    ],
    [
      "replaced and clean: report Replaced, never load back",
      patch({ entry: entry({ phase: "Replaced", replacedBy: "p2", moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v2")], installed: [v2] }),
      [p2Live],
      "report Replaced by p2",
    ],
    [
      "replaced, inferred from a leftover after a crash",
      patch({ entry: entry({ phase: "Loaded", moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host({ livepatches: [live("klp_v2")], modules: [{ name: "klp_v1", leftover: true }] }),
      [p2Live],
      "removeLeftover klp_v1 after Replaced",
    ],
    [
      "the replacing patch went away: load again",
      patch({ entry: entry({ phase: "Replaced", replacedBy: "p2", moduleName: "klp_v1", sha256: v1.sha256 }) }),
      host(),
      [patch({ name: "p2", want: { kind: "absent" } })],
      "installAndLoad klp_v1 after Loading",
    ],
    ["staged: install only", patch({ want: { kind: "staged", module: v1 } }), host(), [], "install klp_v1 after Staging"],
    ["staged and present: report", patch({ want: { kind: "staged", module: v1 } }), host({ installed: [v1] }), [], "report Staged"],
    ["staged but live: unload", patch({ want: { kind: "staged", module: v1 } }), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "unload klp_v1 after Unloading"],
    ["absent without an entry: nothing", patch({ want: { kind: "absent" } }), host(), [], "none"],
    ["absent and live: unload", patch({ want: { kind: "absent" }, entry: entry({ moduleName: "klp_v1" }) }), host({ livepatches: [live("klp_v1")], installed: [v1] }), [], "unload klp_v1 after Unloading"],
    ["absent, unloaded: uninstall", patch({ want: { kind: "absent" }, entry: entry({ moduleName: "klp_v1" }) }), host({ installed: [v1] }), [], "uninstall klp_v1 after Unloading"],
    ["absent, clean: report Unloaded", patch({ want: { kind: "absent" }, entry: entry({ moduleName: "klp_v1" }) }), host(), [], "report Unloaded"],
    ["not applicable", patch({ want: { kind: "notApplicable" } }), host(), [], "report NotApplicable"],
    [
      "became not applicable with the old module live: unload first",
      patch({ want: { kind: "notApplicable" }, entry: entry({ moduleName: "klp_v1" }) }),
      host({ livepatches: [live("klp_v1")] }),
      [],
      "unload klp_v1 after Unloading",
    ],
  ])("%s → %s", (_name, p, h, others, expected) => {
    expect(summary(decide(p, h, others))).toBe(expected);
  });

  it("the Loading write for v2 names v1 as the module to retire; the final Loaded write drops it", () => {
    const moving = patch({ want: { kind: "loaded", module: v2 }, entry: entry({ moduleName: "klp_v1", sha256: v1.sha256 }) });
    const d = decide(moving, host({ livepatches: [live("klp_v1")], installed: [v1] }), []);
    expect(d).toMatchObject({ kind: "act", before: { phase: "Loading", moduleName: "klp_v2", previousModuleName: "klp_v1" } });
    const done = patch({ want: { kind: "loaded", module: v2 }, entry: entry({ phase: "Loading", moduleName: "klp_v2", previousModuleName: "klp_v1" }) });
    const r = decide(done, host({ livepatches: [live("klp_v2")], installed: [v2] }), []);
    expect(r.kind === "report" && r.entry.previousModuleName).toBeUndefined();
  });
});
