/**
 * A keyed work queue in the manner of client-go's: a key is queued at most once, a key being
 * processed is never processed twice at the same time (a re-add while it runs is replayed once
 * after), failures retry with per-key exponential backoff, and `addAfter` wakes a key later.
 */
/** What the queue reports as it goes (controller-runtime's work-queue metrics). */
export interface QueueObserver {
  depth(n: number): void;
  added(): void;
  retried(): void;
  /** Seconds a key waited between being queued and being handed to a worker. */
  queued(seconds: number): void;
  /** Seconds a worker spent on a key. */
  worked(seconds: number): void;
}

export interface WorkQueueOptions {
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  readonly observer?: QueueObserver;
  readonly now?: () => number;
}

/** The queue's in-progress figures, sampled when metrics are scraped. */
export interface QueueSample {
  readonly activeWorkers: number;
  /** Seconds of work in progress not yet observed by `worked`. */
  readonly unfinishedSeconds: number;
  readonly longestRunningSeconds: number;
}

export type Handler = (key: string) => Promise<{ requeueAfterMs?: number | undefined } | void>;

export class WorkQueue {
  private readonly queued = new Set<string>();
  private readonly order: string[] = [];
  private readonly running = new Set<string>();
  private readonly dirtyWhileRunning = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly waiters = new Set<() => void>();
  private readonly queuedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  private stopped = false;

  constructor(private readonly opts: WorkQueueOptions = {}) {}

  add(key: string): void {
    if (this.stopped) return;
    // Counted as client-go counts: an add that makes the key dirty, not one coalesced into it.
    if (this.running.has(key)) {
      if (!this.dirtyWhileRunning.has(key)) this.opts.observer?.added();
      this.dirtyWhileRunning.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.opts.observer?.added();
    this.queued.add(key);
    this.queuedAt.set(key, this.now());
    this.order.push(key);
    this.opts.observer?.depth(this.order.length);
    this.wakeAll();
  }

  addAfter(key: string, delayMs: number): void {
    if (this.stopped) return;
    const existing = this.timers.get(key);
    if (existing) clearTimeout(existing);
    const t = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, Math.max(0, delayMs));
    t.unref?.();
    this.timers.set(key, t);
  }

  backoffMs(key: string): number {
    const n = this.failures.get(key) ?? 0;
    return Math.min(this.opts.maxDelayMs ?? 60_000, (this.opts.baseDelayMs ?? 200) * 2 ** n);
  }

  /** Runs `handler` for queued keys, `concurrency` at a time, until stop(). */
  async run(handler: Handler, concurrency = 4): Promise<void> {
    const workers = Array.from({ length: concurrency }, () => this.worker(handler));
    await Promise.all(workers);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.wakeAll();
  }

  get depth(): number {
    return this.order.length;
  }

  sample(): QueueSample {
    const now = this.now();
    const running = [...this.startedAt.values()].map((t) => (now - t) / 1000);
    return {
      activeWorkers: running.length,
      unfinishedSeconds: running.reduce((a, b) => a + b, 0),
      longestRunningSeconds: Math.max(0, ...running),
    };
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private wakeAll(): void {
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  private async next(): Promise<string | undefined> {
    while (!this.stopped) {
      const key = this.order.shift();
      if (key !== undefined) {
        this.queued.delete(key);
        this.opts.observer?.depth(this.order.length);
        const at = this.queuedAt.get(key);
        this.queuedAt.delete(key);
        if (at !== undefined) this.opts.observer?.queued((this.now() - at) / 1000);
        return key;
      }
      await new Promise<void>((resolve) => this.waiters.add(resolve));
    }
    return undefined;
  }

  private async worker(handler: Handler): Promise<void> {
    for (;;) {
      const key = await this.next();
      if (key === undefined) return;
      this.running.add(key);
      const started = this.now();
      this.startedAt.set(key, started);
      try {
        const result = await handler(key);
        this.failures.delete(key);
        if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
      } catch {
        const delay = this.backoffMs(key);
        this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
        this.opts.observer?.retried();
        this.addAfter(key, delay);
      } finally {
        this.startedAt.delete(key);
        this.opts.observer?.worked((this.now() - started) / 1000);
        this.running.delete(key);
        if (this.dirtyWhileRunning.delete(key)) this.add(key);
      }
    }
  }
}
