import { describe, expect, it } from "vitest";
import { formatTable, formatTableOrNone } from "./table.ts";
import { ageOf, humanDuration } from "./age.ts";

describe("formatTable", () => {
  it("aligns columns three spaces apart under upper-case headers, without trailing blanks", () => {
    expect(formatTable(["name", "phase", "reason"], [["a", "Loaded", ""], ["node-long", "Failed", "VermagicMismatch"]])).toBe(
      ["NAME        PHASE    REASON", "a           Loaded", "node-long   Failed   VermagicMismatch", ""].join("\n"),
    );
  });
  it("says so when there is nothing", () => {
    expect(formatTableOrNone(["name"], [], "No nodes found.")).toBe("No nodes found.\n");
  });
});

describe("humanDuration (kubectl's ages)", () => {
  const s = 1000;
  it.each<[number, string]>([
    [-5 * s, "0s"],
    [0, "0s"],
    [119 * s, "119s"],
    [120 * s, "2m"],
    [200 * s, "3m20s"],
    [17 * 60 * s, "17m"],
    [179 * 60 * s, "179m"],
    [(5 * 60 + 12) * 60 * s, "5h12m"],
    [30 * 3600 * s, "30h"],
    [(3 * 24 + 4) * 3600 * s, "3d4h"],
    [12 * 86400 * s, "12d"],
    [(2 * 365 + 3) * 86400 * s, "2y3d"],
    [9 * 365 * 86400 * s, "9y"],
  ])("%d ms ago is %s", (ms, want) => {
    expect(humanDuration(ms)).toBe(want);
  });
  it("ageOf a timestamp at a given time; '-' for none", () => {
    expect(ageOf("2026-12-03T10:00:00Z", new Date("2026-12-03T10:05:00Z"))).toBe("5m");
    expect(ageOf(undefined, new Date())).toBe("-");
    expect(ageOf("yesterday", new Date())).toBe("-");
  });
});
