import { describe, expect, it } from "vitest";
import { KernelLivePatch } from "../../crds/schema.ts";
import { cachedEntryOf, cachedNodeObject, type NodeObjectView } from "./node-objects.ts";
import { cachedPatch } from "./patches.ts";

describe("cachedNodeObject", () => {
  const object = {
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatchNode",
    metadata: { name: "n1" },
    spec: {
      patches: [
        { name: "p", uid: "u1", generation: 3, creationTimestamp: "2026-12-03T10:00:00Z", admitted: true, spec: { modules: [] } },
        { name: "q", uid: "u2", generation: 1, creationTimestamp: "2026-12-03T10:00:00Z", admitted: false, spec: { modules: [] } },
      ],
    },
    status: { entries: [{ patch: "p", patchUID: "u1", nodeName: "n1", phase: "Loading" }] },
  };

  it("keeps each projected patch's admission (the record the operator rebuilds its rollout from), not the specs", () => {
    const cached = cachedNodeObject(object) as NodeObjectView & { spec?: unknown };
    expect(cached.spec).toBeUndefined();
    expect([...cached.projected!]).toEqual([
      ["p", { uid: "u1", generation: 3, admitted: true }],
      ["q", { uid: "u2", generation: 1, admitted: false }],
    ]);
    expect(cached.byPatch?.get("p")).toEqual({ uid: "u1", entry: { nodeName: "n1", phase: "Loading" } });
  });

  it("keeps the agent's entries once, indexed by patch, not also as the agent wrote them", () => {
    const cached = cachedNodeObject(object) as NodeObjectView & { status?: unknown };
    expect(cached.status).toBeUndefined();
    expect(cachedEntryOf(cached, { metadata: { name: "p", uid: "u1" } })).toEqual({ nodeName: "n1", phase: "Loading" });
  });

  it("an entry left by an earlier patch of the same name is not this patch's", () => {
    const cached = cachedNodeObject(object) as NodeObjectView;
    expect(cachedEntryOf(cached, { metadata: { name: "p", uid: "u9" } })).toBeUndefined();
    expect(cachedEntryOf(cached, { metadata: { name: "q", uid: "u2" } })).toBeUndefined();
    expect(cachedEntryOf(undefined, { metadata: { name: "p", uid: "u1" } })).toBeUndefined();
  });

  it("an object not projected yet has no admission", () => {
    const { spec: _, ...bare } = object;
    expect((cachedNodeObject(bare) as NodeObjectView).projected?.size).toBe(0);
  });
});

describe("cachedPatch", () => {
  const patch = {
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: { name: "p" },
    spec: { modules: [{ kernelRelease: "6.1.0", sha256: "a".repeat(64), url: "https://example.com/m.ko" }] },
  };

  it("drops status.nodes", () => {
    const cached = cachedPatch({ ...patch, status: { nodes: [{ nodeName: "n1", phase: "Loaded" }], rollout: { generation: 1, admittedCount: 1, halted: false } } });
    expect(cached.status).toEqual({ rollout: { generation: 1, admittedCount: 1, halted: false } });
  });

  it("drops the admitted list an operator before admittedCount wrote, so the patch parses until its next status write", () => {
    const old = { ...patch, status: { rollout: { generation: 1, admitted: ["n1", "n2"], halted: false } } };
    expect(KernelLivePatch.safeParse(old).success).toBe(false);
    const cached = cachedPatch(old);
    expect(cached.status).toEqual({ rollout: { generation: 1, halted: false } });
    expect(KernelLivePatch.safeParse(cached).success).toBe(true);
  });

  it("leaves a patch without either as it is", () => {
    const p = { ...patch, status: { observedGeneration: 1 } };
    expect(cachedPatch(p)).toBe(p);
  });
});
