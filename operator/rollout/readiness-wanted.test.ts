import { describe, expect, it } from "vitest";
import type { NodeEntry } from "../../crds/schema.ts";
import { GATE_LOOKBACK_MS, readinessWanted, UNLOAD_QUIET_MS, type ReadinessWantedInput } from "./readiness-wanted.ts";

const T0 = Date.parse("2026-12-03T12:00:00Z");
const at = (s: number) => new Date(T0 + s * 1000);
const entry = (nodeName: string, phase: NodeEntry["phase"], loadedAtS = 0, observedGeneration = 1): NodeEntry => ({
  nodeName,
  phase,
  observedGeneration,
  lastTransitionTime: at(loadedAtS).toISOString(),
});

const base = (o: Partial<ReadinessWantedInput>): ReadinessWantedInput => ({
  generation: 1,
  soakSeconds: 300,
  entries: [entry("n1", "Loaded")],
  targeted: new Set(["n1"]),
  now: at(100),
  readySeenAt: () => undefined,
  ...o,
});
const lookback = GATE_LOOKBACK_MS / 1000;
const quiet = UNLOAD_QUIET_MS / 1000;

describe("readinessWanted", () => {
  it.each([
    ["a Loaded node in its soak", base({}), ["n1"]],
    ["a Loaded node in its soak, seen Ready during it: still (it may go NotReady before the soak ends)", base({ readySeenAt: () => T0 + 200_000 }), ["n1"]],
    ["the soak over, not seen Ready since it ended: wanted (the gate's verdict)", base({ now: at(301), readySeenAt: () => T0 + 200_000 }), ["n1"]],
    ["the soak over and the Node seen Ready after it: settled", base({ now: at(301), readySeenAt: () => T0 + 301_000 }), []],
    ["the soak over longer than the look-back: not judged any more", base({ now: at(300 + lookback + 1) }), []],
    ["within the look-back (an operator that started after the soak ended)", base({ now: at(300 + lookback - 1) }), ["n1"]],
    ["no soak: no gate", base({ soakSeconds: 0 }), []],
    ["still Loading: no gate yet", base({ entries: [entry("n1", "Loading")] }), []],
    ["Loaded for an earlier generation", base({ generation: 2 }), []],
    ["Loaded but no longer targeted", base({ targeted: new Set() }), []],
    [
      "deleting: the nodes admitted to unload that have not reported it and stayed silent since their admission",
      base({
        soakSeconds: 0,
        entries: [entry("n1", "Loaded"), entry("n2", "Unloading"), entry("n3", "Unloaded"), entry("n4", "Loaded"), entry("n5", "Loaded"), entry("n6", "Loaded")],
        targeted: new Set(["n1", "n2", "n3", "n4", "n5", "n6"]),
        deletion: {
          admitted: new Set(["n1", "n2", "n3", "n5", "n6"]),
          admittedAt: new Map([
            ["n1", at(100 - quiet)],
            ["n2", at(100 - quiet - 50)],
            ["n3", at(0)],
            ["n5", at(100 - quiet + 1)],
          ]),
        },
      }),
      ["n1", "n2"],
    ],
    ["deleting, none admitted yet", base({ soakSeconds: 0, deletion: { admitted: new Set(), admittedAt: new Map() } }), []],
  ] as const)("%s", (_name, input, want) => {
    expect(readinessWanted(input)).toEqual(want);
  });
});
