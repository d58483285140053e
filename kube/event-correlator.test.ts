import { describe, expect, it } from "vitest";
import { EventCorrelator, Lru, perObject, perSource, type CorrelatorOptions, type EventOccurrence } from "./event-correlator.ts";

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 27);

const ev = (o: Partial<Omit<EventOccurrence, "involvedObject">> & { object?: string; uid?: string; kind?: string } = {}): EventOccurrence => ({
  involvedObject: { apiVersion: "v1", kind: o.kind ?? "Node", name: o.object ?? "n1", uid: o.uid ?? "u1" },
  source: o.source ?? { component: "kpatch-agent", host: "n1" },
  type: o.type ?? "Warning",
  reason: o.reason ?? "Failed",
  message: o.message ?? "boom",
});

/** Feeds [minutes after T0, event] steps and returns each decision as "create 1" / "patch 3" / "drop". */
function run(steps: ReadonlyArray<readonly [number, EventOccurrence]>, opts: CorrelatorOptions = {}): string[] {
  const c = new EventCorrelator({ nameTag: "t", ...opts });
  return steps.map(([min, e]) => {
    const d = c.observe(e, T0 + min * MIN);
    return d.action === "drop" ? "drop" : `${d.action} ${d.count}`;
  });
}

describe("EventCorrelator", () => {
  const cases: Array<{ name: string; steps: ReadonlyArray<readonly [number, EventOccurrence]>; opts?: CorrelatorOptions; want: string[] }> = [
    { name: "the same event twice: one create, then a patch with count 2", steps: [[0, ev()], [1, ev()]], want: ["create 1", "patch 2"] },
    { name: "a third time: count 3", steps: [[0, ev()], [1, ev()], [2, ev()]], want: ["create 1", "patch 2", "patch 3"] },
    { name: "a different message: two creates", steps: [[0, ev()], [0, ev({ message: "other" })]], want: ["create 1", "create 1"] },
    { name: "a different reason: two creates", steps: [[0, ev()], [0, ev({ reason: "Other" })]], want: ["create 1", "create 1"] },
    { name: "a different type: two creates", steps: [[0, ev()], [0, ev({ type: "Normal" })]], want: ["create 1", "create 1"] },
    { name: "another object: two creates", steps: [[0, ev()], [0, ev({ object: "n2" })]], want: ["create 1", "create 1"] },
    { name: "another uid (the object recreated): two creates", steps: [[0, ev()], [0, ev({ uid: "u2" })]], want: ["create 1", "create 1"] },
    { name: "another kind of the same name: two creates", steps: [[0, ev()], [0, ev({ kind: "KernelLivePatch" })]], want: ["create 1", "create 1"] },
    { name: "another source: two creates", steps: [[0, ev()], [0, ev({ source: { component: "kpatch-agent", host: "n2" } })]], want: ["create 1", "create 1"] },
    { name: "10 minutes after the last occurrence: still a patch", steps: [[0, ev()], [10, ev()]], want: ["create 1", "patch 2"] },
    { name: "more than 10 minutes after: a new create", steps: [[0, ev()], [10.01, ev()], [11, ev()]], want: ["create 1", "create 1", "patch 2"] },
    { name: "the window runs from the last occurrence, not the first", steps: [[0, ev()], [9, ev()], [18, ev()]], want: ["create 1", "patch 2", "patch 3"] },
    { name: "a clock going back: a new create rather than a patch back in time", steps: [[5, ev()], [1, ev()]], want: ["create 1", "create 1"] },
    {
      name: "the bucket exhausted: dropped",
      opts: { burst: 3 },
      steps: [[0, ev()], [0, ev()], [0, ev()], [0, ev()], [0, ev({ message: "other" })]],
      want: ["create 1", "patch 2", "patch 3", "drop", "drop"],
    },
    {
      name: "a refilled token lets one more through, counting on from the last written",
      opts: { burst: 2, refillMs: 5 * MIN },
      steps: [[0, ev()], [0, ev()], [0, ev()], [4, ev()], [5, ev()], [5, ev()]],
      want: ["create 1", "patch 2", "drop", "drop", "patch 3", "drop"],
    },
    {
      name: "the bucket never holds more than the burst",
      opts: { burst: 2, refillMs: MIN, windowMs: 1000 * MIN },
      steps: [[0, ev()], [600, ev()], [600, ev()], [600, ev()]],
      want: ["create 1", "patch 2", "patch 3", "drop"],
    },
    {
      name: "client-go's bucket is per object and type: another object has its own",
      opts: { burst: 1 },
      steps: [[0, ev()], [0, ev()], [0, ev({ object: "n2" })], [0, ev({ type: "Normal" })]],
      want: ["create 1", "drop", "create 1", "create 1"],
    },
    {
      name: "per source: one bucket for every object",
      opts: { burst: 2, rateKey: perSource },
      steps: [[0, ev()], [0, ev({ object: "p", kind: "KernelLivePatch" })], [0, ev({ object: "n2", type: "Normal" })]],
      want: ["create 1", "create 1", "drop"],
    },
    { name: "defaults: a burst of 25", steps: Array.from({ length: 27 }, () => [0, ev()] as const), want: [...Array.from({ length: 25 }, (_, i) => (i ? `patch ${i + 1}` : "create 1")), "drop", "drop"] },
    {
      name: "defaults: then one every 5 minutes",
      steps: [...Array.from({ length: 26 }, () => [0, ev()] as const), [4.9, ev()], [5, ev()], [5, ev()]],
      want: [...Array.from({ length: 25 }, (_, i) => (i ? `patch ${i + 1}` : "create 1")), "drop", "drop", "patch 26", "drop"],
    },
  ];
  it.each(cases)("$name", ({ steps, opts, want }) => {
    expect(run(steps, opts)).toEqual(want);
  });

  it("a patch names the Event its create named, and keeps its first timestamp", () => {
    const c = new EventCorrelator({ nameTag: "t" });
    const a = c.observe(ev(), T0);
    const b = c.observe(ev(), T0 + MIN);
    expect(a).toMatchObject({ action: "create", name: `n1.${T0.toString(16)}t0`, firstTimestamp: T0, lastTimestamp: T0 });
    expect(b).toMatchObject({ action: "patch", name: a.action === "create" ? a.name : "", count: 2, firstTimestamp: T0, lastTimestamp: T0 + MIN });
  });

  it("names are unique within a recorder and valid however long the object's name", () => {
    const c = new EventCorrelator({ nameTag: "Ab_9" });
    const long = `${"a".repeat(250)}.b`;
    const names = [c.observe(ev({ object: long }), T0), c.observe(ev({ object: long, message: "2" }), T0)].map((d) => (d.action === "drop" ? "" : d.name));
    expect(new Set(names).size).toBe(2);
    for (const n of names) expect(n).toMatch(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/), expect(n.length).toBeLessThanOrEqual(253);
  });

  it("the counts: created, patched, dropped", () => {
    const c = new EventCorrelator({ burst: 3 });
    for (let i = 0; i < 10; i++) c.observe(ev(), T0);
    expect(c.stats).toEqual({ created: 1, patched: 2, dropped: 7 });
  });

  it("the LRU bound holds: at most maxKeys keys, the least recently used forgotten first", () => {
    const c = new EventCorrelator({ maxKeys: 3, burst: 1e9 });
    const at = (msg: string) => {
      const d = c.observe(ev({ message: msg }), T0);
      return d.action === "drop" ? "drop" : `${d.action} ${d.count}`;
    };
    expect(["a", "b", "c", "a", "d"].map(at)).toEqual(["create 1", "create 1", "create 1", "patch 2", "create 1"]);
    expect(c.size).toBe(3);
    // b was the least recently used when d came: forgotten; a and c are still remembered.
    expect(["a", "c", "b"].map(at)).toEqual(["patch 3", "patch 2", "create 1"]);
    for (let i = 0; i < 10_000; i++) at(`m${i}`);
    expect(c.size).toBe(3);
  });

  it("the rate buckets are bounded too: an object pushed out starts again with a full bucket", () => {
    const c = new EventCorrelator({ maxKeys: 2, burst: 1, rateKey: perObject });
    const at = (object: string) => c.observe(ev({ object }), T0).action;
    expect(["n1", "n1", "n2", "n3", "n1"].map(at)).toEqual(["create", "drop", "create", "create", "create"]);
  });

  it("forget: the next same event creates again, unless a newer Event took the key", () => {
    const c = new EventCorrelator();
    const a = c.observe(ev(), T0);
    c.forget(a.key, a.action === "drop" ? "" : a.name);
    expect(c.observe(ev(), T0).action).toBe("create");
    c.forget(a.key, a.action === "drop" ? "" : a.name); // the old name: the new Event stays
    expect(c.observe(ev(), T0)).toMatchObject({ action: "patch", count: 2 });
  });
});

describe("Lru", () => {
  it("keeps at most its size, dropping the least recently used", () => {
    const l = new Lru<string, number>(2);
    l.set("a", 1);
    l.set("b", 2);
    l.get("a");
    l.set("c", 3);
    expect([l.get("a"), l.get("b"), l.get("c"), l.size]).toEqual([1, undefined, 3, 2]);
  });
});
