import { describe, expect, it } from "vitest";
import { leaseAction, microTime, type LeaseAction, type LeaseObservation, type LeaseView } from "./lease-decision.ts";

const T0 = new Date("2026-11-27T12:00:30.000Z").getTime();
const DURATION = 15;
/** A time `s` seconds from T0, as a holder writes it (possibly with a skewed clock). */
const stamp = (s: number) => microTime(new Date(T0 + s * 1000));
const held = (renewAtSeconds: number, o: Partial<LeaseView> = {}): LeaseView => ({
  holderIdentity: "other",
  renewTime: stamp(renewAtSeconds),
  acquireTime: stamp(-600),
  leaseDurationSeconds: DURATION,
  leaseTransitions: 1,
  ...o,
});

/** Local time in seconds after T0, and the lease as read then. */
type Step = [number, LeaseView | undefined];

/** The actions of one elector reading the lease at each step, keeping its observation between them. */
function run(steps: Step[]): LeaseAction[] {
  let observed: LeaseObservation | undefined;
  return steps.map(([s, lease]) => {
    const d = leaseAction(lease, "me", observed, new Date(T0 + s * 1000), DURATION);
    observed = d.observed;
    return d.action;
  });
}

describe("leaseAction", () => {
  it.each<[string, Step[], LeaseAction[]]>([
    ["no lease", [[0, undefined]], ["create"]],
    ["mine", [[0, { ...held(-30), holderIdentity: "me" }]], ["renew"]],
    ["released", [[0, { holderIdentity: "", renewTime: undefined }]], ["acquire"]],
    ["someone else renewing on time", [[0, held(0)], [2, held(2)], [20, held(20)], [40, held(40)]], ["wait", "wait", "wait", "wait"]],
    [
      "someone else stopped renewing: expired once unchanged for the duration of local time, not before",
      [[0, held(0)], [15, held(0)], [15.001, held(0)]],
      ["wait", "wait", "acquire"],
    ],
    [
      // A standby that starts after the holder died cannot tell an old renewTime from a skewed one:
      // it waits a whole lease duration from its own first look, as client-go does.
      "a record seen for the first time is waited for, however old its renewTime",
      [[0, held(-3600)], [10, held(-3600)], [16, held(-3600)]],
      ["wait", "wait", "acquire"],
    ],
    [
      "the holder's clock an hour ahead, stopped renewing: taken over after the duration",
      [[0, held(3600)], [2, held(3602)], [10, held(3602)], [17.5, held(3602)]],
      ["wait", "wait", "wait", "acquire"],
    ],
    [
      "the holder's clock an hour behind, still renewing: never taken over",
      [[0, held(-3600)], [2, held(-3598)], [20, held(-3580)], [40, held(-3560)], [60, held(-3540)]],
      ["wait", "wait", "wait", "wait", "wait"],
    ],
    [
      "a change of holder is a change of the record: the new holder's lease counts from when it was seen",
      [[0, held(0)], [14, held(0, { holderIdentity: "third", leaseTransitions: 2 })], [20, held(0, { holderIdentity: "third", leaseTransitions: 2 })], [29.5, held(0, { holderIdentity: "third", leaseTransitions: 2 })]],
      ["wait", "wait", "wait", "acquire"],
    ],
    [
      "the record's own leaseDurationSeconds counts",
      [[0, held(0, { leaseDurationSeconds: 60 })], [20, held(0, { leaseDurationSeconds: 60 })], [61, held(0, { leaseDurationSeconds: 60 })]],
      ["wait", "wait", "acquire"],
    ],
  ])("%s", (_n, steps, actions) => expect(run(steps)).toEqual(actions));

  it("keeps the observation while the record is unchanged, and replaces it when it changes", () => {
    const first = leaseAction(held(0), "me", undefined, new Date(T0), DURATION).observed;
    expect(leaseAction(held(0), "me", first, new Date(T0 + 5000), DURATION).observed).toBe(first);
    expect(leaseAction(held(5), "me", first, new Date(T0 + 5000), DURATION).observed?.at).toBe(T0 + 5000);
  });

  it("formats MicroTime with six digits", () => expect(microTime(new Date(T0))).toBe("2026-11-27T12:00:30.000000Z"));
});
