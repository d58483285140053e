import { describe, expect, it } from "vitest";
import { WorkQueue } from "./work-queue.ts";

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

describe("WorkQueue", () => {
  it("coalesces repeated adds of a queued key", async () => {
    const q = new WorkQueue();
    const seen: string[] = [];
    q.add("a");
    q.add("a");
    q.add("b");
    const run = q.run(async (k) => void seen.push(k), 1);
    await tick(20);
    q.stop();
    await run;
    expect(seen).toEqual(["a", "b"]);
  });

  it("never runs one key twice at once, and replays an add made while it ran", async () => {
    const q = new WorkQueue();
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const run = q.run(async () => {
      active++;
      runs++;
      maxActive = Math.max(maxActive, active);
      if (runs === 1) q.add("a");
      await tick(10);
      active--;
    }, 4);
    q.add("a");
    await tick(60);
    q.stop();
    await run;
    expect(maxActive).toBe(1);
    expect(runs).toBe(2);
  });

  it("retries failures with growing backoff", async () => {
    const q = new WorkQueue({ baseDelayMs: 5, maxDelayMs: 40 });
    const at: number[] = [];
    const run = q.run(async () => {
      at.push(Date.now());
      if (at.length < 4) throw new Error("boom");
    }, 1);
    q.add("a");
    await tick(200);
    q.stop();
    await run;
    expect(at).toHaveLength(4);
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    expect(gaps[2]!).toBeGreaterThanOrEqual(gaps[0]!);
  });
});

describe("WorkQueue observer", () => {
  it("counts adds as client-go does, retries, and the time in queue and at work", async () => {
    let now = 1000;
    const seen = { depth: [] as number[], added: 0, retried: 0, queued: [] as number[], worked: [] as number[] };
    const q = new WorkQueue({
      baseDelayMs: 1,
      now: () => now,
      observer: {
        depth: (n) => seen.depth.push(n),
        added: () => seen.added++,
        retried: () => seen.retried++,
        queued: (s) => seen.queued.push(s),
        worked: (s) => seen.worked.push(s),
      },
    });
    q.add("a");
    q.add("a"); // coalesced: not an add
    now += 2000;
    let calls = 0;
    const run = q.run(async () => {
      now += 500;
      if (++calls === 1) {
        expect(q.sample()).toEqual({ activeWorkers: 1, unfinishedSeconds: 0.5, longestRunningSeconds: 0.5 });
        throw new Error("retry me");
      }
    }, 1);
    await tick(50);
    q.stop();
    await run;
    expect(calls).toBe(2);
    expect(seen.added).toBe(2); // the first add and the retry's
    expect(seen.retried).toBe(1);
    expect(seen.queued[0]).toBe(2);
    expect(seen.worked).toEqual([0.5, 0.5]);
    expect(seen.depth).toContain(1);
    expect(q.sample()).toEqual({ activeWorkers: 0, unfinishedSeconds: 0, longestRunningSeconds: 0 });
  });
});
