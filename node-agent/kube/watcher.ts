/**
 * List-then-watch of one collection, delivering the full current set on every change. Restarts
 * with backoff on errors, relists on 410 Gone, and relists when the stream goes silent for longer
 * than the server's own timeout plus a margin (a watch that is held open without events).
 */
import { createInterface } from "node:readline";
import type { KubeHttp } from "./http-client.ts";
import { KubeApiError } from "./http-client.ts";

interface Obj {
  metadata?: { name?: string; resourceVersion?: string };
}

export interface WatcherOptions {
  readonly path: string;
  readonly query?: Record<string, string>;
  /** Server-side watch timeout; the stream is reopened after it. */
  readonly timeoutSeconds?: number;
  /** Relist when nothing (not even a bookmark) arrives for this long. */
  readonly silenceMs?: number;
  readonly onChange: (objects: ReadonlyMap<string, unknown>) => void;
  readonly onError?: (err: unknown) => void;
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

  /** Lists once, then watches in the background. */
  async start(): Promise<void> {
    const rv = await this.list();
    void this.loop(rv);
  }

  stop(): void {
    this.stopped = true;
    this.current?.destroy();
  }

  private async list(): Promise<string> {
    const list = await this.http.json<{ items: Obj[]; metadata: { resourceVersion: string } }>("GET", this.opts.path, { query: this.opts.query ?? {} });
    this.objects = new Map(list.items.map((o) => [o.metadata?.name ?? "", o]));
    this.opts.onChange(this.objects);
    return list.metadata.resourceVersion;
  }

  private async loop(startRv: string): Promise<void> {
    let rv = startRv;
    while (!this.stopped) {
      try {
        rv = await this.watchOnce(rv);
        this.failures = 0;
      } catch (err) {
        if (this.stopped) return;
        this.opts.onError?.(err);
        const delay = Math.min(30_000, 250 * 2 ** this.failures++);
        await new Promise((r) => setTimeout(r, delay));
        try {
          rv = await this.list();
        } catch (e) {
          this.opts.onError?.(e);
        }
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
    let last = rv;
    const silenceMs = this.opts.silenceMs ?? (timeoutSeconds + 30) * 1000;
    let timer = setTimeout(() => res.destroy(new Error("watch went silent")), silenceMs);
    try {
      for await (const line of createInterface({ input: res, crlfDelay: Infinity })) {
        clearTimeout(timer);
        timer = setTimeout(() => res.destroy(new Error("watch went silent")), silenceMs);
        if (!line.trim()) continue;
        const ev = JSON.parse(line) as { type: string; object: Obj & { code?: number; message?: string } };
        if (ev.type === "ERROR") {
          throw new KubeApiError(ev.object.code ?? 500, "WatchError", ev.object.message ?? "watch error");
        }
        last = ev.object.metadata?.resourceVersion ?? last;
        if (ev.type === "BOOKMARK") continue;
        const name = ev.object.metadata?.name ?? "";
        if (ev.type === "DELETED") this.objects.delete(name);
        else this.objects.set(name, ev.object);
        this.opts.onChange(this.objects);
      }
    } finally {
      clearTimeout(timer);
    }
    if (res.errored) throw res.errored;
    return last;
  }
}
