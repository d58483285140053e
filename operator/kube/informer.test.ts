/**
 * The informer's own logic (relist, diff, restart) against a scripted watch port; the real API
 * server is exercised by the integration and fault suites.
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Informer, type RelistCause, type WatchPort } from "./informer.ts";

const obj = (name: string, rv: string): KubernetesObject => ({ metadata: { name, resourceVersion: rv } });
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

interface OpenWatch {
  rv: string;
  send(phase: string, o: unknown): void;
  end(err?: unknown): void;
  aborted: boolean;
}

class FakeWatch implements WatchPort {
  readonly opened: OpenWatch[] = [];
  async watch(_path: string, query: Record<string, unknown>, cb: (p: string, o: unknown) => void, done: (e: unknown) => void) {
    const w: OpenWatch = {
      rv: String(query.resourceVersion),
      send: (p, o) => cb(p, o),
      end: (err) => done(err ?? null),
      aborted: false,
    };
    this.opened.push(w);
    return {
      abort: () => {
        w.aborted = true;
        done(Object.assign(new Error("aborted"), { name: "AbortError" }));
      },
    };
  }
  get last(): OpenWatch {
    return this.opened.at(-1)!;
  }
}

let informer: Informer<KubernetesObject> | undefined;
afterEach(() => informer?.stop());

function setup(lists: Array<() => Promise<{ items: KubernetesObject[]; metadata: { resourceVersion: string } }>>, opts: { staleMs?: number; relistMs?: number } = {}) {
  const watch = new FakeWatch();
  const events: string[] = [];
  const relists: RelistCause[] = [];
  let calls = 0;
  informer = new Informer<KubernetesObject>({
    name: "things",
    path: "/things",
    list: () => lists[Math.min(calls++, lists.length - 1)]!(),
    watch,
    log: pino({ level: "silent" }),
    backoffBaseMs: 1,
    onRelist: (c) => relists.push(c),
    ...opts,
  });
  for (const verb of ["add", "update", "delete"] as const) informer.on(verb, (o) => events.push(`${verb} ${o.metadata?.name}`));
  return { watch, events, relists, informer, calls: () => calls };
}

const listOf = (rv: string, ...items: KubernetesObject[]) => async () => ({ items, metadata: { resourceVersion: rv } });

describe("Informer", () => {
  it("caches objects without managedFields, from the list and from the watch", async () => {
    const managed = (name: string, rv: string) => ({ metadata: { name, resourceVersion: rv, managedFields: [{ manager: "kpatch-agent-n1" }] } });
    const { informer, watch } = setup([listOf("10", managed("a", "1"))]);
    await informer.start();
    expect(informer.get("a")?.metadata).toEqual({ name: "a", resourceVersion: "1" });
    await tick();
    watch.last.send("ADDED", managed("b", "11"));
    expect(informer.get("b")?.metadata).toEqual({ name: "b", resourceVersion: "11" });
  });

  it("takes the list's items as they were kept while it read them, transforming each once", async () => {
    const transformed: string[] = [];
    informer = new Informer<KubernetesObject>({
      name: "things",
      path: "/things",
      list: async (keep) => ({ items: [keep(obj("a", "1")), keep(obj("b", "2"))], metadata: { resourceVersion: "5" } }),
      watch: new FakeWatch(),
      log: pino({ level: "silent" }),
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

  it("applies watch events, re-watches from the last resourceVersion when a stream ends or idles out", async () => {
    const { informer, watch, events } = setup([listOf("10", obj("a", "1"))]);
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
    watch.last.end(Object.assign(new Error("idle"), { name: "TimeoutError" }));
    await tick();
    expect(watch.last.rv).toBe("14");
    expect(events).toEqual(["add a", "add b", "update a", "delete b"]);
    expect(informer.list().map((o) => o.metadata?.name)).toEqual(["a"]);
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
});
