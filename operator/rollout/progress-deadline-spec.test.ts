import { describe, expect, it } from "vitest";
import { buildCrd } from "../../crds/crd.ts";
import { KernelLivePatchSpec } from "../../crds/schema.ts";
import { DEFAULT_PROGRESS_DEADLINE_SECONDS } from "./settled.ts";

const spec = (rollout: Record<string, unknown>) => ({
  modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://example.invalid/fix.ko" }],
  rollout,
});

describe("spec.rollout.progressDeadlineSeconds", () => {
  it.each([
    [29, false],
    [30, true],
    [600, true],
    [86_400, true],
    [86_401, false],
    [60.5, false],
  ])("%s is valid: %s", (value, valid) => {
    expect(KernelLivePatchSpec.safeParse(spec({ progressDeadlineSeconds: value })).success).toBe(valid);
  });

  it("the CRD defaults it to the operator's default and bounds it", () => {
    type Crd = { spec: { versions: Array<{ schema: { openAPIV3Schema: Schema } }> } };
    type Schema = { properties: Record<string, Schema> };
    const root = (buildCrd() as unknown as Crd).spec.versions[0]!.schema.openAPIV3Schema;
    const rollout = root.properties.spec!.properties.rollout!.properties.progressDeadlineSeconds;
    expect(rollout).toMatchObject({ type: "integer", default: DEFAULT_PROGRESS_DEADLINE_SECONDS, minimum: 30, maximum: 86_400 });
    expect(DEFAULT_PROGRESS_DEADLINE_SECONDS).toBe(600);
  });
});
