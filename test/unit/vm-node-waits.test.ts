import { describe, expect, it } from "vitest";
import type { KernelLivePatch } from "../../crds/schema.ts";
import { waitPatchReady, type Eventually } from "../vm-node/waits.ts";

/** A patch at `generation`, its status written for `observed`, Ready as given. */
function patch(generation: number, observed: number, ready: boolean, reason: string): KernelLivePatch {
  return {
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: { name: "p", generation },
    status: { observedGeneration: observed, conditions: [{ type: "Ready", status: ready ? "True" : "False", reason, message: "", observedGeneration: observed, lastTransitionTime: "2026-12-04T00:00:00Z" }] },
  } as unknown as KernelLivePatch;
}

const at0: Eventually = async (what, _timeoutMs, f) => {
  for (let i = 0; i < 20; i++) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
  }
  throw new Error(`gave up waiting for ${what}`);
};

const kubectlWaitMet = { kubectl: async () => ({ code: 0, stdout: "klp/p condition met\n", stderr: "" }) };

describe("waitPatchReady", () => {
  it("does not take a watch cache's Ready of the generation before a spec change: it waits until a GET shows the new one Ready", async () => {
    // The cache still holds generation 3 (Loaded, Ready); the API server already has generation 4
    // (state: Unloaded), first in progress, then Ready.
    const stale = patch(3, 3, true, "Loaded");
    const served = [patch(4, 3, true, "Loaded"), patch(4, 4, false, "RolloutInProgress"), patch(4, 4, true, "Unloaded")];
    let gets = 0;
    const p = await waitPatchReady(
      { cp: kubectlWaitMet, read: async () => stale, get: async () => served[Math.min(gets++, served.length - 1)], eventually: at0 },
      "p",
    );
    expect(p.metadata.generation).toBe(4);
    expect(p.status?.conditions?.find((c) => c.type === "Ready")?.reason).toBe("Unloaded");
  });

  it("returns at once when the cache and the GET agree", async () => {
    const ready = patch(2, 2, true, "Loaded");
    const p = await waitPatchReady({ cp: kubectlWaitMet, read: async () => ready, get: async () => ready, eventually: at0 }, "p");
    expect(p).toBe(ready);
  });
});
