import { describe, expect, it } from "vitest";
import { decodeTaint, parseTaint } from "./taint.ts";

describe("decodeTaint", () => {
  it.each([
    { value: 0, letters: "", flags: [] as string[] },
    { value: 45056, letters: "OEK", flags: ["oot_module", "unsigned_module", "livepatch"] },
    { value: 36864, letters: "OK", flags: ["oot_module", "livepatch"] },
    { value: 1, letters: "P", flags: ["proprietary_module"] },
    { value: 512, letters: "W", flags: ["warn"] },
    { value: 1 << 19, letters: "J", flags: ["fwctl"] },
    { value: (1 << 20) | 4096, letters: "O?20", flags: ["oot_module", "bit20"] },
    { value: 2n ** 40n, letters: "?40", flags: ["bit40"] },
    { value: 0xfffff, letters: "PFSRMBUDAWCIOELKXTNJ", flags: expect.any(Array) as unknown as string[] },
  ])("$value → '$letters'", ({ value, letters, flags }) => {
    const decoded = decodeTaint(value);
    expect(decoded.letters).toBe(letters);
    expect(decoded.flags).toEqual(flags);
  });

  it("lists the set bits", () => {
    expect(decodeTaint(45056).bits).toEqual([12, 13, 15]);
  });

  it.each([-1, 1.5, Number.NaN, -1n])("rejects %s", (value) => {
    expect(() => decodeTaint(value)).toThrow(RangeError);
  });
});

describe("parseTaint", () => {
  it.each([
    { text: "45056\n", value: 45056 },
    { text: "0", value: 0 },
    { text: " 12 ", value: 12 },
    { text: "", value: undefined },
    { text: "abc", value: undefined },
    { text: "-1", value: undefined },
  ])("'$text' → $value", ({ text, value }) => {
    expect(parseTaint(text)).toBe(value);
  });
});
