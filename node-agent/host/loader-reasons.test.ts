import { describe, expect, it } from "vitest";
import { insmodReason, rmmodReason, sysfsWriteReason, type InsmodContext } from "./loader-reasons.ts";

const host: InsmodContext = {
  sigEnforce: false,
  lockdown: "none",
  modulesDisabled: false,
  livepatchSupported: true,
  ftraceEnabled: true,
};

describe("insmodReason", () => {
  it.each([
    { code: "ENOEXEC", ctx: {}, reason: "InvalidModuleFormat" },
    { code: "ENOEXEC", ctx: { livepatchSupported: false }, reason: "LivepatchUnsupported" },
    { code: "ENOENT", ctx: {}, reason: "UnknownSymbol" },
    { code: "ESRCH", ctx: {}, reason: "InvalidParameters" },
    { code: "EINVAL", ctx: {}, reason: "InvalidParameters" },
    { code: "EEXIST", ctx: {}, reason: "AlreadyLoaded" },
    { code: "EBUSY", ctx: {}, reason: "Busy" },
    { code: "EBUSY", ctx: { ftraceEnabled: false }, reason: "FtraceDisabled" },
    { code: "EPERM", ctx: {}, reason: "PermissionDenied" },
    { code: "EPERM", ctx: { modulesDisabled: true }, reason: "ModulesDisabled" },
    { code: "EPERM", ctx: { lockdown: "integrity" as const }, reason: "LockdownDenied" },
    // A signed module whose key no keyring holds is refused by lockdown just as an unsigned one
    // (module_sig_check: ENOKEY, not enforced → security_locked_down → EPERM).
    { code: "EPERM", ctx: { lockdown: "confidentiality" as const }, reason: "LockdownDenied" },
    { code: "EKEYREJECTED", ctx: { sigEnforce: true }, reason: "SignatureRejected" },
    { code: "EWOULDBLOCK", ctx: {}, reason: "Busy" },
    { code: "EIO", ctx: {}, reason: "LoadFailed" },
  ] as const)("$code with $ctx → $reason", ({ code, ctx, reason }) => {
    expect(insmodReason(code, { ...host, ...ctx })).toBe(reason);
  });
});

describe("rmmodReason", () => {
  it.each([
    { code: "EWOULDBLOCK", modulesDisabled: false, reason: "ModuleInUse" },
    { code: "EBUSY", modulesDisabled: false, reason: "ModuleInUse" },
    { code: "EPERM", modulesDisabled: false, reason: "PermissionDenied" },
    { code: "EPERM", modulesDisabled: true, reason: "ModulesDisabled" },
    { code: "EIO", modulesDisabled: false, reason: "UnloadFailed" },
  ] as const)("$code (modules_disabled=$modulesDisabled) → $reason", ({ code, modulesDisabled, reason }) => {
    expect(rmmodReason(code, { modulesDisabled })).toBe(reason);
  });
});

describe("sysfsWriteReason", () => {
  it.each([
    { code: "EBUSY", reason: "Busy" },
    { code: "EPERM", reason: "PermissionDenied" },
    { code: "ENOENT", reason: "NotInstalled" },
    { code: "EINVAL", reason: "TransitionFailed" },
    { code: "EIO", reason: "HostIOError" },
  ] as const)("$code → $reason", ({ code, reason }) => {
    expect(sysfsWriteReason(code)).toBe(reason);
  });
});
