import { describe, expect, it } from "vitest";
import { lines, silenceAfterMs } from "./watcher.ts";

async function* chunks(...parts: string[]): AsyncGenerator<string> {
  yield* parts;
}

describe("watch stream lines", () => {
  it("splits events across and within chunks", async () => {
    const out: string[] = [];
    for await (const l of lines(chunks('{"a":', '1}\n{"b":2}\n{"c"', ":3}\n", '{"d":4}'))) out.push(l);
    expect(out).toEqual(['{"a":1}', '{"b":2}', '{"c":3}', '{"d":4}']);
  });
});

describe("silenceAfterMs", () => {
  it.each([
    [300, 330_000],
    [60, 66_000],
    [3, 8_000],
    [3600, 3_630_000],
  ])("a %i s watch is silent after %i ms", (timeout, ms) => {
    expect(silenceAfterMs(timeout)).toBe(ms);
  });
});
