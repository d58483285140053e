/**
 * When a failed host operation may be tried again: exponential backoff with a cap and jitter,
 * per operation (a patch's unload that stalls does not delay another patch's load). Pure apart
 * from the state it keeps: the clock and the random source are passed in.
 *
 * A stall that persists becomes a slow, steady retry (every `capMs`, jittered), never a loop.
 */
export interface RetryPolicy {
  readonly baseMs: number;
  readonly capMs: number;
}

/** Host operations that failed but may work later (an unload that stalled, a source that was down). */
export const HOST_RETRY: RetryPolicy = { baseMs: 30_000, capMs: 30 * 60_000 };
export const SOURCE_RETRY: RetryPolicy = { baseMs: 5_000, capMs: 10 * 60_000 };

/** The delay before attempt `failures + 1`: base·2^(failures-1) capped, then between half and all of it. */
export function retryDelayMs(policy: RetryPolicy, failures: number, random: number): number {
  const ms = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, Math.min(failures - 1, 30)));
  return Math.round(ms / 2 + random * (ms / 2));
}

interface Attempts {
  failures: number;
  notBefore: number;
}

export class RetrySchedule {
  private readonly byKey = new Map<string, Attempts>();

  constructor(private readonly maxKeys = 1024) {}

  /** Milliseconds until `key` may be tried again (0: now). */
  dueInMs(key: string, now: number): number {
    const a = this.byKey.get(key);
    return a ? Math.max(0, a.notBefore - now) : 0;
  }

  /** Records a failure; returns the delay before the next attempt. */
  failed(key: string, policy: RetryPolicy, now: number, random: number): number {
    const failures = (this.byKey.get(key)?.failures ?? 0) + 1;
    const delay = retryDelayMs(policy, failures, random);
    this.byKey.delete(key);
    this.byKey.set(key, { failures, notBefore: now + delay });
    // Bounded: the oldest keys go first (a Map iterates in insertion order).
    for (const oldest of this.byKey.keys()) {
      if (this.byKey.size <= this.maxKeys) break;
      this.byKey.delete(oldest);
    }
    return delay;
  }

  succeeded(key: string): void {
    this.byKey.delete(key);
  }

  /** Forgets every key for which `keep` is false (patches that are gone). */
  retain(keep: (key: string) => boolean): void {
    for (const k of [...this.byKey.keys()]) if (!keep(k)) this.byKey.delete(k);
  }
}
