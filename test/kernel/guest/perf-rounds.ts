/**
 * Rounds of the guest runner's `perf` step (agent load, then bare insmod + wait, alternating). The
 * kernel ends a livepatch transition on its transition work, which runs on a whole-second boundary
 * (round_jiffies_relative(HZ)), so one load's wait varies by up to a second with the moment it
 * starts, more than the agent's own cost: an odd number of rounds, enough for the medians to hold.
 */
export const PERF_ROUNDS = 5;
