/**
 * Records Kubernetes Events (core/v1) for the agent and the operator: aggregated and rate-bounded
 * as client-go's EventRecorder does it. The decisions are kube/event-correlator.ts's; this file
 * only writes them over the small HTTP client:
 *
 * - create: POST the Event under the name the correlator gave it (so a repeat can patch it at
 *   once, before the create has even answered);
 * - patch: merge-patch `count` and `lastTimestamp` of that Event; if it is gone (404: expired
 *   after the API server's event TTL, deleted, or its create failed), create it again under the
 *   same name with the count so far;
 * - drop: nothing is written; a debug log line and `stats.dropped`.
 *
 * Writes of one Event run one after another (a patch never overtakes its create); they are
 * bounded by the rate bound, since every one took a token. Recording never throws and never
 * rejects: an Event that cannot be written is logged and dropped (`stats.failed`).
 */
import type { Logger } from "pino";
import { MERGE, type KubeHttp } from "./http-client.ts";
import { EventCorrelator, type CorrelatorOptions, type CorrelatorStats, type EventDecision, type EventSource, type ObjectReference } from "./event-correlator.ts";

export interface EventRecorderOptions extends CorrelatorOptions {
  readonly source: EventSource;
  /** reportingInstance of the Events (default: the source's host, if any). */
  readonly reportingInstance?: string;
  readonly log: Logger;
  /** Level of "could not record event" lines (default warn). */
  readonly failureLogLevel?: "debug" | "warn";
  /** The clock, in ms (default Date.now). */
  readonly now?: () => number;
}

export interface RecorderStats extends CorrelatorStats {
  /** Writes that failed (the event is lost). */
  readonly failed: number;
}

type EventWriter = Pick<KubeHttp, "send">;

export class KubeEventRecorder {
  private readonly correlator: EventCorrelator;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly failureLevel: "debug" | "warn";
  /** The last write queued per Event, while one runs. */
  private readonly tails = new Map<string, Promise<void>>();
  private failed = 0;

  constructor(
    private readonly http: EventWriter,
    private readonly opts: EventRecorderOptions,
  ) {
    this.correlator = new EventCorrelator({ nameTag: Math.random().toString(36).slice(2, 6), ...opts });
    this.now = opts.now ?? Date.now;
    this.log = opts.log;
    this.failureLevel = opts.failureLogLevel ?? "warn";
  }

  get stats(): RecorderStats {
    return { ...this.correlator.stats, failed: this.failed };
  }

  /** Records an event on `involvedObject`: creates, aggregates into an earlier one, or drops it. */
  record(involvedObject: ObjectReference, type: "Normal" | "Warning", reason: string, message: string): void {
    try {
      const ev = { involvedObject, source: this.opts.source, type, reason, message };
      const d = this.correlator.observe(ev, this.now());
      if (d.action === "drop") {
        this.log.debug({ reason, kind: involvedObject.kind, name: involvedObject.name, dropped: this.correlator.stats.dropped }, "event over the rate bound dropped");
        return;
      }
      const key = `${d.key}\u0000${d.name}`;
      const write = (this.tails.get(key) ?? Promise.resolve()).then(() => this.write(d, ev));
      this.tails.set(key, write);
      void write.finally(() => {
        if (this.tails.get(key) === write) this.tails.delete(key);
      });
    } catch (err) {
      this.fail(err, reason, involvedObject.kind);
    }
  }

  /** Resolves once every write queued so far has ended (tests; a graceful stop). */
  async flush(): Promise<void> {
    while (this.tails.size > 0) await Promise.all(this.tails.values());
  }

  private async write(d: Exclude<EventDecision, { action: "drop" }>, ev: { involvedObject: ObjectReference; type: string; reason: string; message: string }): Promise<void> {
    const namespace = ev.involvedObject.namespace ?? "default";
    const collection = `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`;
    const create = () =>
      this.http.send("POST", collection, {
        body: {
          metadata: { name: d.name, namespace },
          involvedObject: { ...ev.involvedObject },
          type: ev.type,
          reason: ev.reason,
          message: ev.message,
          source: { ...this.opts.source },
          reportingComponent: this.opts.source.component,
          ...(this.reportingInstance ? { reportingInstance: this.reportingInstance } : {}),
          firstTimestamp: iso(d.firstTimestamp),
          lastTimestamp: iso(d.lastTimestamp),
          count: d.count,
        },
      });
    let creating = d.action === "create";
    try {
      if (!creating) {
        try {
          await this.http.send("PATCH", `${collection}/${encodeURIComponent(d.name)}`, {
            body: { count: d.count, lastTimestamp: iso(d.lastTimestamp) },
            contentType: MERGE,
          });
          return;
        } catch (err) {
          if ((err as { code?: number }).code !== 404) throw err;
          creating = true;
        }
      }
      await create();
    } catch (err) {
      // No Event under this name: the next same event creates one rather than patch nothing.
      // (A failed patch of an existing Event leaves it be: the next patch carries the count on.)
      if (creating) this.correlator.forget(d.key, d.name);
      this.fail(err, ev.reason, ev.involvedObject.kind);
    }
  }

  private get reportingInstance(): string | undefined {
    return this.opts.reportingInstance ?? this.opts.source.host;
  }

  private fail(err: unknown, reason: string, kind: string): void {
    this.failed++;
    try {
      this.log[this.failureLevel]({ err: (err as Error)?.message ?? String(err), reason, kind }, "could not record event");
    } catch {
      // a logger that throws must not reach the caller either
    }
  }
}

const iso = (ms: number) => new Date(ms).toISOString();
