import { describe, expect, it, vi } from "vitest";
import { idleCollector } from "./lean-runtime.ts";

describe("idleCollector", () => {
  it("collects once, delayMs after the last burst of work, and only when the heap grew", () => {
    vi.useFakeTimers();
    try {
      let heap = 20 << 20;
      const collect = vi.fn(() => (heap = 10 << 20));
      const idle = idleCollector(collect, { delayMs: 5000, growthBytes: 1 << 20, heapBytes: () => heap });
      idle();
      vi.advanceTimersByTime(3000);
      idle();
      vi.advanceTimersByTime(4999);
      expect(collect).not.toHaveBeenCalled();
      vi.advanceTimersByTime(1);
      expect(collect).toHaveBeenCalledTimes(1);
      // A quiet resync: the heap barely moved, no collection.
      heap += 100_000;
      idle();
      vi.advanceTimersByTime(5000);
      expect(collect).toHaveBeenCalledTimes(1);
      // Real work again.
      heap += 3 << 20;
      idle();
      vi.advanceTimersByTime(5000);
      expect(collect).toHaveBeenCalledTimes(2);
    } finally {
      vi.useRealTimers();
    }
  });
});
