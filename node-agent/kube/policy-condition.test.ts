import { describe, expect, it } from "vitest";
import type { Condition } from "../../crds/schema.ts";
import { decideNodeWritePolicy, type PolicyProbe } from "./policy-check.ts";
import { conditionWritten, nodeWritePolicyCondition, withTransitionTimes } from "./policy-condition.ts";

const denied: PolicyProbe = { kind: "denied", target: "b", by: "admission", message: "denied" };
const allowed: PolicyProbe = { kind: "allowed", target: "b" };
const unknown: PolicyProbe = { kind: "unknown", detail: "there is no other node's KernelLivePatchNode to try the write on" };

describe("nodeWritePolicyCondition", () => {
  it.each<[string, PolicyProbe, boolean, Partial<Condition>]>([
    ["refused: True, the policy holds", denied, false, { status: "True", reason: "NodeWritePolicyEnforced" }],
    ["allowed, not acting: False, NodeWritePolicyMissing", allowed, false, { status: "False", reason: "NodeWritePolicyMissing" }],
    ["allowed, acting without it: still False, NodeWritePolicyMissing", allowed, true, { status: "False", reason: "NodeWritePolicyMissing" }],
    ["could not tell: Unknown", unknown, false, { status: "Unknown", reason: "NodeWritePolicyUnverified" }],
  ])("%s", (_n, probe, allow, want) => {
    const verdict = decideNodeWritePolicy(probe, "a", allow);
    // The verdict's message is what the admin reads on the object.
    expect(nodeWritePolicyCondition(verdict)).toEqual({ type: "NodeWritePolicy", message: verdict.message, ...want });
  });
});

describe("withTransitionTimes", () => {
  const T0 = "2026-12-01T00:00:00.000Z";
  const now = new Date("2026-12-03T16:00:00.000Z");
  const missing = nodeWritePolicyCondition(decideNodeWritePolicy(allowed, "a", false));
  const enforced = nodeWritePolicyCondition(decideNodeWritePolicy(denied, "a", false));
  const was = (c: typeof missing, message = c.message): Condition[] => [{ ...c, message, lastTransitionTime: T0 }];
  it.each<[string, Condition[] | undefined, typeof missing, string]>([
    ["first written: now", undefined, missing, now.toISOString()],
    ["same status: kept", was(missing), missing, T0],
    ["same status, another message: kept", was(missing, "older words"), missing, T0],
    ["status changed: now", was(missing), enforced, now.toISOString()],
    ["another condition type on the object: now", [{ ...missing, type: "Other", lastTransitionTime: T0 }], missing, now.toISOString()],
  ])("%s", (_n, written, next, time) => {
    expect(withTransitionTimes([next], written, now)).toEqual([{ ...next, lastTransitionTime: time }]);
  });
});

describe("conditionWritten", () => {
  const missing = nodeWritePolicyCondition(decideNodeWritePolicy(allowed, "a", false));
  it.each<[string, Condition[] | undefined, boolean]>([
    ["nothing on the object", undefined, false],
    ["as decided", [{ ...missing, lastTransitionTime: "2026-12-01T00:00:00Z" }], true],
    ["another message", [{ ...missing, message: "x", lastTransitionTime: "2026-12-01T00:00:00Z" }], false],
    ["another status", [{ ...missing, status: "True", lastTransitionTime: "2026-12-01T00:00:00Z" }], false],
  ])("%s", (_n, written, want) => expect(conditionWritten(missing, written)).toBe(want));
});
