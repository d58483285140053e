import { describe, expect, it } from "vitest";
import { ownPart } from "./agent-api.ts";

describe("ownPart", () => {
  it("keeps only this node's entry and drops managed fields", () => {
    const raw = {
      apiVersion: "livepatch.kpatch.dev/v1alpha1",
      metadata: { name: "p", generation: 2, managedFields: [{ manager: "kpatch-agent/n1" }, { manager: "kpatch-agent/n2" }] },
      spec: { state: "Loaded" },
      status: { rollout: { generation: 2, admitted: ["n1", "n2"], halted: false }, nodes: [{ nodeName: "n1", phase: "Loaded" }, { nodeName: "n2", phase: "Loading" }] },
    };
    expect(ownPart(raw, "n2")).toEqual({
      apiVersion: "livepatch.kpatch.dev/v1alpha1",
      metadata: { name: "p", generation: 2 },
      spec: { state: "Loaded" },
      status: { rollout: { generation: 2, admitted: ["n1", "n2"], halted: false }, nodes: [{ nodeName: "n2", phase: "Loading" }] },
    });
    expect(raw.status.nodes).toHaveLength(2);
  });

  it("leaves objects without status alone", () => {
    expect(ownPart({ metadata: { name: "p" } }, "n1")).toEqual({ metadata: { name: "p" } });
  });
});
