import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { KubeHttp, RequestOptions } from "../../kube/http-client.ts";
import { eventRecorder } from "./events.ts";

function fakeHttp() {
  const writes: Array<{ method: string; path: string; body: any }> = [];
  const http = {
    async send(method: string, path: string, opts: RequestOptions = {}) {
      writes.push({ method, path, body: opts.body });
    },
  };
  return { http: http as unknown as KubeHttp, writes };
}

const settle = () => new Promise((r) => setTimeout(r, 20));
const log = pino({ level: "silent" });

describe("eventRecorder", () => {
  it("1000 identical Warning events on a patch make at most 26 API writes: one create, then patches of its count", async () => {
    const { http, writes } = fakeHttp();
    const rec = eventRecorder(http, "kpatch-operator", log);
    for (let i = 0; i < 1000; i++) rec.patchEvent({ name: "p", uid: "u" }, "Warning", "RolloutHalted", "3 of 10 nodes failed");
    await settle();
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.length).toBeLessThanOrEqual(26);
    expect(writes[0]).toMatchObject({ method: "POST", path: "/api/v1/namespaces/default/events", body: { count: 1, involvedObject: { kind: "KernelLivePatch", name: "p", uid: "u" } } });
    const name = writes[0]!.body.metadata.name;
    expect(writes.slice(1).map((w) => [w.method, w.path, w.body.count])).toEqual(
      writes.slice(1).map((_, i) => ["PATCH", `/api/v1/namespaces/default/events/${name}`, i + 2]),
    );
    expect((rec as any).stats?.().dropped).toBe(1000 - writes.length);
  });

  it("a RolloutComplete still gets through after a long rollout's progress events", async () => {
    const { http, writes } = fakeHttp();
    const rec = eventRecorder(http, "kpatch-operator", log);
    for (let i = 0; i < 100; i++) rec.patchEvent({ name: "p", uid: "u" }, "Normal", "Loaded", `klp loaded on ${i} nodes`);
    rec.patchEvent({ name: "p", uid: "u" }, "Normal", "RolloutComplete", "done");
    await settle();
    expect(writes.filter((w) => w.body.reason === "Loaded").length).toBeLessThanOrEqual(25);
    expect(writes.filter((w) => w.body.reason === "RolloutComplete")).toHaveLength(1);
  });

  it("a failing API server never reaches the caller: the failure is logged and counted", async () => {
    const lines: any[] = [];
    const spy = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const http = { send: () => Promise.reject(new Error("connection refused")) } as unknown as KubeHttp;
    const rec = eventRecorder(http, "kpatch-operator", spy);
    expect(() => rec.patchEvent({ name: "p" }, "Warning", "RolloutHalted", "x")).not.toThrow();
    await settle();
    expect((rec as any).stats?.()).toMatchObject({ created: 1, failed: 1 });
    expect(lines.filter((l) => l.msg === "could not record event" && l.level === 40)).toHaveLength(1);
  });
});
