/**
 * The agent's watches (its Node, its KernelLivePatchNode) as the agent reads them: the full current
 * set on every change. The list-watch itself is kube/list-watch.ts, the operator's too; what is the
 * agent's own here is that start() does not wait for the API server: a failed first list is
 * retried in the background, and the agent keeps serving its probes while the API is away.
 */
import { ListWatch, type ListWatchClient, type ObjectMeta } from "../../kube/list-watch.ts";

/** The restarts an agent's watch reports (it never relists periodically). */
export type RestartCause = "error" | "silent" | "expired";

export interface WatcherOptions {
  readonly path: string;
  readonly query?: Record<string, string>;
  /** Server-side watch timeout (default 300 s); the stream is reopened after it. */
  readonly timeoutSeconds?: number;
  /** Reopen a watch when nothing (not even the server's close) arrives for this long (default: silenceAfterMs(timeoutSeconds)). */
  readonly silenceMs?: number;
  /** Ask for PartialObjectMetadata: labels and the like, without spec or status (kube/list-watch.ts). */
  readonly metadataOnly?: boolean;
  /** Applied to every object as it arrives (to keep only what the consumer needs). */
  readonly transform?: (object: unknown) => unknown;
  readonly onChange: (objects: ReadonlyMap<string, unknown>) => void;
  readonly onError?: (err: unknown) => void;
  /** Called before each relist (or reopening, when silent) that follows a failed, silent or expired watch. */
  readonly onRestart?: (cause: RestartCause) => void;
}

export class Watcher {
  private readonly listWatch: ListWatch<ObjectMeta>;
  private firstListFailed: (() => void) | undefined;

  constructor(http: ListWatchClient, opts: WatcherOptions) {
    const { onRestart, onError, transform } = opts;
    this.listWatch = new ListWatch<ObjectMeta>(http, {
      path: opts.path,
      ...(opts.query ? { query: opts.query } : {}),
      ...(opts.timeoutSeconds !== undefined ? { watchTimeoutSeconds: opts.timeoutSeconds } : {}),
      ...(opts.silenceMs !== undefined ? { silenceMs: opts.silenceMs } : {}),
      ...(opts.metadataOnly ? { metadataOnly: true } : {}),
      ...(transform ? { transform: (o: ObjectMeta) => transform(o) as ObjectMeta } : {}),
      backoffBaseMs: 250,
      onChange: opts.onChange,
      onError: (err, during) => {
        if (during === "list") this.firstListFailed?.();
        onError?.(err);
      },
      ...(onRestart ? { onRestart: (cause) => onRestart(cause === "error" || cause === "expired" ? cause : "silent") } : {}),
    });
  }

  /** Lists once, then watches in the background; resolves after the first list, whether it succeeded or not. */
  async start(): Promise<void> {
    const failed = new Promise<void>((resolve) => (this.firstListFailed = resolve));
    await Promise.race([this.listWatch.start(), failed]);
    this.firstListFailed = undefined;
  }

  stop(): void {
    this.listWatch.stop();
  }
}
