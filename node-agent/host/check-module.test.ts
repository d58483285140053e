import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { buildSimModule, type SimModuleOptions } from "../sim/build-module.ts";
import { checkModule, type ModuleExpectation } from "./check-module.ts";
import { parseModule } from "./parse-module.ts";

const RELEASE = "6.1.0-56-amd64";

function sha(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function check(options: Partial<SimModuleOptions>, expect: Partial<ModuleExpectation> = {}, bytes?: Buffer) {
  const module = bytes ?? buildSimModule({ name: "livepatch_fix", vermagic: RELEASE, ...options });
  return checkModule(parseModule(module), { actualSha256: sha(module), kernelRelease: RELEASE, ...expect });
}

describe("checkModule", () => {
  it.each([
    { case: "a good livepatch", options: {}, expect: {}, result: "ok" },
    { case: "pinned digest matches", options: {}, expect: { sha256: "PIN" }, result: "ok" },
    { case: "pinned digest differs", options: {}, expect: { sha256: "0".repeat(64) }, result: "ChecksumMismatch" },
    { case: "not a livepatch", options: { livepatch: false }, expect: {}, result: "NotALivepatch" },
    { case: "other release", options: { vermagic: "6.1.0-55-amd64" }, expect: {}, result: "VermagicMismatch" },
    { case: "no vermagic word", options: { vermagic: " " }, expect: {}, result: "VermagicMismatch" },
    { case: "expected name matches", options: {}, expect: { expectedName: "livepatch-fix" }, result: "ok" },
    { case: "expected name differs", options: {}, expect: { expectedName: "other" }, result: "InvalidModuleName" },
    { case: "odd module name", options: { name: "bad name" }, expect: {}, result: "InvalidModuleName" },
    { case: "foreign architecture", options: { arch: "aarch64" as const }, expect: {}, result: "WrongArchitecture" },
  ])("$case → $result", ({ options, expect: expectation, result }) => {
    const module = buildSimModule({ name: "livepatch_fix", vermagic: RELEASE, ...options });
    const pinned = expectation.sha256 === "PIN" ? { ...expectation, sha256: sha(module).toUpperCase() } : expectation;
    const outcome = check(options, pinned, module);
    expect(outcome.ok ? "ok" : outcome.reason).toBe(result);
  });

  it("checks the digest before the structure", () => {
    const outcome = check({}, { sha256: "0".repeat(64) }, Buffer.from("garbage"));
    expect(outcome).toMatchObject({ ok: false, reason: "ChecksumMismatch" });
  });

  it("passes parse failures through with a message", () => {
    const outcome = check({}, { file: "x.ko" }, Buffer.from("garbage"));
    expect(outcome).toMatchObject({ ok: false, reason: "NotAnELFModule", message: "x.ko is not a kernel module: no ELF magic" });
  });

  it("names both releases in a vermagic mismatch", () => {
    const outcome = check({ vermagic: "5.10.0-1-amd64" });
    expect(outcome.ok ? "" : outcome.message).toBe("livepatch_fix was built for kernel 5.10.0-1-amd64, the target is 6.1.0-56-amd64");
  });
});
