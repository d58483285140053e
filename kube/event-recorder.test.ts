import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { perSource } from "./event-correlator.ts";
import { KubeEventRecorder, type EventRecorderOptions } from "./event-recorder.ts";
import { KubeApiError, type KubeHttp, type RequestOptions } from "./http-client.ts";

const T0 = Date.UTC(2026, 10, 27);
const node = { apiVersion: "v1", kind: "Node", name: "n1", uid: "n1" };

/** A fake API server: counts the requests, keeps the Events, answers after `delayMs`. */
function fakeApi(o: { delayMs?: number; fail?: (method: string, n: number) => Error | undefined } = {}) {
  const requests: Array<{ method: string; path: string; body: any; contentType?: string | undefined }> = [];
  const events = new Map<string, any>();
  const http = {
    async send(method: string, path: string, opts: RequestOptions = {}) {
      requests.push({ method, path, body: opts.body, contentType: opts.contentType });
      if (o.delayMs) await new Promise((r) => setTimeout(r, o.delayMs));
      const err = o.fail?.(method, requests.length);
      if (err) throw err;
      const body = opts.body as any;
      if (method === "POST") {
        if (events.has(body.metadata.name)) throw new KubeApiError(409, "AlreadyExists", "exists");
        events.set(body.metadata.name, structuredClone(body));
      } else {
        const ev = events.get(decodeURIComponent(path.split("/").pop()!));
        if (!ev) throw new KubeApiError(404, "NotFound", "not found");
        Object.assign(ev, body);
      }
    },
  };
  return { http: http as Pick<KubeHttp, "send">, requests, events };
}

function recorder(http: Pick<KubeHttp, "send">, opts: Partial<EventRecorderOptions> = {}) {
  let now = T0;
  const lines: any[] = [];
  const log = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
  const r = new KubeEventRecorder(http, { source: { component: "kpatch-agent", host: "n1" }, log, now: () => now, ...opts });
  return { r, lines, tick: (ms: number) => void (now += ms) };
}

describe("KubeEventRecorder", () => {
  it("1000 identical Warning events: at most 26 API writes, one Event whose count is the writes", async () => {
    const api = fakeApi();
    const { r, lines } = recorder(api.http);
    for (let i = 0; i < 1000; i++) r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    expect(api.requests.length).toBeLessThanOrEqual(26);
    expect(api.requests.map((q) => q.method)).toEqual(["POST", ...Array<string>(24).fill("PATCH")]);
    expect([...api.events.values()]).toMatchObject([{ count: 25 }]);
    expect(r.stats).toEqual({ created: 1, patched: 24, dropped: 975, failed: 0 });
    expect(lines.filter((l) => l.msg === "event over the rate bound dropped" && l.level === 20)).toHaveLength(975);
  });

  it("writes a core/v1 Event, then merge-patches its count and lastTimestamp", async () => {
    const api = fakeApi();
    const { r, tick } = recorder(api.http);
    r.record(node, "Warning", "Failed", "boom");
    tick(90_000);
    r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    const [create, patch] = api.requests;
    const name = create!.body.metadata.name as string;
    expect(create).toMatchObject({
      method: "POST",
      path: "/api/v1/namespaces/default/events",
      body: {
        metadata: { name, namespace: "default" },
        involvedObject: node,
        type: "Warning",
        reason: "Failed",
        message: "boom",
        source: { component: "kpatch-agent", host: "n1" },
        reportingComponent: "kpatch-agent",
        reportingInstance: "n1",
        firstTimestamp: "2026-11-27T00:00:00.000Z",
        lastTimestamp: "2026-11-27T00:00:00.000Z",
        count: 1,
      },
    });
    expect(name).toMatch(/^n1\.[a-z0-9]+$/);
    expect(patch).toEqual({ method: "PATCH", path: `/api/v1/namespaces/default/events/${name}`, contentType: "application/merge-patch+json", body: { count: 2, lastTimestamp: "2026-11-27T00:01:30.000Z" } });
    expect(api.events.get(name)).toMatchObject({ count: 2, firstTimestamp: "2026-11-27T00:00:00.000Z", lastTimestamp: "2026-11-27T00:01:30.000Z" });
  });

  it("a patch waits for its Event's create, however slow the API server", async () => {
    const api = fakeApi({ delayMs: 30 });
    const { r } = recorder(api.http);
    for (let i = 0; i < 3; i++) r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    expect(r.stats.failed).toBe(0);
    expect([...api.events.values()]).toMatchObject([{ count: 3 }]);
  });

  it("after the window, a new Event", async () => {
    const api = fakeApi();
    const { r, tick } = recorder(api.http);
    r.record(node, "Warning", "Failed", "boom");
    tick(10 * 60_000 + 1);
    r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    expect(api.requests.map((q) => q.method)).toEqual(["POST", "POST"]);
    expect(api.events.size).toBe(2);
  });

  it("an Event gone (expired) is created again under its name, with the count so far", async () => {
    const api = fakeApi();
    const { r } = recorder(api.http);
    r.record(node, "Warning", "Failed", "boom");
    r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    api.events.clear();
    r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    expect(api.requests.map((q) => q.method)).toEqual(["POST", "PATCH", "PATCH", "POST"]);
    expect([...api.events.values()]).toMatchObject([{ count: 3, firstTimestamp: "2026-11-27T00:00:00.000Z" }]);
    expect(r.stats.failed).toBe(0);
  });

  it("a create that failed: the next same event creates again, the failure logged and counted", async () => {
    const api = fakeApi({ fail: (_m, n) => (n === 1 ? new KubeApiError(500, "InternalError", "etcd timeout") : undefined) });
    const { r, lines } = recorder(api.http);
    r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    expect(api.requests.map((q) => q.method)).toEqual(["POST", "POST"]);
    expect([...api.events.values()]).toMatchObject([{ count: 1 }]);
    expect(r.stats.failed).toBe(1);
    expect(lines.filter((l) => l.msg === "could not record event")).toMatchObject([{ level: 40, err: "etcd timeout", reason: "Failed", kind: "Node" }]);
  });

  it("a patch that failed keeps the Event: the next patch carries the count on", async () => {
    const api = fakeApi({ fail: (m, n) => (m === "PATCH" && n === 2 ? new Error("connection reset") : undefined) });
    const { r } = recorder(api.http);
    for (let i = 0; i < 3; i++) r.record(node, "Warning", "Failed", "boom");
    await r.flush();
    expect(api.requests.map((q) => q.method)).toEqual(["POST", "PATCH", "PATCH"]);
    expect([...api.events.values()]).toMatchObject([{ count: 3 }]);
    expect(r.stats.failed).toBe(1);
  });

  it("never throws into the caller: a client that throws at once, a logger that throws", async () => {
    const throwing = { send: () => { throw new Error("sync"); } } as unknown as Pick<KubeHttp, "send">;
    const { r } = recorder(throwing, { failureLogLevel: "debug" });
    expect(() => r.record(node, "Warning", "Failed", "boom")).not.toThrow();
    await r.flush();
    expect(r.stats.failed).toBe(1);

    const badLog = { debug: () => { throw new Error("log"); }, warn: () => { throw new Error("log"); } } as unknown as EventRecorderOptions["log"];
    const r2 = new KubeEventRecorder({ send: () => Promise.reject(new Error("down")) }, { source: { component: "c" }, log: badLog, burst: 1 });
    expect(() => {
      r2.record(node, "Warning", "Failed", "boom");
      r2.record(node, "Warning", "Failed", "boom"); // dropped: the debug line throws
    }).not.toThrow();
    await r2.flush();
  });

  it("the rate bound can span a whole source (the agent: one bucket per node)", async () => {
    const api = fakeApi();
    const { r } = recorder(api.http, { burst: 3, rateKey: perSource });
    const patch = { apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", name: "p" };
    for (let i = 0; i < 10; i++) {
      r.record(patch, "Warning", "Failed", "boom");
      r.record(node, "Warning", "Failed", "p: boom");
    }
    await r.flush();
    expect(api.requests).toHaveLength(3);
    expect(r.stats.dropped).toBe(17);
  });

  it("a namespaced object's Events go to its namespace", async () => {
    const api = fakeApi();
    const { r } = recorder(api.http);
    r.record({ apiVersion: "v1", kind: "Pod", name: "agent-x", namespace: "kpatch-system" }, "Normal", "Started", "up");
    await r.flush();
    expect(api.requests[0]).toMatchObject({ path: "/api/v1/namespaces/kpatch-system/events", body: { metadata: { namespace: "kpatch-system" } } });
  });
});
