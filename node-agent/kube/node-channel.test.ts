import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { KubeHttp } from "../../kube/http-client.ts";
import { ProjectedPatch } from "../loop/projected-patch.ts";
import { nodeChannel, projectedPatches, SUMMARY_MAX, summaryOf } from "./node-channel.ts";

/** A spec as the API server defaulted it on the KernelLivePatch. */
const SPEC = {
  state: "Loaded",
  modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://x.example/a.ko" }],
  rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 },
  transitionTimeoutSeconds: 75,
};

const projection = (name: string, o: { admitted?: boolean; uid?: string; deleting?: boolean; spec?: unknown } = {}) => ({
  name,
  uid: o.uid ?? `uid-${name}`,
  generation: 2,
  creationTimestamp: "2026-11-27T00:00:00Z",
  admitted: o.admitted ?? false,
  ...(o.deleting ? { deletionTimestamp: "2026-11-27T01:00:00Z" } : {}),
  spec: o.spec ?? { state: "Loaded" },
});

describe("projectedPatches", () => {
  it("hands the agent each projected patch as written, with this node's entry for it and the object's version", () => {
    const obj = {
      metadata: { name: "n1", resourceVersion: "42" },
      spec: { patches: [projection("a", { admitted: true }), projection("b", { deleting: true })] },
      status: { entries: [{ patch: "a", patchUID: "uid-a", nodeName: "n1", phase: "Loading" as const }, { patch: "b", patchUID: "old", nodeName: "n1", phase: "Loaded" as const }] },
    };
    const [a, b] = projectedPatches(obj);
    expect(a).toEqual({ patch: projection("a", { admitted: true }), entry: { nodeName: "n1", phase: "Loading" }, resourceVersion: "42" });
    // b's entry belongs to an earlier patch of the same name: not this one's.
    expect(b!.entry).toBeUndefined();
    expect(b!.patch.admitted).toBe(false);
    expect(b!.patch.deletionTimestamp).toBe("2026-11-27T01:00:00Z");
    // What the agent parses: the projection typed by the KernelLivePatchNode schema.
    const parsed = ProjectedPatch.safeParse(projectedPatches({ ...obj, spec: { patches: [projection("a", { admitted: true, spec: SPEC })] } })[0]);
    expect(parsed.success && parsed.data.patch.spec.modules[0]?.kernelRelease).toBe("6.1.0-56-amd64");
  });
});

/** A fake API: records each status apply, answers after `delayMs`, and serves one list. */
function fakeHttp(obj: unknown, delayMs = 20) {
  const applies: Array<{ entries: Array<{ patch: string; phase: string }>; summary?: string; conditions?: unknown[] }> = [];
  let rv = 100;
  let inFlight = 0;
  let maxInFlight = 0;
  const http = {
    async json(method: string, _path: string, opts: { body?: { status?: { entries: Array<{ patch: string; phase: string }> } } }) {
      if (method === "GET") return { items: [obj], metadata: { resourceVersion: "1" } };
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      applies.push(structuredClone(opts.body!.status!));
      await new Promise((r) => setTimeout(r, delayMs));
      inFlight--;
      return { metadata: { resourceVersion: String(++rv) } };
    },
    stream: () => new Promise(() => undefined),
  };
  return { http: http as unknown as KubeHttp, applies, maxInFlight: () => maxInFlight };
}

describe("nodeChannel writes", () => {
  const log = pino({ level: "silent" });
  const obj = {
    metadata: { name: "n1", resourceVersion: "1" },
    spec: { patches: [projection("a"), projection("b")] },
    status: { entries: [{ patch: "b", patchUID: "uid-b", nodeName: "n1", phase: "Loaded" }, { patch: "gone", nodeName: "n1", phase: "Unloaded" }] },
  };

  it("sends every entry of the node in each write, never two at once, coalescing what was set meanwhile", async () => {
    const f = fakeHttp(obj);
    const ch = nodeChannel(f.http, "n1", log);
    let seen: unknown[] = [];
    await ch.start((p) => (seen = p));
    ch.stop();
    expect(seen).toHaveLength(2);
    // The stale entry of a patch no longer projected was dropped by a write of its own.
    await new Promise((r) => setTimeout(r, 50));
    expect(f.applies[0]!.entries.map((e) => e.patch)).toEqual(["b"]);

    const first = ch.api.applyEntry("a", { nodeName: "n1", phase: "Loading" });
    await new Promise((r) => setTimeout(r, 5)); // in flight now
    const second = ch.api.applyEntry("a", { nodeName: "n1", phase: "Loaded" });
    const third = ch.api.applyEntry("b", { nodeName: "n1", phase: "Unloading" });
    const rvs = await Promise.all([first, second, third]);
    expect(f.maxInFlight()).toBe(1);
    // The first went alone; the next two, set while it was in flight, went together after it.
    expect(f.applies.slice(1).map((s) => s.entries.map((e) => `${e.patch}:${e.phase}`))).toEqual([["a:Loading", "b:Loaded"], ["a:Loaded", "b:Unloading"]]);
    expect(rvs[1]).toBe(rvs[2]);
    expect(Number(rvs[1])).toBeGreaterThan(Number(rvs[0]));
    // The one-line summary for kubectl get goes with the entries.
    expect(f.applies.at(-1)!.summary).toBe("a Loaded, b Unloading");
  });
});

describe("nodeChannel conditions", () => {
  const log = pino({ level: "silent" });
  const policy = { type: "NodeWritePolicy", status: "False" as const, reason: "NodeWritePolicyMissing", message: "no policy" };
  const withEntry = {
    metadata: { name: "n1", resourceVersion: "1" },
    spec: { patches: [projection("b")] },
    status: { entries: [{ patch: "b", patchUID: "uid-b", nodeName: "n1", phase: "Loaded" }] },
  };

  it("writes a condition with the entries already on the object, keeping their transition time while the status holds", async () => {
    const T0 = "2026-12-01T00:00:00.000Z";
    const obj = { ...withEntry, status: { ...withEntry.status, conditions: [{ ...policy, message: "older words", lastTransitionTime: T0 }] } };
    const f = fakeHttp(obj, 1);
    const ch = nodeChannel(f.http, "n1", log);
    await ch.watch();
    ch.reportCondition(policy);
    await new Promise((r) => setTimeout(r, 20));
    ch.stop();
    // One write: the entry is not dropped, the time is kept, and the watch was not asked for patches.
    expect(f.applies).toEqual([{ entries: [withEntry.status.entries[0]], summary: "b Loaded", conditions: [{ ...policy, lastTransitionTime: T0 }] }]);
  });

  it("holds a condition set before the object is seen, and writes it once it is; none set, none sent", async () => {
    const f = fakeHttp({ metadata: { name: "n1", resourceVersion: "1" }, spec: { patches: [] } }, 1);
    const quiet = nodeChannel(f.http, "n1", log);
    await quiet.watch();
    await quiet.api.applyEntry("a", { nodeName: "n1", phase: "Pending" });
    quiet.stop();
    expect(f.applies.at(-1)).not.toHaveProperty("conditions");

    const g = fakeHttp({ metadata: { name: "n1", resourceVersion: "1" }, spec: { patches: [] } }, 1);
    const ch = nodeChannel(g.http, "n1", log);
    ch.reportCondition(policy);
    expect(g.applies).toEqual([]);
    await ch.watch();
    await new Promise((r) => setTimeout(r, 20));
    // Before the first entries: an empty set, and the condition.
    expect(g.applies).toMatchObject([{ entries: [], summary: "", conditions: [policy] }]);
    // The same again: written already, no write.
    ch.reportCondition(policy);
    await new Promise((r) => setTimeout(r, 20));
    expect(g.applies).toHaveLength(1);
    // A patch the agent receives later still gets its projection: start after watch replays it.
    let seen: boolean | undefined;
    await ch.start((_p, fromObject) => (seen = fromObject));
    ch.stop();
    expect(seen).toBe(true);
  });
});

describe("summaryOf", () => {
  const entry = (patch: string, phase = "Loaded") => ({ patch, nodeName: "n1", phase }) as Parameters<typeof summaryOf>[0][number];

  it.each([
    [[], ""],
    [[entry("a")], "a Loaded"],
    [[entry("a", "Failed"), entry("b", "Pending")], "a Failed, b Pending"],
  ])("%j -> %j", (entries, text) => expect(summaryOf(entries)).toBe(text));

  it("stays within the schema's limit, counting what it leaves out", () => {
    const many = Array.from({ length: 1000 }, (_, i) => entry(`${"p".repeat(60)}-${i}`, "Loading"));
    const text = summaryOf(many);
    expect(text.length).toBeLessThanOrEqual(SUMMARY_MAX);
    const shown = text.split(", ").length - 1;
    expect(text).toMatch(new RegExp(`, and ${1000 - shown} more$`));
    expect(text.startsWith(`${"p".repeat(60)}-0 Loading`)).toBe(true);
  });
});
