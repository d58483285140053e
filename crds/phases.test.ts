import { describe, expect, it } from "vitest";
import { CHANGING_PHASES, CLEAN_PHASES, DONE_PHASES, FAILED_PHASES, NO_ENTRY, PHASE_TRANSITIONS, transitionAllowed, UNLOADED_PHASES, type PhaseOrNone } from "./phases.ts";
import { NodePhase } from "./schema.ts";

const PHASES = NodePhase.options;
const asPhase = (p: PhaseOrNone) => (p === NO_ENTRY ? undefined : p);

describe("phase sets", () => {
  it("hold only schema phases, and the failed, clean and changing ones are apart", () => {
    for (const set of [FAILED_PHASES, CLEAN_PHASES, CHANGING_PHASES, UNLOADED_PHASES, ...Object.values(DONE_PHASES)]) {
      for (const p of set) expect(PHASES).toContain(p);
    }
    for (const p of FAILED_PHASES) expect([...CLEAN_PHASES, ...CHANGING_PHASES]).not.toContain(p);
    for (const p of CLEAN_PHASES) expect(CHANGING_PHASES).not.toContain(p);
    for (const p of UNLOADED_PHASES) expect(CLEAN_PHASES).toContain(p);
  });

  it("say what the operator and the agent decide by", () => {
    expect(FAILED_PHASES).toEqual(["Failed", "Stalled"]);
    expect(DONE_PHASES).toEqual({ Loaded: ["Loaded", "Replaced"], Staged: ["Staged"], Unloaded: ["Unloaded"] });
    expect(CLEAN_PHASES).toEqual(["Unloaded", "NotApplicable", "Pending"]);
    expect(UNLOADED_PHASES).toEqual(["Unloaded", "NotApplicable"]);
    expect(CHANGING_PHASES).toEqual(["Staging", "Loading", "Unloading"]);
  });
});

describe("phase transitions", () => {
  it("the table has a row for no entry and for every phase, naming only schema phases", () => {
    expect(Object.keys(PHASE_TRANSITIONS).sort()).toEqual([NO_ENTRY, ...PHASES].sort());
    for (const targets of Object.values(PHASE_TRANSITIONS)) for (const to of targets) expect(PHASES).toContain(to);
  });

  const allowed = Object.entries(PHASE_TRANSITIONS).flatMap(([from, targets]) => targets.map((to) => [from as PhaseOrNone, to] as const));
  it.each(allowed)("%s → %s is allowed", (from, to) => {
    expect(transitionAllowed(asPhase(from), to)).toBe(true);
  });

  it.each(PHASES)("%s → %s (no change) is allowed", (p) => {
    expect(transitionAllowed(p, p)).toBe(true);
  });

  // What the agent tests (node-agent/loop/agent.test.ts) write, each one: the table must allow them.
  it.each<[PhaseOrNone, NodePhase, string]>([
    ["none", "Loading", "an admitted patch starts loading"],
    ["none", "Staging", "an admitted Staged patch starts staging"],
    ["none", "Loaded", "the module is live already (a restart with no entry)"],
    ["none", "NotApplicable", "no module for the node's kernel"],
    ["none", "Failed", "the file was refused before any host action"],
    ["Loading", "Loaded", "the transition completed"],
    ["Loading", "Stalled", "the transition stalled and was reversed"],
    ["Loading", "Failed", "the node rebooted while loading (RebootDuringLoad)"],
    ["Loaded", "Failed", "the node rebooted during the soak (RebootDuringSoak), or ForeignLivepatch"],
    ["Loaded", "Replaced", "another patch's cumulative module replaced it"],
    ["Loaded", "Unloading", "the patch is deleted or Unloaded"],
    ["Loaded", "Loading", "the spec names a rebuild"],
    ["Replaced", "Loading", "the replacing patch went away"],
    ["Staging", "Staged", "staged for boot"],
    ["Staged", "Loading", "the spec moves from Staged to Loaded"],
    ["Unloading", "Unloaded", "unloaded and uninstalled"],
    ["Unloading", "Stalled", "the unload stalled"],
    ["Unloading", "Loading", "the spec moves back to Loaded"],
    ["Stalled", "Loading", "a new generation retries"],
    ["Stalled", "Unloaded", "a retried unload worked (Stalled is kept between retries)"],
  ])("%s → %s is allowed: %s", (from, to) => {
    expect(transitionAllowed(asPhase(from), to)).toBe(true);
  });

  it.each<[PhaseOrNone, NodePhase, string]>([
    ["none", "Pending", "nothing writes Pending"],
    ["Loaded", "Pending", "nothing writes Pending"],
    ["Failed", "Pending", "nothing writes Pending"],
    ["none", "Unloaded", "without an entry there is nothing unloaded to report"],
    ["none", "Stalled", "Loading or Unloading is written before an operation that can stall"],
    ["Pending", "Stalled", "Pending holds nothing"],
    ["Unloaded", "Stalled", "Unloaded holds nothing"],
    ["NotApplicable", "Stalled", "NotApplicable holds nothing"],
    ["Pending", "Replaced", "only a live module is replaced"],
    ["Unloaded", "Replaced", "only a live module is replaced"],
    ["NotApplicable", "Replaced", "only a live module is replaced"],
  ])("%s → %s is not allowed: %s", (from, to) => {
    expect(transitionAllowed(asPhase(from), to)).toBe(false);
  });
});
