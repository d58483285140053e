/**
 * The controller's loop over admit() with its memory: decide, remember, decide again later. The
 * clocks that status.rollout cannot keep (admission times, health-gate verdicts) come from here.
 */
import { describe, expect, it } from "vitest";
import type { NodeEntry } from "../../crds/schema.ts";
import { admit, type AdmitInput } from "./admit.ts";
import { RolloutMemories } from "./memory.ts";
import type { NodeReadiness } from "./settled.ts";

const t0 = new Date("2026-11-27T12:00:00Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);

function loop(rollout: Partial<AdmitInput["spec"]["rollout"]> = {}) {
  const memories = new RolloutMemories();
  let previous: AdmitInput["previous"];
  return {
    memories,
    step(now: Date, entries: NodeEntry[] = [], readiness = new Map<string, NodeReadiness>(), generation = 1) {
      const memory = memories.of("p", "uid-1", generation);
      const r = admit({
        generation,
        spec: { state: "Loaded", rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0, ...rollout } },
        targeted: ["n1", "n2"],
        entries: new Map(entries.map((e) => [e.nodeName, e])),
        previous,
        now,
        readiness,
        ...memory.input,
      });
      previous = r.rollout;
      return { ...r, announced: memory.remember(r, now) };
    },
  };
}

describe("admit with the controller's memory", () => {
  it("a node admitted that never reports fails at its deadline, counted from its admission, announced once", () => {
    const l = loop();
    expect(l.step(t0).newlyAdmitted).toEqual(["n1"]);
    const early = l.step(at(300));
    expect([early.failed, early.requeueAfterMs]).toEqual([0, 300_000]);
    const late = l.step(at(600));
    expect(late.derived.get("n1")?.reason).toBe("ProgressDeadlineExceeded");
    expect(late.rollout.halted).toBe(true);
    expect(late.announced.map(([n, f]) => `${n}/${f.reason}`)).toEqual(["n1/ProgressDeadlineExceeded"]);
    expect(l.step(at(700)).announced).toEqual([]);
  });

  it("a new generation starts the clocks again", () => {
    const l = loop();
    l.step(t0);
    expect(l.step(at(599), [], new Map(), 2).failed).toBe(0); // n1 admitted afresh for generation 2 at 599 s
    expect(l.step(at(1198), [], new Map(), 2).failed).toBe(0);
    expect(l.step(at(1199), [], new Map(), 2).failed).toBe(1);
  });

  it("a loaded node that leaves the selector an hour later gets a fresh clock for its unload", () => {
    const memory = new RolloutMemories().of("p", "uid-1", 1);
    let previous: AdmitInput["previous"];
    const loaded: NodeEntry = { nodeName: "n1", phase: "Loaded", observedGeneration: 1, lastTransitionTime: at(10).toISOString() };
    const step = (now: Date, targeted: string[], entries: NodeEntry[]) => {
      const r = admit({
        generation: 1,
        spec: { state: "Loaded", rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 } },
        targeted,
        entries: new Map(entries.map((e) => [e.nodeName, e])),
        previous,
        now,
        ...memory.input,
      });
      previous = r.rollout;
      memory.remember(r, now);
      return r;
    };
    expect(step(t0, ["n1"], []).newlyAdmitted).toEqual(["n1"]);
    step(at(10), ["n1"], [loaded]);
    const left = step(at(3600), [], [loaded]);
    expect([left.rollout.admitted, left.failed, left.derived.size]).toEqual([["n1"], 0, 0]);
    expect(step(at(3600 + 599), [], [loaded]).derived.size).toBe(0);
    expect(step(at(3600 + 600), [], [loaded]).derived.get("n1")?.message).toBe("n1 made no progress within 600 s (Loaded since 2026-11-27T12:00:10.000Z)");
  });

  it("a health-gate failure outlives its evidence: the Node Ready again, the soak over", () => {
    const l = loop({ soakSeconds: 300 });
    l.step(t0);
    const loaded: NodeEntry = { nodeName: "n1", phase: "Loaded", observedGeneration: 1, lastTransitionTime: at(10).toISOString() };
    const failed = l.step(at(60), [loaded], new Map([["n1", { ready: false, since: at(50).toISOString() }]]));
    expect(failed.derived.get("n1")?.reason).toBe("NodeNotReadyDuringSoak");
    const recovered = l.step(at(1000), [loaded], new Map([["n1", { ready: true, since: at(900).toISOString() }]]));
    expect(recovered.rollout).toEqual({ generation: 1, admitted: ["n1"], halted: true });
    // A restart (fresh memory) forgets it: the README says so.
    expect(new RolloutMemories().of("p", "uid-1", 1).input.gateFailed?.size).toBe(0);
  });
});
