import type { Clock } from "../host/ports.ts";

export interface VirtualClock extends Clock {
  advance(ms: number): void;
}

/**
 * A clock whose sleep returns at once and moves time forward: share it between the driver and
 * the SimLoader and a 75 s transition timeout takes milliseconds.
 */
export function createVirtualClock(start = 1_700_000_000_000): VirtualClock {
  let now = start;
  return {
    now: () => now,
    sleep: async (ms) => {
      now += Math.max(0, ms);
      await Promise.resolve();
    },
    advance: (ms) => {
      now += ms;
    },
  };
}
