import { describe, expect, it } from "vitest";
import { isSafeName, isValidModuleName, moduleNameFromFile } from "./names.ts";

describe("isSafeName", () => {
  it.each([
    { name: "livepatch_fix", safe: true },
    { name: "6.1.0-56-amd64", safe: true },
    { name: "fix-1.ko", safe: true },
    { name: "", safe: false },
    { name: ".", safe: false },
    { name: "..", safe: false },
    { name: ".hidden", safe: false },
    { name: "../etc", safe: false },
    { name: "a/b", safe: false },
    { name: "a..b", safe: false },
    { name: "nul\u0000byte", safe: false },
    { name: "new\nline", safe: false },
    { name: "x".repeat(255), safe: true },
    { name: "x".repeat(256), safe: false },
    { name: "é".repeat(128), safe: false },
  ])("'$name' → $safe", ({ name, safe }) => {
    expect(isSafeName(name)).toBe(safe);
  });

  it("honours a custom length limit", () => {
    expect(isSafeName("abcdef", 5)).toBe(false);
  });
});

describe("isValidModuleName", () => {
  it.each([
    { name: "livepatch_fix", valid: true },
    { name: "kpatch-fix-1", valid: true },
    { name: "x".repeat(55), valid: true },
    { name: "x".repeat(56), valid: false },
    { name: "has space", valid: false },
    { name: "dot.ted", valid: false },
    { name: "../x", valid: false },
  ])("'$name' → $valid", ({ name, valid }) => {
    expect(isValidModuleName(name)).toBe(valid);
  });
});

describe("moduleNameFromFile", () => {
  it.each([
    { file: "livepatch-fix.ko", name: "livepatch_fix" },
    { file: "/var/lib/kpatch/6.1.0/kpatch-cve-1.ko", name: "kpatch_cve_1" },
    { file: "plain", name: "plain" },
    { file: "a.ko.ko", name: "a.ko" },
  ])("$file → $name", ({ file, name }) => {
    expect(moduleNameFromFile(file)).toBe(name);
  });
});
