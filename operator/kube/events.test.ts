// The decisions of the operator's event bound, pure; what reaches the API server (one Event per
// repeat, its count, the order of writes) is tested against a real one in
// test/integration/operator-clients.test.ts.
import { createServer } from "node:net";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { EventCorrelator, type EventDecision, type EventOccurrence } from "../../kube/event-correlator.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { eventRecorder, OPERATOR_EVENT_BOUND, patchReference } from "./events.ts";

const NOW = Date.parse("2026-12-03T12:00:00Z");
const on = (reason: string, message: string, type: "Normal" | "Warning" = "Normal"): EventOccurrence => ({
  involvedObject: patchReference({ name: "p", uid: "u" }),
  source: { component: "kpatch-operator" },
  type,
  reason,
  message,
});
const decide = (events: EventOccurrence[]): EventDecision[] => {
  const c = new EventCorrelator(OPERATOR_EVENT_BOUND);
  return events.map((e) => c.observe(e, NOW));
};
const writes = (ds: EventDecision[]) => ds.filter((d) => d.action !== "drop");

/** A local port nothing listens on: a connection there is refused at once. */
async function refusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe("the operator's event bound", () => {
  it("1000 identical Warning events on a patch make at most 26 API writes: one create, then patches of its count", () => {
    const ds = decide(Array.from({ length: 1000 }, () => on("RolloutHalted", "3 of 10 nodes failed", "Warning")));
    const w = writes(ds);
    expect(w.length).toBeGreaterThan(0);
    expect(w.length).toBeLessThanOrEqual(26);
    expect(w[0]).toMatchObject({ action: "create", count: 1 });
    expect(w.slice(1).map((d) => [d.action, d.name, d.count])).toEqual(w.slice(1).map((_, i) => ["patch", w[0]!.name, i + 2]));
    expect(ds.filter((d) => d.action === "drop")).toHaveLength(1000 - w.length);
  });

  it("a RolloutComplete still gets through after a long rollout's progress events", () => {
    const ds = decide([...Array.from({ length: 100 }, (_, i) => on("Loaded", `klp loaded on ${i} nodes`)), on("RolloutComplete", "done")]);
    expect(writes(ds).filter((d) => d.key.includes("Loaded")).length).toBeLessThanOrEqual(25);
    expect(ds.at(-1)).toMatchObject({ action: "create" });
  });

  it("a patch's Event names the KernelLivePatch, with its uid when known", () => {
    expect(patchReference({ name: "p", uid: "u" })).toEqual({ apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", name: "p", uid: "u" });
    expect(patchReference({ name: "p" })).toEqual({ apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", name: "p" });
  });
});

describe("eventRecorder", () => {
  it("a failing API server never reaches the caller: the failure is logged and counted", async () => {
    const lines: Array<{ msg?: string; level?: number }> = [];
    const spy = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const http = new KubeHttp({ server: `https://127.0.0.1:${await refusedPort()}` }, { requestTimeoutMs: 5000 });
    try {
      const rec = eventRecorder(http, "kpatch-operator", spy);
      expect(() => rec.patchEvent({ name: "p" }, "Warning", "RolloutHalted", "x")).not.toThrow();
      await rec.flush();
      expect(rec.stats()).toMatchObject({ created: 1, failed: 1 });
      expect(lines.filter((l) => l.msg === "could not record event" && l.level === 40)).toHaveLength(1);
    } finally {
      http.close();
    }
  });
});
