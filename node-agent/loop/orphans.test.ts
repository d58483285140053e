import { describe, expect, it } from "vitest";
import type { RecordedModule } from "../host/agent-record.ts";
import { orphanPlan, type OrphanInput } from "./orphans.ts";
import type { HostView } from "./plan.ts";

const owner = (uid: string): RecordedModule => ({ patch: `patch-${uid}`, uid, sha256: "1".repeat(64) });
const host = (h: Partial<HostView> = {}): HostView => ({ bootId: "b", now: 0, livepatches: [], modules: [], installed: [], blockers: [], ...h });
const live = (name: string) => ({ name, enabled: true, transition: false });

const input = (o: Partial<OrphanInput> & { due?: Record<string, number> } = {}): OrphanInput => ({
  record: new Map([
    ["klp_a", owner("gone-1")],
    ["klp_b", owner("gone-2")],
  ]),
  owners: new Set(["kept"]),
  host: host({ livepatches: [live("klp_a"), live("klp_b")] }),
  mayAct: true,
  now: 1000,
  ...o,
  dueInMs: (key) => o.due?.[key] ?? 0,
});

/** One line: what is forgotten, the step, the wait. */
function summary(o: OrphanInput): string {
  const p = orphanPlan(o);
  return [`forget [${p.forget.join(",")}]`, p.step ? `${p.step.action.op} ${p.step.name}` : "no step", p.waitMs === undefined ? "" : `wait ${p.waitMs}`].join(" ").trim();
}

describe("orphanPlan", () => {
  it.each<[string, OrphanInput, string]>([
    ["two orphans live: the first comes off, one per pass", input(), "forget [] unload klp_a"],
    ["a leftover in the kernel: removed", input({ host: host({ modules: [{ name: "klp_a", leftover: true }] }) }), "forget [klp_b] removeLeftover klp_a"],
    ["only staged: uninstalled", input({ host: host({ installed: [{ name: "klp_b", sha256: "x" }] }) }), "forget [klp_a] uninstall klp_b"],
    ["nothing of them on the host: both records go", input({ host: host() }), "forget [klp_a,klp_b] no step"],
    ["a module whose patch is still listed stays", input({ owners: new Set(["gone-1", "gone-2"]) }), "forget [] no step"],
    ["the agent may not act (stopping, acted, or no node object): records still go, nothing moves", input({ mayAct: false, host: host({ livepatches: [live("klp_b")] }) }), "forget [klp_a] no step"],
    ["the first failed before and waits: the next comes off, the wait is said", input({ due: { "orphan klp_a": 30_000 } }), "forget [] unload klp_b wait 30000"],
    ["both wait: the nearer wait", input({ due: { "orphan klp_a": 30_000, "orphan klp_b": 5000 } }), "forget [] no step wait 5000"],
  ])("%s", (_case, i, expected) => {
    expect(summary(i)).toBe(expected);
  });
});
