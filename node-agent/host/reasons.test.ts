import { describe, expect, it } from "vitest";
import { hostError, HostError, isHostError } from "./host-error.ts";
import { describeReason, isReason, REASON_CODES, REASONS } from "./reasons.ts";

describe("reason catalog", () => {
  it.each(REASON_CODES)("%s has a message and an action", (reason) => {
    expect(REASONS[reason].message.length).toBeGreaterThan(10);
    expect(REASONS[reason].action.length).toBeGreaterThan(10);
  });

  it.each([
    { reason: "ModuleInUse" as const, params: { name: "p", refcnt: 1 }, message: "module p is still in use (refcnt 1)" },
    { reason: "ModuleInUse" as const, params: { name: "p" }, message: "module p is still in use (refcnt ?)" },
    { reason: "ModulesDisabled" as const, params: {}, message: "module loading is disabled on this node (kernel.modules_disabled=1)" },
  ])("describes $reason", ({ reason, params, message }) => {
    expect(describeReason(reason, params)).toBe(message);
  });

  it.each([
    { value: "Busy", known: true },
    { value: "toString", known: false },
    { value: 3, known: false },
  ])("isReason($value) = $known", ({ value, known }) => {
    expect(isReason(value)).toBe(known);
  });
});

describe("HostError", () => {
  it("carries reason, details and cause", () => {
    const cause = new Error("EBUSY");
    const error = hostError("Busy", { detail: "x" }, { details: { errno: "EBUSY" }, cause });
    expect(error).toBeInstanceOf(Error);
    expect(isHostError(error)).toBe(true);
    expect(error.reason).toBe("Busy");
    expect(error.message).toBe("the kernel is busy: x");
    expect(error.cause).toBe(cause);
    expect(JSON.parse(JSON.stringify(error))).toEqual({ reason: "Busy", message: "the kernel is busy: x", details: { errno: "EBUSY" } });
  });

  it("serialises without details", () => {
    expect(new HostError("HostIOError", "m").toJSON()).toEqual({ reason: "HostIOError", message: "m" });
  });
});
