import { describe, expect, it } from "vitest";
import { KubeApiError } from "../../kube/http-client.ts";
import { NodeReadinessCache } from "./node-readiness.ts";

/** A Node per name, Ready or not, at a resourceVersion; every GET recorded. */
function api(nodes: Record<string, { ready: boolean; rv: string }>) {
  const gets: string[] = [];
  const http = {
    json: async <R>(_method: string, path: string): Promise<R> => {
      const name = decodeURIComponent(path.split("/").at(-1)!);
      gets.push(name);
      const n = nodes[name];
      if (!n) throw new KubeApiError(404, "NotFound", `nodes "${name}" not found`);
      const condition = { type: "Ready", status: n.ready ? "True" : "False", lastTransitionTime: "2026-12-03T12:00:00Z" };
      return { metadata: { name, resourceVersion: n.rv }, status: { conditions: [condition], images: [{ names: ["x"] }] } } as R;
    },
  };
  return { http, gets };
}

describe("NodeReadinessCache", () => {
  it("reads each Node once while its resourceVersion holds, again once the watch saw it change", async () => {
    const nodes = { n1: { ready: true, rv: "1" }, n2: { ready: false, rv: "5" } };
    const { http, gets } = api(nodes);
    const cache = new NodeReadinessCache(http);
    await cache.read(["n1", "n2"], 0);
    expect(cache.current("n1")).toEqual({ ready: true, since: "2026-12-03T12:00:00Z" });
    expect(cache.current("n2")?.ready).toBe(false);
    cache.changed("n1", "1", 10); // the event of the version read
    await cache.read(["n1", "n2"], 20);
    expect(gets.sort()).toEqual(["n1", "n2"]);

    nodes.n1 = { ready: false, rv: "2" };
    cache.changed("n1", "2", 30);
    expect(cache.current("n1")).toBeUndefined();
    await cache.read(["n1"], 40);
    expect(gets).toHaveLength(3);
    expect(cache.current("n1")?.ready).toBe(false);
  });

  it("knows when a Node was last seen Ready: now while the reading holds, the moment it went stale after", async () => {
    const { http } = api({ n1: { ready: true, rv: "1" }, n2: { ready: false, rv: "1" } });
    const cache = new NodeReadinessCache(http);
    await cache.read(["n1", "n2"], 0);
    expect(cache.readySeenAt("n1", 100)).toBe(100);
    expect(cache.readySeenAt("n2", 100)).toBeUndefined();
    cache.changed("n1", "2", 150);
    expect(cache.readySeenAt("n1", 200)).toBe(150);
    expect(cache.readySeenAt("never-read", 200)).toBeUndefined();
  });

  it("drops a Node that is gone, a deleted one, and stale readings after a while", async () => {
    const { http } = api({ n1: { ready: true, rv: "1" }, n2: { ready: true, rv: "1" } });
    const cache = new NodeReadinessCache(http, { keepStaleMs: 1000 });
    await cache.read(["n1", "n2", "gone"], 0);
    expect(cache.current("gone")).toBeUndefined();
    cache.deleted("n2");
    expect(cache.current("n2")).toBeUndefined();
    cache.changed("n1", "2", 10);
    await cache.read([], 500);
    expect(cache.readySeenAt("n1", 500)).toBe(10);
    await cache.read([], 1011);
    expect(cache.readySeenAt("n1", 1011)).toBeUndefined();
  });

  it("reads at most `concurrency` Nodes at once", async () => {
    let inFlight = 0;
    let most = 0;
    const http = {
      json: async <R>(): Promise<R> => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return { metadata: { resourceVersion: "1" }, status: {} } as R;
      },
    };
    const cache = new NodeReadinessCache(http, { concurrency: 3 });
    await cache.read(Array.from({ length: 10 }, (_, i) => `n${i}`), 0);
    expect(most).toBe(3);
    expect(cache.current("n9")).toEqual({ ready: true });
  });
});
