import type { V1Node } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { cachedNode, nodeReadiness, type NodeView } from "./nodes.ts";

const node = (conditions?: Array<{ type: string; status: string; lastTransitionTime?: string }>): V1Node =>
  ({
    apiVersion: "v1",
    kind: "Node",
    metadata: { name: "n1", uid: "u1", resourceVersion: "7", labels: { pool: "a" }, annotations: { big: "x".repeat(1000) } },
    status: { conditions, images: [{ names: ["img"], sizeBytes: 1 }] },
  }) as unknown as V1Node;

describe("nodeReadiness", () => {
  it.each([
    ["Ready True", [{ type: "Ready", status: "True", lastTransitionTime: "2026-11-27T12:00:00Z" }], { ready: true, since: "2026-11-27T12:00:00Z" }],
    ["Ready False", [{ type: "Ready", status: "False", lastTransitionTime: "2026-11-27T12:00:00Z" }], { ready: false, since: "2026-11-27T12:00:00Z" }],
    ["Ready Unknown (the kubelet stopped posting)", [{ type: "Ready", status: "Unknown", lastTransitionTime: "2026-11-27T12:00:00Z" }], { ready: false, since: "2026-11-27T12:00:00Z" }],
    ["another condition only: no evidence", [{ type: "MemoryPressure", status: "True" }], { ready: true }],
    ["no conditions: no evidence", undefined, { ready: true }],
  ] as const)("%s", (_name, conditions, want) => {
    expect(nodeReadiness(node(conditions as never))).toEqual(want);
  });
});

describe("cachedNode", () => {
  it("keeps name, uid, resourceVersion and labels only; a second pass changes nothing", () => {
    const kept = cachedNode(node([{ type: "Ready", status: "False", lastTransitionTime: "2026-11-27T12:00:00Z" }])) as unknown as NodeView;
    expect(kept).toEqual({ metadata: { name: "n1", uid: "u1", resourceVersion: "7", labels: { pool: "a" } } });
    expect(cachedNode(kept)).toBe(kept);
  });

  it("keeps the same of a Node's PartialObjectMetadata (what the metadata-only watch sends)", () => {
    const partial = {
      apiVersion: "meta.k8s.io/v1",
      kind: "PartialObjectMetadata",
      metadata: { name: "n1", uid: "u1", resourceVersion: "7", labels: { pool: "a" }, annotations: { big: "x" }, creationTimestamp: "2026-11-27T12:00:00Z" },
    };
    expect(cachedNode(partial)).toEqual({ metadata: { name: "n1", uid: "u1", resourceVersion: "7", labels: { pool: "a" } } });
  });
});
