import { describe, expect, it } from "vitest";
import type { KernelLivePatch } from "../../crds/schema.ts";
import { nodeChangeMatters, type NodeMeta } from "./node-change.ts";

const patch = (selector?: Record<string, string>): KernelLivePatch =>
  ({ metadata: { name: "p", uid: "u" }, spec: { state: "Loaded", modules: [], ...(selector ? { nodeSelector: { matchLabels: selector } } : {}) } }) as unknown as KernelLivePatch;

const node = (labels: Record<string, string>, uid = "n-uid"): NodeMeta => ({ uid, labels });
const poolA = [patch({ pool: "a" })];

describe("nodeChangeMatters", () => {
  it.each([
    ["a Node added", undefined, node({}), [], {}, true],
    ["a Node deleted", node({}), undefined, [], {}, true],
    ["the same labels (a status or resourceVersion-only update)", node({ pool: "a" }), node({ pool: "a" }), poolA, {}, false],
    ["a label no selector reads", node({ pool: "a" }), node({ pool: "a", zone: "z1" }), poolA, {}, false],
    ["a label value changed, targeted before and after", node({ pool: "a", rack: "1" }), node({ pool: "a", rack: "2" }), poolA, {}, false],
    ["a label change that moves the node out of a patch's selector", node({ pool: "a" }), node({ pool: "b" }), poolA, {}, true],
    ["a label change that moves the node into a patch's selector", node({ pool: "b" }), node({ pool: "a" }), poolA, {}, true],
    ["a label removed that a patch selects on", node({ pool: "a" }), node({}), poolA, {}, true],
    ["a patch without a selector targets every node: no label change moves it", node({ pool: "a" }), node({ pool: "b" }), [patch()], {}, false],
    ["the operator's global selector counts", node({ pool: "a", agent: "yes" }), node({ pool: "a" }), [patch()], { agent: "yes" }, true],
    ["a label change with no patch at all", node({ pool: "a" }), node({ pool: "b" }), [], {}, false],
    ["the Node replaced under the same name (another uid)", node({ pool: "a" }, "u1"), node({ pool: "a" }, "u2"), poolA, {}, true],
  ] as const)("%s: %s", (_name, before, after, patches, global, want) => {
    expect(nodeChangeMatters(before, after, patches, global)).toBe(want);
  });
});
