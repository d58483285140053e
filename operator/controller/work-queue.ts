/**
 * A keyed work queue in the manner of client-go's: a key is queued at most once, a key being
 * processed is never processed twice at the same time (a re-add while it runs is replayed once
 * after), failures retry with per-key exponential backoff, and `addAfter` wakes a key later.
 */
export interface WorkQueueOptions {
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  readonly onDepth?: (depth: number) => void;
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
  private stopped = false;

  constructor(private readonly opts: WorkQueueOptions = {}) {}

  add(key: string): void {
    if (this.stopped) return;
    if (this.running.has(key)) {
      this.dirtyWhileRunning.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.order.push(key);
    this.opts.onDepth?.(this.order.length);
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
        this.opts.onDepth?.(this.order.length);
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
      try {
        const result = await handler(key);
        this.failures.delete(key);
        if (result?.requeueAfterMs !== undefined) this.addAfter(key, result.requeueAfterMs);
      } catch {
        const delay = this.backoffMs(key);
        this.failures.set(key, (this.failures.get(key) ?? 0) + 1);
        this.addAfter(key, delay);
      } finally {
        this.running.delete(key);
        if (this.dirtyWhileRunning.delete(key)) this.add(key);
      }
    }
  }
}
