import { describe, expect, it } from "vitest";
import { ProjectedPatch } from "../loop/projected-patch.ts";
import { projectedPatches, SUMMARY_MAX, summaryOf } from "./node-channel.ts";

/** A spec as the API server defaulted it on the KernelLivePatch. */
const SPEC = {
  state: "Loaded",
  modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://x.example/a.ko" }],
  rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 },
  transitionTimeoutSeconds: 75,
};

const projection = (name: string, o: { admitted?: boolean; uid?: string; deleting?: boolean; spec?: unknown } = {}) => ({
  name,
  uid: o.uid ?? `uid-${name}`,
  generation: 2,
  creationTimestamp: "2026-11-27T00:00:00Z",
  admitted: o.admitted ?? false,
  ...(o.deleting ? { deletionTimestamp: "2026-11-27T01:00:00Z" } : {}),
  spec: o.spec ?? { state: "Loaded" },
});

describe("projectedPatches", () => {
  it("hands the agent each projected patch as written, with this node's entry for it and the object's version", () => {
    const obj = {
      metadata: { name: "n1", resourceVersion: "42" },
      spec: { patches: [projection("a", { admitted: true }), projection("b", { deleting: true })] },
      status: { entries: [{ patch: "a", patchUID: "uid-a", nodeName: "n1", phase: "Loading" as const }, { patch: "b", patchUID: "old", nodeName: "n1", phase: "Loaded" as const }] },
    };
    const [a, b] = projectedPatches(obj);
    expect(a).toEqual({ patch: projection("a", { admitted: true }), entry: { nodeName: "n1", phase: "Loading" }, resourceVersion: "42" });
    // b's entry belongs to an earlier patch of the same name: not this one's.
    expect(b!.entry).toBeUndefined();
    expect(b!.patch.admitted).toBe(false);
    expect(b!.patch.deletionTimestamp).toBe("2026-11-27T01:00:00Z");
    // What the agent parses: the projection typed by the KernelLivePatchNode schema.
    const parsed = ProjectedPatch.safeParse(projectedPatches({ ...obj, spec: { patches: [projection("a", { admitted: true, spec: SPEC })] } })[0]);
    expect(parsed.success && parsed.data.patch.spec.modules[0]?.kernelRelease).toBe("6.1.0-56-amd64");
  });
});

describe("summaryOf", () => {
  const entry = (patch: string, phase = "Loaded") => ({ patch, nodeName: "n1", phase }) as Parameters<typeof summaryOf>[0][number];

  it.each([
    [[], ""],
    [[entry("a")], "a Loaded"],
    [[entry("a", "Failed"), entry("b", "Pending")], "a Failed, b Pending"],
  ])("%j -> %j", (entries, text) => expect(summaryOf(entries)).toBe(text));

  it("stays within the schema's limit, counting what it leaves out", () => {
    const many = Array.from({ length: 1000 }, (_, i) => entry(`${"p".repeat(60)}-${i}`, "Loading"));
    const text = summaryOf(many);
    expect(text.length).toBeLessThanOrEqual(SUMMARY_MAX);
    const shown = text.split(", ").length - 1;
    expect(text).toMatch(new RegExp(`, and ${1000 - shown} more$`));
    expect(text.startsWith(`${"p".repeat(60)}-0 Loading`)).toBe(true);
  });
});
