/**
 * The one list-watch of this project: a cache of one collection kept by listing it (in pages) and
 * watching it from the list's resourceVersion, as client-go's reflector does. The operator's caches
 * (operator/controller) and the agent's watches (node-agent/kube/watcher.ts) both run on it.
 *
 * - The list is read page by page (`limit`/`continue`, every page from one snapshot), each item
 *   reduced (managedFields dropped, then `transform`) as its page arrives: only one page of full
 *   objects is alive at a time.
 * - The watch asks for bookmarks (`allowWatchBookmarks`) and a server-side timeout; a watch the
 *   server ends is reopened from the last resourceVersion it delivered (an event's or a bookmark's).
 * - 410 Gone (the resourceVersion left the server's window) relists at once; any other failure
 *   relists after a jittered, doubling backoff.
 * - The silence watchdog: a watch on which nothing at all arrived for `silenceMs` (a connection
 *   frozen without FIN or RST, a proxy that lost the other side) is dropped and reopened, on a new
 *   connection, from its last resourceVersion.
 * - Optional: metadata only (`metadataOnly`): the list and the watch ask for PartialObjectMetadata
 *   (the Accept header of client-go's metadata client, which controller-runtime's metadata-only
 *   watches use), so the server sends each object's metadata and never its spec or status.
 * - Optional: a periodic relist (`relistMs`), diffed into the cache, and a whole-cycle watchdog
 *   (`staleMs`) that starts over when nothing moved at all (a list or a watch call that hangs).
 *
 * resourceVersions are opaque: they are only passed back to the server and compared for equality.
 */
import { KubeApiError } from "./http-client.ts";

/** Items per page: 1000 node objects of ~16 KiB arrive as four ~4 MB pages, not one 16 MB body. */
export const PAGE_SIZE = 250;

export type ListWatchVerb = "add" | "update" | "delete";

/**
 * Why a watch was not simply reopened after the server ended it: `silent` reopens it from its last
 * resourceVersion; every other cause relists.
 */
export type RestartCause = "error" | "expired" | "silent" | "periodic" | "stale";

export interface ObjectMeta {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

type Query = Record<string, string | number | boolean | undefined>;

/**
 * The Accept headers of a metadata-only list and watch, as client-go's metadata client sends them
 * (JSON here): the server converts each object to meta.k8s.io/v1 PartialObjectMetadata, and a
 * server that cannot falls back to the whole object (plain application/json), which `transform`
 * still reduces.
 */
const METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
const METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

/** The watch's response as list-watch reads it (node:http's IncomingMessage is one). */
export interface WatchResponse extends AsyncIterable<string | Buffer> {
  setEncoding(encoding: "utf8"): unknown;
  destroy(error?: Error): unknown;
  readonly errored: Error | null;
  /** True once the whole response arrived (the server ended the watch). */
  readonly complete: boolean;
}

/** What list-watch needs of the HTTP client (kube/http-client.ts's KubeHttp). */
export interface ListWatchClient {
  json<R>(method: string, path: string, opts: { query: Query; accept?: string }): Promise<R>;
  stream(path: string, opts: { query: Query; accept?: string }): Promise<WatchResponse>;
}

export interface ListWatchOptions<T> {
  readonly path: string;
  /** Selectors (labelSelector, fieldSelector) of both the list and the watch. */
  readonly query?: Record<string, string>;
  /**
   * Ask for metadata only (PartialObjectMetadata, list and watch): for a collection read only for
   * its names, labels and resourceVersions, such as the operator's Nodes (a kubelet's Node is
   * 5–20 KiB, nearly all of it status).
   */
  readonly metadataOnly?: boolean;
  /** Applied to every object (after managedFields are dropped) before it is cached: keep only what is read. */
  readonly transform?: (obj: T) => T;
  /** Items per list page (default PAGE_SIZE). */
  readonly pageSize?: number;
  /** Server-side timeout of each watch request (default 300 s). */
  readonly watchTimeoutSeconds?: number;
  /** Reopen a watch on which nothing arrived for this long (default silenceAfterMs(watchTimeoutSeconds)). */
  readonly silenceMs?: number;
  /** Relist this often even when every watch looks healthy (default: never). */
  readonly relistMs?: number;
  /** Start over when nothing (list, event, reconnect) happened for this long (default: never). */
  readonly staleMs?: number;
  /** First delay after a failure, doubling up to `backoffMaxMs` (default 500 ms, 30 s), jittered ±50 %. */
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  /** After a list was applied and after each watch event: the whole cache. */
  readonly onChange?: (objects: ReadonlyMap<string, T>) => void;
  /** Before a watch is reopened or the collection relisted for a `cause` other than the server's end of a watch. */
  readonly onRestart?: (cause: RestartCause) => void;
  /** A failed list, a failed watch (its cause is reported by onRestart too), or a handler that threw. */
  readonly onError?: (err: unknown, during: "list" | "watch" | "handler") => void;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** An event's object, and for an update the cached object it replaces (as client-go's UpdateFunc(old, new)). */
type Handler<T> = (obj: T, old?: T) => void;

/** How long a watch may stay silent: the server closes it after `timeoutSeconds`; allow a margin. */
export function silenceAfterMs(timeoutSeconds: number): number {
  const margin = Math.min(30, Math.max(5, timeoutSeconds / 10));
  return (timeoutSeconds + margin) * 1000;
}

export class SilentWatch extends Error {
  override readonly name = "SilentWatch";
}

/**
 * A list-watch cache: `on` handlers get each add, update and delete (a relist is diffed into the
 * cache, so what a broken watch missed comes back as events); `get` and `list` read the cache.
 */
export class ListWatch<T extends ObjectMeta> {
  private objects = new Map<string, T>();
  private readonly handlers: Record<ListWatchVerb, Array<Handler<T>>> = { add: [], update: [], delete: [] };
  private generation = 0;
  private stopped = true;
  private synced = false;
  private lastProgress = 0;
  private current: { abort(): void } | undefined;
  private relistRequested: RestartCause | undefined;
  private failures = 0;
  private timers: NodeJS.Timeout[] = [];
  /** Backoffs in progress: stop() ends them, so that no timer outlives the list-watch. */
  private readonly waiting = new Set<() => void>();
  private firstSync: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(
    private readonly client: ListWatchClient,
    private readonly opts: ListWatchOptions<T>,
  ) {}

  on(verb: ListWatchVerb, handler: Handler<T>): void {
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

  /** Starts list-and-watch; resolves after the first successful list (retried until then) or on stop(). */
  start(): Promise<void> {
    if (!this.stopped) return this.firstSync?.promise ?? Promise.resolve();
    this.stopped = false;
    let resolve!: () => void;
    this.firstSync = { promise: new Promise<void>((r) => (resolve = r)), resolve };
    if (this.synced) resolve();
    this.lastProgress = this.now();
    const { relistMs, staleMs } = this.opts;
    if (relistMs) this.timers.push(setInterval(() => this.requestRelist("periodic"), relistMs));
    if (staleMs) {
      const check = () => {
        if (this.now() - this.lastProgress <= staleMs) return;
        this.restart("stale");
      };
      this.timers.push(setInterval(check, Math.max(1000, Math.min(staleMs / 2, 30_000))));
    }
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
    for (const wake of [...this.waiting]) wake();
    this.firstSync?.resolve(); // a start() still waiting returns; hasSynced tells
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private alive(generation: number): boolean {
    return !this.stopped && generation === this.generation;
  }

  /** Ends the current watch; the loop then lists afresh and diffs. */
  private requestRelist(cause: RestartCause): void {
    this.relistRequested = cause;
    this.current?.abort();
  }

  /** Abandons the current cycle (whatever call it hangs in) and starts a new one with a list. */
  private restart(cause: RestartCause): void {
    this.opts.onRestart?.(cause);
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
          this.opts.onError?.(err, "list");
          await this.backoff();
          continue;
        }
        if (rv === undefined) return; // superseded
      }
      const outcome = await this.watchOnce(rv, generation);
      if (!this.alive(generation)) return;
      rv = outcome.rv;
      const requested = this.relistRequested;
      this.relistRequested = undefined;
      if (requested) {
        this.opts.onRestart?.(requested);
        rv = undefined;
      } else if (outcome.err === undefined) {
        this.failures = 0; // the server's timeout ended it: watch on
      } else {
        this.opts.onError?.(outcome.err, "watch");
        if (outcome.err instanceof SilentWatch) {
          this.opts.onRestart?.("silent"); // watch on, from where it stopped, on a new connection
        } else if (isGone(outcome.err)) {
          this.opts.onRestart?.("expired");
          rv = undefined;
        } else {
          this.opts.onRestart?.("error");
          rv = undefined;
          await this.backoff();
        }
      }
    }
  }

  /** Waits base·2^failures (capped), jittered by ±50 % so that many clients do not come back at once. */
  private backoff(): Promise<void> {
    const ms = Math.min(this.opts.backoffMaxMs ?? 30_000, (this.opts.backoffBaseMs ?? 500) * 2 ** this.failures++);
    const jittered = ms * (0.5 + (this.opts.random ?? Math.random)());
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.waiting.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, jittered);
      this.waiting.add(wake);
    });
  }

  /** Lists and diffs into the cache; undefined when a newer cycle took over meanwhile. */
  private async relist(generation: number): Promise<string | undefined> {
    const accept = this.opts.metadataOnly ? METADATA_LIST : undefined;
    const list = await pagedList<T>(this.client, this.opts.path, this.opts.query ?? {}, (o) => this.cached(o), this.opts.pageSize, accept);
    if (!this.alive(generation)) return undefined;
    const fresh = new Map(list.items.map((o) => [keyOf(o), o]));
    const before = this.objects;
    this.objects = fresh;
    for (const [k, o] of fresh) {
      const old = before.get(k);
      if (!old) this.emit("add", o);
      else if (old.metadata?.resourceVersion !== o.metadata?.resourceVersion) this.emit("update", o, old);
    }
    for (const [k, o] of before) if (!fresh.has(k)) this.emit("delete", o);
    this.lastProgress = this.now();
    if (!this.synced) {
      this.synced = true;
      this.firstSync?.resolve();
    }
    this.changed();
    return list.metadata.resourceVersion ?? "";
  }

  /** One watch from `rv`: resolves with the last resourceVersion seen, and the error that ended it. */
  private async watchOnce(rv: string, generation: number): Promise<{ rv: string; err?: unknown }> {
    const { path } = this.opts;
    const timeoutSeconds = this.opts.watchTimeoutSeconds ?? 300;
    let res: WatchResponse;
    try {
      res = await this.client.stream(path, {
        query: { ...this.opts.query, watch: "1", resourceVersion: rv, allowWatchBookmarks: "true", timeoutSeconds: String(timeoutSeconds) },
        ...(this.opts.metadataOnly ? { accept: METADATA_WATCH } : {}),
      });
    } catch (err) {
      return { rv, err };
    }
    let aborted = false;
    const abort = { abort: () => ((aborted = true), res.destroy()) };
    if (!this.alive(generation) || this.relistRequested) abort.abort();
    else this.current = abort;
    this.lastProgress = this.now();
    res.setEncoding("utf8");
    const silenceMs = this.opts.silenceMs ?? silenceAfterMs(timeoutSeconds);
    const silent = () => res.destroy(new SilentWatch(`nothing arrived on the watch of ${path} for ${silenceMs} ms`));
    let timer = setTimeout(silent, silenceMs);
    let last = rv;
    try {
      for await (const line of lines(res as AsyncIterable<string>)) {
        clearTimeout(timer);
        timer = setTimeout(silent, silenceMs);
        if (!this.alive(generation)) break;
        this.lastProgress = this.now();
        last = this.onLine(line, last);
      }
    } catch (err) {
      return aborted ? { rv: last } : { rv: last, err };
    } finally {
      clearTimeout(timer);
      if (this.current === abort) this.current = undefined;
    }
    if (aborted || !this.alive(generation)) return { rv: last };
    return { rv: last, err: this.endError(res) };
  }

  /** One line of the watch stream: applies its event; returns the last resourceVersion seen. */
  private onLine(line: string, last: string): string {
    if (!line.trim()) return last;
    const ev = JSON.parse(line) as { type: string; object: T & { code?: number; reason?: string; message?: string } };
    if (ev.type === "ERROR") {
      const status = ev.object;
      throw new KubeApiError(status.code ?? 500, status.reason ?? "WatchError", status.message ?? "watch error");
    }
    const obj = withoutManagedFields(ev.object);
    const rv = obj.metadata?.resourceVersion ?? last;
    if (ev.type !== "BOOKMARK") this.apply(ev.type, this.cached(obj));
    return rv;
  }

  /** Why a watch stream that ended on its own ended: nothing (the server closed it), an error, or a cut. */
  private endError(res: WatchResponse): unknown {
    if (res.errored) return res.errored;
    if (!res.complete) return new Error(`the watch of ${this.opts.path} was cut off`);
    return undefined;
  }

  private apply(type: string, obj: T): void {
    const k = keyOf(obj);
    if (type === "DELETED") {
      this.objects.delete(k);
      this.emit("delete", obj);
    } else {
      const old = this.objects.get(k);
      this.objects.set(k, obj);
      if (old) this.emit("update", obj, old);
      else this.emit("add", obj);
    }
    this.changed();
  }

  private cached(o: T): T {
    const stripped = withoutManagedFields(o);
    return this.opts.transform ? this.opts.transform(stripped) : stripped;
  }

  private changed(): void {
    if (!this.opts.onChange) return;
    try {
      this.opts.onChange(this.objects);
    } catch (err) {
      this.opts.onError?.(err, "handler");
    }
  }

  private emit(verb: ListWatchVerb, obj: T, old?: T): void {
    for (const h of this.handlers[verb]) {
      try {
        h(obj, old);
      } catch (err) {
        this.opts.onError?.(err, "handler");
      }
    }
  }
}

interface ListPage<T> {
  /** null for an empty PartialObjectMetadataList: Go encodes its nil slice so. */
  items: T[] | null;
  metadata?: { resourceVersion?: string; continue?: string };
}

/**
 * A list read page by page (`limit`/`continue`: every page from the same snapshot), each item passed
 * through `keep` as its page arrives, so the full objects of only one page are alive at a time.
 * An expired continue token (410) fails the list; list-watch lists again. `accept`: the Accept
 * header of every page (default: the client's).
 */
export async function pagedList<T>(
  client: Pick<ListWatchClient, "json">,
  path: string,
  query: Record<string, string>,
  keep: (obj: T) => T,
  limit = PAGE_SIZE,
  accept?: string,
): Promise<{ items: T[]; metadata: { resourceVersion?: string } }> {
  const items: T[] = [];
  let next: string | undefined;
  let resourceVersion: string | undefined;
  do {
    const page: ListPage<T> = await client.json("GET", path, { query: { ...query, limit, continue: next }, ...(accept ? { accept } : {}) });
    for (const o of page.items ?? []) items.push(keep(o));
    next = page.metadata?.continue || undefined;
    resourceVersion = page.metadata?.resourceVersion;
  } while (next);
  return { items, metadata: resourceVersion === undefined ? {} : { resourceVersion } };
}

/**
 * The lines of a stream (a watch sends one JSON event per line). Not node:readline: it drags the
 * terminal and REPL-history modules into the agent's memory.
 */
export async function* lines(input: AsyncIterable<string>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of input) {
    const text = rest + chunk;
    const parts = text.split("\n");
    rest = parts.pop() ?? "";
    yield* parts;
  }
  if (rest) yield rest;
}

function key(name: string, namespace: string | undefined): string {
  return namespace ? `${namespace}/${name}` : name;
}

function keyOf(o: ObjectMeta): string {
  return key(o.metadata?.name ?? "", o.metadata?.namespace);
}

function isGone(err: unknown): boolean {
  return (err as { code?: number } | undefined)?.code === 410;
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
