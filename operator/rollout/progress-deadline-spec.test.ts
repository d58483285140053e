import { describe, expect, it } from "vitest";
import { buildCrd } from "../../crds/crd.ts";
import { KernelLivePatchSpec } from "../../crds/schema.ts";
import { DEFAULT_PROGRESS_DEADLINE_SECONDS } from "./settled.ts";

const spec = (rollout: Record<string, unknown>, transitionTimeoutSeconds = 15) => ({
  modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://example.invalid/fix.ko" }],
  rollout,
  transitionTimeoutSeconds,
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

  it.each([
    [150, 75, true],
    [149, 75, false],
    [undefined, 300, true],
    [undefined, 301, false],
  ])("deadline %s with a %s s transition timeout is valid: %s (a stalled load takes two transitions)", (deadline, transition, valid) => {
    const r = KernelLivePatchSpec.safeParse(spec(deadline === undefined ? {} : { progressDeadlineSeconds: deadline }, transition));
    expect(r.success).toBe(valid);
    if (!valid) expect(r.error?.issues[0]?.message).toContain("at least twice transitionTimeoutSeconds");
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
