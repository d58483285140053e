import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import type { ListWatchClient, WatchResponse } from "../../kube/list-watch.ts";
import { Watcher, type RestartCause } from "./watcher.ts";

const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

/** Lists fail `failures` times, then serve one node; watches stay open and silent. */
function fakeApi(failures: number) {
  let lists = 0;
  const http: ListWatchClient = {
    json: async <T>() => {
      if (lists++ < failures) throw new Error("connection refused");
      return { items: [{ metadata: { name: "n1", resourceVersion: "5", labels: { a: "b" } } }], metadata: { resourceVersion: "5" } } as T;
    },
    stream: async (): Promise<WatchResponse> => Object.assign(new PassThrough(), { complete: false }),
  };
  return { http, lists: () => lists };
}

describe("Watcher (the agent's view of kube/list-watch.ts)", () => {
  it("start resolves after a failed first list; the list is retried in the background", async () => {
    const api = fakeApi(1);
    const errors: unknown[] = [];
    const seen: Array<string[]> = [];
    const w = new Watcher(api.http, { path: "/api/v1/nodes", onChange: (m) => seen.push([...m.keys()]), onError: (e) => errors.push(e) });
    await w.start();
    expect(errors).toHaveLength(1);
    expect(seen).toEqual([]);
    await tick(600); // the backoff: 250 ms, jittered up to 375 ms
    expect(seen).toEqual([["n1"]]);
    w.stop();
  });

  it("reports a silent watch as silent, and delivers the full set on every change", async () => {
    const api = fakeApi(0);
    const restarts: RestartCause[] = [];
    const w = new Watcher(api.http, { path: "/api/v1/nodes", silenceMs: 20, onChange: () => undefined, onRestart: (c) => restarts.push(c) });
    await w.start();
    await tick(50);
    w.stop();
    expect(restarts[0]).toBe("silent");
    expect(api.lists()).toBe(1); // reopened from its resourceVersion, not relisted
  });
});
