import { describe, expect, it } from "vitest";
import { KPATCH_TIMING } from "./timing.ts";
import { isStalled } from "./stalled-tasks.ts";
import { pollDelay } from "./transition.ts";

describe("pollDelay", () => {
  it.each([
    { poll: 0, ms: 20 },
    { poll: 1, ms: 40 },
    { poll: 2, ms: 50 },
    { poll: 500, ms: 50 },
  ])("poll $poll waits $ms ms", ({ poll, ms }) => {
    expect(pollDelay(KPATCH_TIMING, poll)).toBe(ms);
  });
});

describe("isStalled", () => {
  it.each([
    { patchState: -1, target: true, stalled: false },
    { patchState: 1, target: true, stalled: false },
    { patchState: 0, target: true, stalled: true },
    { patchState: 0, target: false, stalled: false },
    { patchState: 1, target: false, stalled: true },
  ])("patch_state $patchState, target $target → $stalled", ({ patchState, target, stalled }) => {
    expect(isStalled(patchState, target)).toBe(stalled);
  });
});
