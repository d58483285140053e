import { describe, expect, it } from "vitest";
import type { NodeEntry } from "../../crds/schema.ts";
import { fetchedView, heldView, sourceKey, viewOf, type KnownModule, type ViewInput, type ViewStep } from "./patch-view.ts";
import type { ProjectedPatch } from "./projected-patch.ts";

const RELEASE = "6.1.0-56-amd64";
const SHA = "1".repeat(64);
const NOW = Date.parse("2026-12-03T08:00:00Z");

const projected = (o: { spec?: Partial<ProjectedPatch["patch"]["spec"]>; admitted?: boolean; deleting?: boolean; entry?: Partial<NodeEntry> } = {}): ProjectedPatch => ({
  patch: {
    name: "p1",
    uid: "u1",
    generation: 2,
    creationTimestamp: "2026-12-01T00:00:00Z",
    ...(o.deleting ? { deletionTimestamp: "2026-12-02T00:00:00Z" } : {}),
    admitted: o.admitted ?? true,
    spec: {
      state: "Loaded",
      modules: [{ kernelRelease: RELEASE, sha256: SHA, url: "https://x.example/fix.ko", moduleName: "klp-fix" }],
      rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 30 },
      transitionTimeoutSeconds: 75,
      ...o.spec,
    },
  },
  ...(o.entry ? { entry: { nodeName: "n1", phase: "Loaded", observedGeneration: 2, ...o.entry } } : {}),
});

const input = (o: { host?: Partial<ViewInput["host"]>; due?: number; known?: KnownModule } = {}): ViewInput => ({
  nodeName: "n1",
  labels: { role: "worker" },
  now: NOW,
  host: { kernelRelease: RELEASE, livepatches: [], installed: [], ...o.host },
  known: () => o.known,
  dueInMs: () => o.due ?? 0,
});

/** One line per answer: what the decision will want, or which file must be read. */
function summary(step: ViewStep): string {
  if (step.kind === "fetch") return `fetch ${step.module.sha256.slice(0, 4)}`;
  const { want, admitted } = step.view;
  const what = "module" in want ? `${want.kind} ${want.module.name}${want.module.buildId ? ` ${want.module.buildId}` : ""}` : want.kind;
  return admitted ? what : `${what} (held)`;
}

describe("viewOf", () => {
  it.each<[string, ProjectedPatch, ViewInput, string]>([
    ["a patch being deleted: absent", projected({ deleting: true }), input(), "absent"],
    ["Unloaded: absent", projected({ spec: { state: "Unloaded" } }), input(), "absent"],
    ["a node its selector no longer targets: absent", projected({ spec: { nodeSelector: { matchLabels: { role: "db" } } } }), input(), "absent"],
    ["no module for the node's kernel: notApplicable", projected(), input({ host: { kernelRelease: "5.10.0-1-amd64" } }), "notApplicable"],
    ["a file read before: its name and build", projected(), input({ known: { name: "klp_fix", buildId: "b1" } }), "loaded klp_fix b1"],
    ["Staged: staged", projected({ spec: { state: "Staged" } }), input({ known: { name: "klp_fix", buildId: "b1" } }), "staged klp_fix b1"],
    ["the name from its own entry for this digest, nothing live: no read", projected({ entry: { moduleName: "klp_fix_old", sha256: SHA } }), input(), "loaded klp_fix_old"],
    [
      "a copy staged for the running kernel: its name and build",
      projected(),
      input({ host: { installed: [{ name: "klp_staged", sha256: SHA, running: true, buildId: "b7" }] } }),
      "loaded klp_staged b7",
    ],
    ["a copy staged for another kernel does not count", projected({ admitted: false }), input({ host: { installed: [{ name: "klp_staged", sha256: SHA, running: false, buildId: "b7" }] } }), "loaded klp_fix (held)"],
    ["unknown and admitted: read the file", projected(), input(), "fetch 1111"],
    ["unknown, not admitted: the name the spec gives, nothing read", projected({ admitted: false }), input(), "loaded klp_fix (held)"],
    [
      "unknown, no moduleName: a name from the digest",
      projected({ admitted: false, spec: { modules: [{ kernelRelease: RELEASE, sha256: SHA, url: "https://x.example/fix.ko" }] } }),
      input(),
      "loaded sha256-111111111111 (held)",
    ],
    ["failed for this generation and digest: final, nothing read", projected({ entry: { phase: "Failed", sha256: SHA } }), input(), "loaded klp_fix"],
    ["a source that failed before, not due yet: held", projected(), input({ due: 5000 }), "loaded klp_fix (held)"],
    [
      "a livepatch of the known name is live: its build must be read, even before admission",
      projected({ admitted: false, entry: { moduleName: "klp_fix", sha256: SHA } }),
      input({ host: { livepatches: [{ name: "klp_fix" }] } }),
      "fetch 1111",
    ],
  ])("%s", (_case, p, i, expected) => {
    expect(summary(viewOf(p, i))).toBe(expected);
  });

  it("a file read: the module as verified; a file refused or unreachable: held", () => {
    const step = viewOf(projected(), input());
    if (step.kind !== "fetch") throw new Error("expected a fetch");
    expect(step.sourceKey).toBe(sourceKey(projected(), SHA));
    expect(fetchedView(step, { name: "klp_fix", buildId: "b1" })).toMatchObject({ admitted: true, want: { kind: "loaded", module: { name: "klp_fix", sha256: SHA, buildId: "b1" } } });
    expect(heldView(step)).toMatchObject({ admitted: false, want: { kind: "loaded", module: { name: "klp_fix" } } });
  });

  it("the view carries what the decision needs of the patch: generation, entry, soak", () => {
    const step = viewOf(projected({ entry: { moduleName: "klp_fix", sha256: SHA } }), input());
    expect(step.kind === "view" && step.view).toMatchObject({ name: "p1", generation: 2, soakSeconds: 30, entry: { moduleName: "klp_fix" } });
  });
});
