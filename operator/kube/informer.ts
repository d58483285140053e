/**
 * A list-watch cache of one collection, in place of @kubernetes/client-node's ListWatch, which
 * stops for good on an error other than 410, reports a failed first list only through an event
 * (a caller that awaits start() then runs on an empty cache), and never relists on its own.
 *
 * Here: start() resolves once a list has succeeded; a watch that fails relists after a backoff;
 * one that ends (the server's timeout, or the client's 30 s inactivity timeout of a silent
 * stream) re-watches from the last resourceVersion; every `relistMs` a fresh list is diffed into
 * the cache (events a broken watch lost come back as add/update/delete); and a watchdog restarts
 * the whole cycle when nothing has moved for `staleMs` (a list or watch call that hangs).
 */
import type { KubernetesObject } from "@kubernetes/client-node";
import type { Logger } from "pino";

export type InformerVerb = "add" | "update" | "delete";
export type RelistCause = "error" | "expired" | "periodic" | "stale";

/** The shape of @kubernetes/client-node's Watch.watch. */
export interface WatchPort {
  watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, obj: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<{ abort(): void }>;
}

export interface InformerOptions<T> {
  /** For logs and metrics: the resource, e.g. "nodes". */
  readonly name: string;
  readonly path: string;
  /**
   * Lists the collection. It may pass each item through `keep` (what the cache keeps of an object)
   * as it arrives, so a paged list never holds a whole collection of full objects at once.
   */
  readonly list: (keep: (obj: T) => T) => Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>;
  readonly watch: WatchPort;
  readonly labelSelector?: string;
  readonly log: Logger;
  /** Relist this often even when every watch looks healthy (default 10 min). */
  readonly relistMs?: number;
  /** Restart list-and-watch when nothing (list, event, reconnect) happened for this long (default 5 min). */
  readonly staleMs?: number;
  /** Server-side timeout of each watch request (default 300 s). */
  readonly watchTimeoutSeconds?: number;
  readonly onRelist?: (cause: RelistCause) => void;
  /** Applied to every object before it is cached (after managedFields are dropped): keep only what is read. */
  readonly transform?: (obj: T) => T;
  /** First delay after a failure, doubling up to 30 s (default 500 ms). */
  readonly backoffBaseMs?: number;
  readonly now?: () => number;
}

type Handler<T> = (obj: T) => void;

export class Informer<T extends KubernetesObject> {
  private objects = new Map<string, T>();
  /** Objects already reduced to what the cache keeps (by the list, as it read them). */
  private readonly kept = new WeakSet<object>();
  private readonly handlers: Record<InformerVerb, Array<Handler<T>>> = { add: [], update: [], delete: [] };
  private generation = 0;
  private stopped = true;
  private synced = false;
  private lastProgress = 0;
  private current: { abort(): void } | undefined;
  private relistRequested: RelistCause | undefined;
  private failures = 0;
  private timers: NodeJS.Timeout[] = [];
  private firstSync: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(private readonly opts: InformerOptions<T>) {}

  on(verb: InformerVerb, handler: Handler<T>): void {
    this.handlers[verb].push(handler);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.objects.get(key(name, namespace));
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  /** True once a list has been applied to the cache. */
  get hasSynced(): boolean {
    return this.synced;
  }

  /** Starts list-and-watch; resolves after the first successful list (retried until then). */
  start(): Promise<void> {
    if (!this.stopped) return this.firstSync?.promise ?? Promise.resolve();
    this.stopped = false;
    let resolve!: () => void;
    this.firstSync = { promise: new Promise<void>((r) => (resolve = r)), resolve };
    if (this.synced) resolve();
    this.lastProgress = this.now();
    const relistMs = this.opts.relistMs ?? 600_000;
    const staleMs = this.opts.staleMs ?? 300_000;
    this.timers = [
      setInterval(() => this.requestRelist("periodic"), relistMs),
      setInterval(() => {
        if (this.now() - this.lastProgress <= staleMs) return;
        this.opts.log.warn({ informer: this.opts.name, silentForMs: this.now() - this.lastProgress }, "list-watch made no progress; restarting it");
        this.restart("stale");
      }, Math.max(1000, Math.min(staleMs / 2, 30_000))),
    ];
    for (const t of this.timers) t.unref();
    void this.run(++this.generation);
    return this.firstSync.promise;
  }

  stop(): void {
    this.stopped = true;
    this.generation++;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.current?.abort();
    this.current = undefined;
    this.firstSync?.resolve(); // a start() still waiting returns; hasSynced tells
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private alive(generation: number): boolean {
    return !this.stopped && generation === this.generation;
  }

  /** Ends the current watch; the loop then lists afresh and diffs. */
  private requestRelist(cause: RelistCause): void {
    this.relistRequested = cause;
    this.current?.abort();
  }

  /** Abandons the current cycle (whatever call it hangs in) and starts a new one with a list. */
  private restart(cause: RelistCause): void {
    this.opts.onRelist?.(cause);
    this.current?.abort();
    this.current = undefined;
    this.lastProgress = this.now();
    void this.run(++this.generation);
  }

  private async run(generation: number): Promise<void> {
    let rv: string | undefined;
    while (this.alive(generation)) {
      if (rv === undefined) {
        try {
          rv = await this.relist(generation);
        } catch (err) {
          if (!this.alive(generation)) return;
          this.opts.log.warn({ err, informer: this.opts.name }, "list failed; retrying");
          await this.backoff();
          continue;
        }
        if (rv === undefined) return; // superseded
      }
      const outcome = await this.watchOnce(rv, generation);
      if (!this.alive(generation)) return;
      const relist = this.relistRequested;
      this.relistRequested = undefined;
      if (relist) {
        this.opts.onRelist?.(relist);
        rv = undefined;
      } else if (outcome.err === undefined || isInactivity(outcome.err)) {
        rv = outcome.rv; // the server's timeout or the client's inactivity timeout ended it: watch on
        this.failures = 0;
      } else if (isGone(outcome.err)) {
        this.opts.onRelist?.("expired");
        rv = undefined;
      } else {
        this.opts.log.warn({ err: outcome.err, informer: this.opts.name }, "watch failed; relisting");
        this.opts.onRelist?.("error");
        rv = undefined;
        await this.backoff();
      }
    }
  }

  private backoff(): Promise<void> {
    const ms = Math.min(30_000, (this.opts.backoffBaseMs ?? 500) * 2 ** this.failures++);
    return new Promise((r) => setTimeout(r, ms).unref());
  }

  /** Lists and diffs into the cache; undefined when a newer cycle took over meanwhile. */
  private async relist(generation: number): Promise<string | undefined> {
    const list = await this.opts.list((o) => {
      const c = this.cached(o);
      this.kept.add(c);
      return c;
    });
    if (!this.alive(generation)) return undefined;
    const fresh = new Map(list.items.map((o) => [key(o.metadata?.name ?? "", o.metadata?.namespace), this.kept.has(o) ? o : this.cached(o)]));
    const before = this.objects;
    this.objects = fresh;
    for (const [k, o] of fresh) {
      const old = before.get(k);
      if (!old) this.emit("add", o);
      else if (old.metadata?.resourceVersion !== o.metadata?.resourceVersion) this.emit("update", o);
    }
    for (const [k, o] of before) if (!fresh.has(k)) this.emit("delete", o);
    this.lastProgress = this.now();
    if (!this.synced) {
      this.synced = true;
      this.firstSync?.resolve();
    }
    return list.metadata?.resourceVersion ?? "";
  }

  private watchOnce(rv: string, generation: number): Promise<{ rv: string; err?: unknown }> {
    let last = rv;
    return new Promise((resolve) => {
      let settled = false;
      const done = (err: unknown) => {
        if (settled) return;
        settled = true;
        resolve(err ? { rv: last, err } : { rv: last });
      };
      const query = {
        resourceVersion: rv,
        allowWatchBookmarks: true,
        timeoutSeconds: this.opts.watchTimeoutSeconds ?? 300,
        ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}),
      };
      const onEvent = (phase: string, raw: unknown) => {
        if (!this.alive(generation)) return;
        this.lastProgress = this.now();
        const obj = withoutManagedFields(raw as T & { code?: number });
        if (phase === "ERROR") {
          done(Object.assign(new Error(`watch error ${obj.code ?? ""}`), { code: obj.code }));
          return;
        }
        last = obj.metadata?.resourceVersion ?? last;
        if (phase === "BOOKMARK") return;
        const kept = this.cached(obj);
        const k = key(kept.metadata?.name ?? "", kept.metadata?.namespace);
        if (phase === "DELETED") {
          this.objects.delete(k);
          this.emit("delete", kept);
        } else {
          const had = this.objects.has(k);
          this.objects.set(k, kept);
          this.emit(had ? "update" : "add", kept);
        }
      };
      this.opts.watch.watch(this.opts.path, query, onEvent, done).then(
        (req) => {
          if (!this.alive(generation) || settled) req.abort();
          else {
            this.current = req;
            this.lastProgress = this.now();
          }
        },
        done,
      );
    });
  }

  private cached(o: T): T {
    const stripped = withoutManagedFields(o);
    return this.opts.transform ? this.opts.transform(stripped) : stripped;
  }

  private emit(verb: InformerVerb, obj: T): void {
    for (const h of this.handlers[verb]) {
      try {
        h(obj);
      } catch (err) {
        this.opts.log.error({ err, informer: this.opts.name, verb }, "informer handler failed");
      }
    }
  }
}

function key(name: string, namespace: string | undefined): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** @kubernetes/client-node's Watch aborts a stream silent for 30 s with a TimeoutError. */
function isInactivity(err: unknown): boolean {
  return (err as { name?: string })?.name === "TimeoutError";
}

function isGone(err: unknown): boolean {
  const e = err as { code?: number; statusCode?: number };
  return e?.code === 410 || e?.statusCode === 410;
}

/**
 * The cache keeps objects without metadata.managedFields, as controller-runtime's
 * TransformStripManagedFields does: nothing here reads them, and with one field manager per node
 * they are about half of a patch at scale (a 1000-node patch carries a thousand managers).
 */
function withoutManagedFields<T>(o: T): T {
  const meta = (o as { metadata?: { managedFields?: unknown } } | undefined)?.metadata;
  if (meta && "managedFields" in meta) delete meta.managedFields;
  return o;
}
