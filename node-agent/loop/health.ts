/** The agent's liveness and readiness, decided from its loop's state with the clock passed in. */

export interface LoopState {
  /** The agent knows its Node (the Node watch listed it). */
  readonly nodeKnown: boolean;
  /** When the last pass finished (epoch ms; 0: none yet). */
  readonly lastPassAt: number;
  /** When the run of passes in progress started (epoch ms; undefined: idle). */
  readonly busySince: number | undefined;
  /** The longest transitionTimeoutSeconds among the patches the agent sees. */
  readonly maxTransitionSeconds: number;
}

export interface Health {
  readonly ok: boolean;
  readonly reason: string;
}

/** Fetching a module, staging it and a status write each take well under this. */
const SLACK_MS = 5 * 60_000;

/**
 * Live while no run of passes has been busy longer than a load can take: a transition and its
 * reversal (2 × the timeout) plus slack. Longer means the loop is wedged; a restart is safe
 * (the agent never unloads on exit, and a restarted agent resumes where the host stands).
 */
export function liveness(s: LoopState, now: number): Health {
  const limitMs = 2 * s.maxTransitionSeconds * 1000 + SLACK_MS;
  if (s.busySince !== undefined && now - s.busySince > limitMs) {
    return { ok: false, reason: `a pass has been running for ${Math.round((now - s.busySince) / 1000)} s (limit ${limitMs / 1000} s)` };
  }
  return { ok: true, reason: "ok" };
}

/** Ready once it has read its Node and finished a pass over the patches. */
export function readiness(s: LoopState): Health {
  if (!s.nodeKnown) return { ok: false, reason: "waiting for the Node object" };
  if (s.lastPassAt === 0) return { ok: false, reason: "no pass finished yet" };
  return { ok: true, reason: "ok" };
}
