import { describe, expect, it, vi } from "vitest";
import { idleCollector } from "./lean-runtime.ts";

describe("idleCollector", () => {
  it("collects once, delayMs after the last burst of work", () => {
    vi.useFakeTimers();
    try {
      const collect = vi.fn();
      const idle = idleCollector(collect, 5000);
      idle();
      vi.advanceTimersByTime(3000);
      idle();
      vi.advanceTimersByTime(4999);
      expect(collect).not.toHaveBeenCalled();
      vi.advanceTimersByTime(1);
      expect(collect).toHaveBeenCalledTimes(1);
      vi.advanceTimersByTime(60_000);
      expect(collect).toHaveBeenCalledTimes(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
