import { beforeAll, describe, expect, it } from "vitest";
import { loadReleasePatternEngine } from "./module-for-release.ts";
import { selectorMatches } from "./label-selector.ts";
import { moduleForRelease } from "./module-for-release.ts";
import type { LabelSelector, PatchModule } from "./schema.ts";

// The RE2 engine loads on demand (crds/module-for-release.ts); these tests match and validate patterns.
beforeAll(() => loadReleasePatternEngine());

const sha = "a".repeat(64);
const mod = (m: Partial<PatchModule>): PatchModule => ({ sha256: sha, url: "https://x/y.ko", ...m });

describe("selectorMatches", () => {
  const labels = { role: "worker", zone: "a" };
  it.each<[string, LabelSelector | undefined, boolean]>([
    ["absent selects all", undefined, true],
    ["empty selects all", {}, true],
    ["matchLabels hit", { matchLabels: { role: "worker" } }, true],
    ["matchLabels miss", { matchLabels: { role: "db" } }, false],
    ["In hit", { matchExpressions: [{ key: "zone", operator: "In", values: ["a", "b"] }] }, true],
    ["In missing key", { matchExpressions: [{ key: "x", operator: "In", values: ["a"] }] }, false],
    ["NotIn hit", { matchExpressions: [{ key: "zone", operator: "NotIn", values: ["a"] }] }, false],
    ["NotIn missing key matches", { matchExpressions: [{ key: "x", operator: "NotIn", values: ["a"] }] }, true],
    ["Exists", { matchExpressions: [{ key: "zone", operator: "Exists" }] }, true],
    ["DoesNotExist", { matchExpressions: [{ key: "zone", operator: "DoesNotExist" }] }, false],
    ["all must hold", { matchLabels: { role: "worker" }, matchExpressions: [{ key: "zone", operator: "In", values: ["b"] }] }, false],
  ])("%s", (_name, selector, expected) => {
    expect(selectorMatches(selector, labels)).toBe(expected);
  });
});

describe("moduleForRelease", () => {
  const modules = [
    mod({ kernelReleasePattern: "6\\.1\\.0-.*-amd64" }),
    mod({ kernelRelease: "6.1.0-56-amd64", moduleName: "exact" }),
    mod({ kernelReleasePattern: "5\\.10" }),
  ];
  it.each<[string, string | undefined]>([
    ["6.1.0-56-amd64", "exact"],
    ["6.1.0-57-amd64", undefined],
    ["5.10", undefined],
    ["5.10.1", "none"],
    ["4.19", "none"],
  ])("%s", (release, expected) => {
    const m = moduleForRelease(modules, release);
    if (expected === "none") expect(m).toBeUndefined();
    else if (expected === "exact") expect(m?.moduleName).toBe("exact");
    else expect(m).toBeDefined();
  });
  it("patterns are anchored", () => {
    expect(moduleForRelease([mod({ kernelReleasePattern: "6\\.1" })], "6.1.0")).toBeUndefined();
  });
});
