/**
 * The list-watch's own logic (paging, relist, diff, resume, restart) against a scripted API; the
 * real API server is exercised by the integration and fault suites.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { lines, ListWatch, pagedList, silenceAfterMs, type ListWatchClient, type ListWatchOptions, type RestartCause, type WatchResponse } from "./list-watch.ts";

const obj = (name: string, rv: string): KubernetesObject => ({ metadata: { name, resourceVersion: rv } });
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));
const until = async (done: () => boolean) => {
  for (let i = 0; i < 200 && !done(); i++) await tick();
};

type Query = Record<string, string | number | boolean | undefined>;
type List = { items: KubernetesObject[]; metadata: { resourceVersion: string; continue?: string } };

interface OpenWatch {
  rv: string;
  query: Query;
  send(phase: string, o: unknown): void;
  end(err?: Error): void;
  /** Ends the stream before the response was complete (a proxy that closed it). */
  cut(): void;
  aborted: boolean;
}

/** Serves the scripted lists in turn (the last one again and again) and records every watch opened. */
class FakeApi implements ListWatchClient {
  readonly opened: OpenWatch[] = [];
  /** The Accept header of each request ("default": none given), lists and watches in order. */
  readonly accepts: string[] = [];
  calls = 0;
  constructor(private readonly lists: Array<() => Promise<List>>) {}

  async json<R>(_method: string, _path: string, opts: { query: Query; accept?: string }): Promise<R> {
    this.accepts.push(`list ${opts.accept ?? "default"}`);
    return (await this.lists[Math.min(this.calls++, this.lists.length - 1)]!()) as R;
  }

  async stream(_path: string, opts: { query: Query; accept?: string }): Promise<WatchResponse> {
    this.accepts.push(`watch ${opts.accept ?? "default"}`);
    const body = new PassThrough();
    let complete = false;
    const w: OpenWatch = {
      rv: String(opts.query.resourceVersion),
      query: opts.query,
      send: (type, object) => body.write(`${JSON.stringify({ type, object })}\n`),
      end: (err) => {
        if (err) body.destroy(err);
        else {
          complete = true;
          body.end();
        }
      },
      cut: () => body.end(),
      aborted: false,
    };
    body.on("close", () => (w.aborted = !complete));
    this.opened.push(w);
    return Object.defineProperty(body, "complete", { get: () => complete }) as PassThrough & { complete: boolean };
  }

  get last(): OpenWatch {
    return this.opened.at(-1)!;
  }
}

let informer: ListWatch<KubernetesObject> | undefined;
afterEach(() => informer?.stop());

function setup(lists: Array<() => Promise<List>>, opts: Partial<ListWatchOptions<KubernetesObject>> = {}) {
  const watch = new FakeApi(lists);
  const events: string[] = [];
  const relists: RestartCause[] = [];
  informer = new ListWatch<KubernetesObject>(watch, {
    path: "/things",
    backoffBaseMs: 1,
    onRestart: (c) => relists.push(c),
    ...opts,
  });
  for (const verb of ["add", "update", "delete"] as const) informer.on(verb, (o) => events.push(`${verb} ${o.metadata?.name}`));
  return { watch, events, relists, informer, calls: () => watch.calls };
}

const listOf = (rv: string, ...items: KubernetesObject[]) => async () => ({ items, metadata: { resourceVersion: rv } });

describe("ListWatch", () => {
  it("caches objects without managedFields, from the list and from the watch", async () => {
    const managed = (name: string, rv: string) => ({ metadata: { name, resourceVersion: rv, managedFields: [{ manager: "kpatch-agent-n1" }] } });
    const { informer, watch } = setup([listOf("10", managed("a", "1"))]);
    await informer.start();
    expect(informer.get("a")?.metadata).toEqual({ name: "a", resourceVersion: "1" });
    await tick();
    watch.last.send("ADDED", managed("b", "11"));
    await tick();
    expect(informer.get("b")?.metadata).toEqual({ name: "b", resourceVersion: "11" });
  });

  it("hands an update the cached object it replaces, from the watch and from a relist", async () => {
    const { informer, watch } = setup([listOf("10", obj("a", "1")), listOf("20", obj("a", "3"))]);
    const updates: string[] = [];
    informer.on("update", (o, old) => updates.push(`${old?.metadata?.resourceVersion}->${o.metadata?.resourceVersion}`));
    await informer.start();
    await tick();
    watch.last.send("MODIFIED", obj("a", "2"));
    await tick();
    watch.last.send("ERROR", { code: 410, message: "too old" }); // relists
    await until(() => updates.length === 2);
    expect(updates).toEqual(["1->2", "2->3"]);
  });

  it("takes the list's items as they were kept while it read them, transforming each once", async () => {
    const transformed: string[] = [];
    const { informer } = setup([listOf("5", obj("a", "1"), obj("b", "2"))], {
      transform: (o) => {
        transformed.push(o.metadata!.name!);
        return { ...o, metadata: { ...o.metadata, labels: { kept: "yes" } } };
      },
    });
    await informer.start();
    expect(transformed).toEqual(["a", "b"]);
    expect(informer.get("b")?.metadata).toEqual({ name: "b", resourceVersion: "2", labels: { kept: "yes" } });
  });

  it("start resolves only after a list succeeded (a failed first list is retried)", async () => {
    const { informer, events, calls } = setup([
      async () => {
        throw new Error("connection refused");
      },
      listOf("10", obj("a", "1")),
    ]);
    await informer.start();
    expect(calls()).toBe(2);
    expect(informer.hasSynced).toBe(true);
    expect(events).toEqual(["add a"]);
    expect(informer.get("a")?.metadata?.resourceVersion).toBe("1");
  });

  it("watches with bookmarks and the server-side timeout, from the list's resourceVersion", async () => {
    const { informer, watch } = setup([listOf("10")], { query: { labelSelector: "a=b" }, watchTimeoutSeconds: 60 });
    await informer.start();
    await tick();
    expect(watch.last.query).toEqual({ labelSelector: "a=b", watch: "1", resourceVersion: "10", allowWatchBookmarks: "true", timeoutSeconds: "60" });
  });

  it.each([
    ["metadata only: PartialObjectMetadataList for the list, PartialObjectMetadata for the watch, each with the plain JSON fallback", true, [
      "list application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
      "watch application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
    ]],
    ["whole objects: the client's own Accept", false, ["list default", "watch default"]],
  ])("%s", async (_name, metadataOnly, accepts) => {
    const { informer, watch } = setup([listOf("10")], { metadataOnly });
    await informer.start();
    await tick();
    expect(watch.accepts).toEqual(accepts);
  });

  it("applies watch events, re-watches from the last resourceVersion when a stream ends or idles out", async () => {
    const { informer, watch, events, relists } = setup([listOf("10", obj("a", "1"))], { silenceMs: 40 });
    await informer.start();
    await tick();
    expect(watch.last.rv).toBe("10");
    watch.last.send("ADDED", obj("b", "11"));
    watch.last.send("MODIFIED", obj("a", "12"));
    watch.last.send("BOOKMARK", { metadata: { resourceVersion: "13" } });
    watch.last.end();
    await tick();
    expect(watch.last.rv).toBe("13");
    watch.last.send("DELETED", obj("b", "14"));
    await tick(60); // silent for longer than silenceMs
    expect(watch.last.rv).toBe("14");
    expect(events).toEqual(["add a", "add b", "update a", "delete b"]);
    expect(informer.list().map((o) => o.metadata?.name)).toEqual(["a"]);
    expect(relists[0]).toBe("silent");
    expect(watch.opened[1]!.aborted).toBe(true);
  });

  it("relists after a failed or expired watch and diffs: what the broken watch missed comes back as events", async () => {
    const { informer, watch, events, relists } = setup([listOf("10", obj("a", "1"), obj("b", "1")), listOf("20", obj("a", "5"), obj("c", "6")), listOf("30", obj("a", "5"), obj("c", "6"))]);
    await informer.start();
    await tick();
    watch.last.end(new Error("connection reset"));
    await tick(20);
    expect(events).toEqual(["add a", "add b", "update a", "add c", "delete b"]);
    expect(watch.last.rv).toBe("20");
    watch.last.send("ERROR", { code: 410, message: "too old" });
    await tick(20);
    expect(relists).toEqual(["error", "expired"]);
    expect(watch.last.rv).toBe("30");
  });

  it("a watch the server cut off (no error, not complete) is a failure: relist", async () => {
    const { informer, watch, relists, calls } = setup([listOf("10", obj("a", "1"))]);
    await informer.start();
    await tick();
    watch.last.send("MODIFIED", obj("a", "11"));
    await tick();
    watch.last.cut();
    await tick(20);
    expect(relists).toEqual(["error"]);
    expect(calls()).toBe(2);
  });

  it("relists periodically even when the watch looks fine", async () => {
    const { informer, watch, events, relists } = setup([listOf("10", obj("a", "1")), listOf("20", obj("a", "2"))], { relistMs: 30 });
    await informer.start();
    await tick(60);
    expect(relists).toContain("periodic");
    expect(events).toContain("update a");
    expect(watch.opened.length).toBeGreaterThan(1);
  });

  it("restarts a list-watch that made no progress (a list that never returns)", async () => {
    const { informer, events, relists } = setup([listOf("10", obj("a", "1")), () => new Promise(() => undefined), listOf("30", obj("a", "1"), obj("z", "3"))], {
      staleMs: 1000,
      relistMs: 10,
    });
    await informer.start();
    await tick(2500);
    expect(relists).toContain("stale");
    expect(events).toContain("add z");
  });

  it("hands the whole cache to onChange after each list and each event; a throwing handler is reported, not fatal", async () => {
    const seen: string[][] = [];
    const errors: string[] = [];
    const { informer, watch } = setup([listOf("10")], {
      onChange: (m) => seen.push([...m.keys()]),
      onError: (_err, during) => errors.push(during),
    });
    informer.on("add", () => {
      throw new Error("boom");
    });
    await informer.start();
    await tick();
    watch.last.send("ADDED", obj("a", "11"));
    watch.last.send("ADDED", obj("b", "12"));
    await tick();
    expect(seen).toEqual([[], ["a"], ["a", "b"]]);
    expect(errors).toEqual(["handler", "handler"]);
  });

  it("backs off, jittered and doubling, between failed lists", async () => {
    const at: number[] = [];
    const failing = async (): Promise<List> => {
      at.push(Date.now());
      throw new Error("refused");
    };
    const { informer } = setup([failing], { backoffBaseMs: 20, random: () => 0.5 });
    void informer.start();
    await tick(200);
    informer.stop();
    const gaps = at.slice(1).map((t, i) => t - at[i]!);
    expect(gaps.length).toBeGreaterThanOrEqual(3);
    expect(gaps[0]).toBeGreaterThanOrEqual(15);
    expect(gaps[1]!).toBeGreaterThan(gaps[0]! + 10);
  });
});

/** A fake API that serves `items` in pages of the requested limit, as the API server does. */
function pagingServer(items: Array<{ name: string }>, rv: string) {
  const calls: Query[] = [];
  const http = {
    json: async <R>(_method: string, _path: string, opts: { query: Query }): Promise<R> => {
      calls.push(opts.query);
      const from = Number(opts.query.continue ?? 0);
      const limit = Number(opts.query.limit);
      const page = items.slice(from, from + limit).map((i) => ({ ...i, full: "x".repeat(10) }));
      const next = from + limit < items.length ? String(from + limit) : undefined;
      return { items: page, metadata: { resourceVersion: rv, ...(next ? { continue: next } : {}) } } as R;
    },
  };
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

  it("an empty metadata-only list (items: null, as the API server sends a PartialObjectMetadataList with no item) is an empty list", async () => {
    const http = { json: async <R>() => ({ kind: "PartialObjectMetadataList", items: null, metadata: { resourceVersion: "9" } }) as R };
    expect(await pagedList(http, "/api/v1/nodes", {}, (o) => o)).toEqual({ items: [], metadata: { resourceVersion: "9" } });
  });
});

async function* chunks(...parts: string[]): AsyncGenerator<string> {
  yield* parts;
}

describe("watch stream lines", () => {
  it("splits events across and within chunks", async () => {
    const out: string[] = [];
    for await (const l of lines(chunks('{"a":', '1}\n{"b":2}\n{"c"', ":3}\n", '{"d":4}'))) out.push(l);
    expect(out).toEqual(['{"a":1}', '{"b":2}', '{"c":3}', '{"d":4}']);
  });
});

describe("silenceAfterMs", () => {
  it.each([
    [300, 330_000],
    [60, 66_000],
    [3, 8_000],
    [3600, 3_630_000],
  ])("a %i s watch is silent after %i ms", (timeout, ms) => {
    expect(silenceAfterMs(timeout)).toBe(ms);
  });
});
