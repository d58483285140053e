import { describe, expect, it } from "vitest";
import { leaseAction, microTime } from "./lease-decision.ts";

const now = new Date("2026-11-27T12:00:30.000Z");
describe("leaseAction", () => {
  it.each<[string, Parameters<typeof leaseAction>[0], string]>([
    ["no lease", undefined, "create"],
    ["mine", { holderIdentity: "me", renewTime: "2026-11-27T12:00:00.000000Z", leaseDurationSeconds: 15 }, "renew"],
    ["someone else, fresh", { holderIdentity: "other", renewTime: "2026-11-27T12:00:20.000000Z", leaseDurationSeconds: 15 }, "wait"],
    ["someone else, expired", { holderIdentity: "other", renewTime: "2026-11-27T12:00:00.000000Z", leaseDurationSeconds: 15 }, "acquire"],
    ["released", { holderIdentity: "", renewTime: undefined }, "acquire"],
  ])("%s → %s", (_n, lease, action) => expect(leaseAction(lease, "me", now, 15)).toBe(action));
  it("formats MicroTime with six digits", () => expect(microTime(now)).toBe("2026-11-27T12:00:30.000000Z"));
});
