/** kpatch's waits and retries, as data so tests and callers can see (and shrink) them. */
export interface HostTiming {
  /**
   * Longest poll interval for transition and refcnt waits. kpatch polls every 1 s; a poll is one
   * sysfs read during a wait of a second or two, so we cap it at 50 ms and return within 0.05 s of
   * the kernel finishing (its own transition takes 0.5-1.5 s: docs/benchmarks.md, agent cost).
   */
  pollMs: number;
  /**
   * First poll delay; it doubles up to pollMs, so a transition that finishes in milliseconds
   * (the usual case) is seen at once instead of after a whole second. kpatch's windows are unchanged.
   */
  firstPollMs: number;
  /** When to signal stragglers during a transition (kpatch: after 15 s). */
  signalAfterMs: number;
  /** Default total transition timeout (kpatch: 15 s + 60 s). */
  transitionTimeoutMs: number;
  /** How long to wait for a module's refcnt to reach 0 before rmmod (kpatch: 15 s). */
  refcntWaitMs: number;
  /** insmod / enabled writes are retried this many times in all on EBUSY (kpatch: 5). */
  busyTries: number;
  /** Pause between EBUSY retries (kpatch: 2 s). */
  busyRetryDelayMs: number;
}

export const KPATCH_TIMING: HostTiming = {
  pollMs: 50,
  firstPollMs: 20,
  signalAfterMs: 15_000,
  transitionTimeoutMs: 75_000,
  refcntWaitMs: 15_000,
  busyTries: 5,
  busyRetryDelayMs: 2_000,
};
