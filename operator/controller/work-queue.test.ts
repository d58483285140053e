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
