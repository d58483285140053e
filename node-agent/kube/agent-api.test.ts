import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { KubeHttp, RequestOptions } from "../../kube/http-client.ts";
import { agentEvents } from "./agent-api.ts";

/** A fake API server that counts the event writes and keeps the Events as the server would. */
function fakeHttp() {
  const writes: Array<{ method: string; path: string; body: any }> = [];
  const stored = new Map<string, any>();
  const http = {
    async send(method: string, path: string, opts: RequestOptions = {}) {
      writes.push({ method, path, body: opts.body });
      const body = opts.body as any;
      if (method === "POST") stored.set(body.metadata?.name ?? `generated-${writes.length}`, { ...body });
      else if (method === "PATCH") {
        const name = decodeURIComponent(path.split("/").pop()!);
        const ev = stored.get(name);
        if (!ev) throw Object.assign(new Error("not found"), { code: 404 });
        Object.assign(ev, body);
      }
    },
  };
  return { http: http as unknown as KubeHttp, writes, stored };
}

const settle = () => new Promise((r) => setTimeout(r, 20));
const log = pino({ level: "silent" });

describe("agentEvents", () => {
  it("1000 identical Warning events make at most 26 API writes (aggregated, then rate-bounded per node)", async () => {
    const { http, writes, stored } = fakeHttp();
    const event = agentEvents(http, "n1", log);
    for (let i = 0; i < 1000; i++) event({ name: "cve-1", uid: "u1" }, "Warning", "VermagicMismatch", "n1: module built for another kernel");
    await settle();
    expect(writes.length).toBeGreaterThan(0);
    expect(writes.length).toBeLessThanOrEqual(26);
    // One Event per object, counting what was written: on the patch and on the Node.
    expect(writes.filter((w) => w.method === "POST")).toHaveLength(2);
    const events = [...stored.values()];
    expect(events.map((e) => e.involvedObject.kind).sort()).toEqual(["KernelLivePatch", "Node"]);
    expect(events.reduce((n, e) => n + e.count, 0)).toBe(writes.length);
    expect(events.every((e) => e.count > 1 && e.lastTimestamp >= e.firstTimestamp)).toBe(true);
    expect((event as any).stats?.().dropped).toBe(2000 - writes.length);
  });

  it("a Normal event goes on the Node only; a repeat patches it (count 2)", async () => {
    const { http, writes, stored } = fakeHttp();
    const event = agentEvents(http, "n1", log);
    event({ name: "cve-1", uid: "u1" }, "Normal", "Loaded", "klp_fix loaded on n1");
    event({ name: "cve-1", uid: "u1" }, "Normal", "Loaded", "klp_fix loaded on n1");
    await settle();
    expect(writes.map((w) => w.method)).toEqual(["POST", "PATCH"]);
    const [ev] = [...stored.values()];
    expect(ev).toMatchObject({
      involvedObject: { kind: "Node", name: "n1", uid: "n1" },
      source: { component: "kpatch-agent", host: "n1" },
      message: "cve-1: klp_fix loaded on n1",
      count: 2,
    });
  });

  it("a failing API server never reaches the caller: the failure is logged and counted", async () => {
    const lines: any[] = [];
    const spy = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const http = { send: async () => Promise.reject(new Error("connection refused")) } as unknown as KubeHttp;
    const event = agentEvents(http, "n1", spy);
    expect(() => event({ name: "cve-1" }, "Warning", "Failed", "boom")).not.toThrow();
    await settle();
    expect((event as any).stats?.()).toMatchObject({ created: 2, failed: 2 });
    expect(lines.filter((l) => l.msg === "could not record event")).toHaveLength(2);
  });
});
