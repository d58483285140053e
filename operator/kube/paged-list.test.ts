import { describe, expect, it } from "vitest";
import type { KubeHttp } from "../../kube/http-client.ts";
import { pagedList } from "./paged-list.ts";

type Query = Record<string, string | number | undefined>;

/** A fake API that serves `items` in pages of the requested limit, as the API server does. */
function pagingServer(items: Array<{ name: string }>, rv: string) {
  const calls: Query[] = [];
  const http = {
    json: async (_method: string, _path: string, opts: { query: Query }) => {
      calls.push(opts.query);
      const from = Number(opts.query.continue ?? 0);
      const limit = Number(opts.query.limit);
      const page = items.slice(from, from + limit).map((i) => ({ ...i, full: "x".repeat(10) }));
      const next = from + limit < items.length ? String(from + limit) : undefined;
      return { items: page, metadata: { resourceVersion: rv, ...(next ? { continue: next } : {}) } };
    },
  } as unknown as KubeHttp;
  return { http, calls };
}

describe("pagedList", () => {
  it("reads every page with the continue token, keeps what keep returns, and the list's resourceVersion", async () => {
    const items = Array.from({ length: 7 }, (_, i) => ({ name: `n${i}` }));
    const { http, calls } = pagingServer(items, "42");
    const kept: string[] = [];
    const list = await pagedList<{ name: string; full?: string }>(http, "/x", { labelSelector: "a=b" }, (o) => {
      kept.push(o.name);
      return { name: o.name };
    }, 3);
    expect(list.items).toEqual(items);
    expect(list.metadata.resourceVersion).toBe("42");
    expect(kept).toEqual(items.map((i) => i.name));
    expect(calls).toEqual([
      { labelSelector: "a=b", limit: 3, continue: undefined },
      { labelSelector: "a=b", limit: 3, continue: "3" },
      { labelSelector: "a=b", limit: 3, continue: "6" },
    ]);
  });

  it("an empty collection is one request", async () => {
    const { http, calls } = pagingServer([], "7");
    expect(await pagedList(http, "/x", {}, (o) => o)).toEqual({ items: [], metadata: { resourceVersion: "7" } });
    expect(calls).toHaveLength(1);
  });
});
