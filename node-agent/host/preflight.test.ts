import { describe, expect, it } from "vitest";
import { parseKernelBool, parseLockdown, preflightBlockers, type PreflightFacts } from "./preflight.ts";

describe("parseLockdown", () => {
  it.each([
    { text: "[none] integrity confidentiality\n", mode: "none" },
    { text: "none [integrity] confidentiality\n", mode: "integrity" },
    { text: "none integrity [confidentiality]\n", mode: "confidentiality" },
    { text: undefined, mode: "none" },
    { text: "garbage", mode: "none" },
  ])("$text → $mode", ({ text, mode }) => {
    expect(parseLockdown(text)).toBe(mode);
  });
});

describe("parseKernelBool", () => {
  it.each([
    { text: "1\n", fallback: false, value: true },
    { text: "0\n", fallback: true, value: false },
    { text: "Y\n", fallback: false, value: true },
    { text: "N", fallback: true, value: false },
    { text: undefined, fallback: true, value: true },
    { text: "", fallback: false, value: false },
    { text: "maybe", fallback: false, value: false },
  ])("'$text' (fallback $fallback) → $value", ({ text, fallback, value }) => {
    expect(parseKernelBool(text, fallback)).toBe(value);
  });
});

describe("preflightBlockers", () => {
  const ok: PreflightFacts = {
    kernelRelease: "6.1.0-56-amd64",
    bootId: "b",
    livepatchSupported: true,
    modulesDisabled: false,
    sigEnforce: true,
    lockdown: "integrity",
    ftraceEnabled: true,
  };

  it.each([
    { facts: {}, blockers: [] as string[] },
    { facts: { livepatchSupported: false }, blockers: ["LivepatchUnsupported"] },
    { facts: { modulesDisabled: true }, blockers: ["ModulesDisabled"] },
    { facts: { ftraceEnabled: false }, blockers: ["FtraceDisabled"] },
    {
      facts: { livepatchSupported: false, modulesDisabled: true, ftraceEnabled: false },
      blockers: ["LivepatchUnsupported", "ModulesDisabled", "FtraceDisabled"],
    },
  ])("$facts → $blockers", ({ facts, blockers }) => {
    const found = preflightBlockers({ ...ok, ...facts });
    expect(found.map((b) => b.reason)).toEqual(blockers);
    for (const b of found) expect(b.message.length).toBeGreaterThan(0);
  });
});
