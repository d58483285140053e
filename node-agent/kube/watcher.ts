/**
 * List-then-watch of one collection, delivering the full current set on every change. Restarts
 * with backoff on errors, relists on 410 Gone, and relists when the stream goes silent for longer
 * than the server's own timeout plus a margin (a watch that is held open without events: a frozen
 * connection, a proxy that lost the other side).
 */
import type { KubeHttp } from "../../kube/http-client.ts";
import { KubeApiError } from "../../kube/http-client.ts";

interface Obj {
  metadata?: { name?: string; resourceVersion?: string };
}

export type RestartCause = "error" | "silent" | "expired";

export interface WatcherOptions {
  readonly path: string;
  readonly query?: Record<string, string>;
  /** Server-side watch timeout (default 300 s); the stream is reopened after it. */
  readonly timeoutSeconds?: number;
  /** Relist when nothing (not even the server's close) arrives for this long (default: silenceAfterMs(timeoutSeconds)). */
  readonly silenceMs?: number;
  /** Applied to every object as it arrives (to keep only what the consumer needs). */
  readonly transform?: (object: unknown) => unknown;
  readonly onChange: (objects: ReadonlyMap<string, unknown>) => void;
  readonly onError?: (err: unknown) => void;
  /** Called before each relist that follows a failed, silent or expired watch. */
  readonly onRestart?: (cause: RestartCause) => void;
}

/** How long a watch may stay silent: the server closes it after `timeoutSeconds`; allow a margin. */
export function silenceAfterMs(timeoutSeconds: number): number {
  const margin = Math.min(30, Math.max(5, timeoutSeconds / 10));
  return (timeoutSeconds + margin) * 1000;
}

class SilentWatch extends Error {
  override readonly name = "SilentWatch";
}

export class Watcher {
  private objects = new Map<string, unknown>();
  private stopped = false;
  private current: { destroy(): void } | undefined;
  private failures = 0;

  constructor(
    private readonly http: KubeHttp,
    private readonly opts: WatcherOptions,
  ) {}

  /**
   * Lists once, then watches in the background. A failed first list is retried in the
   * background too (with backoff): the agent keeps serving its probes while the API is away.
   */
  async start(): Promise<void> {
    let rv: string | undefined;
    try {
      rv = await this.list();
    } catch (err) {
      this.opts.onError?.(err);
    }
    void this.loop(rv);
  }

  stop(): void {
    this.stopped = true;
    this.current?.destroy();
  }

  private async list(): Promise<string> {
    const list = await this.http.json<{ items: Obj[]; metadata: { resourceVersion: string } }>("GET", this.opts.path, { query: this.opts.query ?? {} });
    const keep = this.opts.transform ?? ((o: unknown) => o);
    this.objects = new Map(list.items.map((o) => [o.metadata?.name ?? "", keep(o)]));
    this.opts.onChange(this.objects);
    return list.metadata.resourceVersion;
  }

  /** Watches from `rv`; after a failure, backs off and relists. */
  private async loop(startRv: string | undefined): Promise<void> {
    let rv = startRv;
    while (!this.stopped) {
      if (rv === undefined) {
        await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** this.failures++)));
        if (this.stopped) return;
        try {
          rv = await this.list();
        } catch (e) {
          this.opts.onError?.(e);
          continue;
        }
      }
      try {
        rv = await this.watchOnce(rv);
        this.failures = 0;
      } catch (err) {
        if (this.stopped) return;
        this.opts.onError?.(err);
        this.opts.onRestart?.(err instanceof SilentWatch ? "silent" : err instanceof KubeApiError && err.code === 410 ? "expired" : "error");
        rv = undefined;
      }
    }
  }

  /** One watch stream; resolves with the last resourceVersion when the server ends it. */
  private async watchOnce(rv: string): Promise<string> {
    const timeoutSeconds = this.opts.timeoutSeconds ?? 300;
    const res = await this.http.stream(this.opts.path, {
      query: { ...this.opts.query, watch: "1", resourceVersion: rv, allowWatchBookmarks: "true", timeoutSeconds: String(timeoutSeconds) },
    });
    this.current = res;
    if (this.stopped) res.destroy();
    res.setEncoding("utf8");
    let last = rv;
    const silenceMs = this.opts.silenceMs ?? silenceAfterMs(timeoutSeconds);
    const silent = () => res.destroy(new SilentWatch(`nothing arrived on the watch of ${this.opts.path} for ${silenceMs} ms`));
    let timer = setTimeout(silent, silenceMs);
    try {
      for await (const line of lines(res)) {
        clearTimeout(timer);
        timer = setTimeout(silent, silenceMs);
        if (!line.trim()) continue;
        const ev = JSON.parse(line) as { type: string; object: Obj & { code?: number; message?: string } };
        if (ev.type === "ERROR") {
          throw new KubeApiError(ev.object.code ?? 500, "WatchError", ev.object.message ?? "watch error");
        }
        last = ev.object.metadata?.resourceVersion ?? last;
        if (ev.type === "BOOKMARK") continue;
        const name = ev.object.metadata?.name ?? "";
        if (ev.type === "DELETED") this.objects.delete(name);
        else this.objects.set(name, this.opts.transform ? this.opts.transform(ev.object) : ev.object);
        this.opts.onChange(this.objects);
      }
    } finally {
      clearTimeout(timer);
    }
    if (res.errored) throw res.errored;
    if (!res.complete && !this.stopped) throw new Error(`the watch of ${this.opts.path} was cut off`);
    return last;
  }
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
