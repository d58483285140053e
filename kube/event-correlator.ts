/**
 * What to do with one Kubernetes Event, decided without I/O: create it, patch the Event recorded
 * for the same thing a moment ago (count + 1), or drop it. The counterpart of client-go's
 * EventCorrelator (tools/record/events_cache.go), reduced to what the agent and the operator need;
 * kube/event-recorder.ts does the HTTP. The clock comes in as an argument, so tests run on fake time.
 *
 * Aggregation. Events are the same when their involved object (apiVersion, kind, namespace, name,
 * uid), source, type, reason and message are: an Event the same as one recorded at most `windowMs`
 * before (default 10 minutes) patches that Event (count + 1, lastTimestamp now) instead of
 * creating another, so `kubectl describe` shows "(x40 over 12m)" instead of 40 lines. Later than
 * that, a new Event starts (count 1). The last Event of each key is remembered in an LRU of
 * `maxKeys` keys (default 4096, as client-go), so the memory stays bounded however many distinct
 * events there are; a key pushed out only means its next occurrence creates a new Event.
 * client-go's second stage (ten events differing only in their message within 10 minutes become one
 * "(combined from similar events)") is left out: our messages carry what differs on purpose.
 *
 * Rate bound. A token bucket of `burst` tokens refilled with one token every `refillMs`; every
 * write (create or patch) takes one, and an event arriving to an empty bucket is dropped (counted in
 * `stats.dropped`), never queued. client-go keeps one bucket per source + object + type with a
 * burst of 25 and one token every 5 minutes; those are the defaults here (`rateKey: perObject`).
 * The agent keeps a single bucket for its whole source, i.e. one per node whatever the objects
 * (`perSource`, node-agent/kube/agent-api.ts); the operator one per patch, type and reason
 * (`perObjectReason`, operator/kube/events.ts), so that a long rollout's progress events cannot use
 * up the budget of its RolloutComplete. Buckets live in an LRU of `maxKeys` too. A dropped repeat does not count into the recorded Event's count: the count is the
 * number of occurrences written, as in client-go.
 */

export interface ObjectReference {
  readonly apiVersion?: string | undefined;
  readonly kind: string;
  readonly name: string;
  readonly namespace?: string | undefined;
  readonly uid?: string | undefined;
}

export interface EventSource {
  readonly component: string;
  readonly host?: string | undefined;
}

export interface EventOccurrence {
  readonly involvedObject: ObjectReference;
  readonly source: EventSource;
  readonly type: "Normal" | "Warning";
  readonly reason: string;
  readonly message: string;
}

export type EventDecision =
  /** POST a new Event named `name` (count 1). */
  | { readonly action: "create"; readonly key: string; readonly name: string; readonly count: 1; readonly firstTimestamp: number; readonly lastTimestamp: number }
  /** PATCH the Event `name` to `count` and `lastTimestamp`. */
  | { readonly action: "patch"; readonly key: string; readonly name: string; readonly count: number; readonly firstTimestamp: number; readonly lastTimestamp: number }
  /** Over the rate bound: nothing is written. */
  | { readonly action: "drop"; readonly key: string; readonly cause: "rate" };

export interface CorrelatorOptions {
  /** Same events this close (ms since the previous one) patch the earlier Event (default 10 min). */
  readonly windowMs?: number;
  /** Keys remembered at most, for aggregation and for rate buckets each (default 4096). */
  readonly maxKeys?: number;
  /** Writes allowed at once per bucket (default 25). */
  readonly burst?: number;
  /** One more write allowed per bucket every this many ms (default 5 min). */
  readonly refillMs?: number;
  /** Which bucket an event draws from (default `perObject`: source + object + type, as client-go). */
  readonly rateKey?: (ev: EventOccurrence) => string;
  /**
   * Part of each new Event's name after the object's name and the time, so that two recorders
   * naming an Event of the same object in the same millisecond (two nodes) do not collide.
   * Lowercase letters and digits; the recorder gives a random one, tests a fixed one.
   */
  readonly nameTag?: string;
}

export interface CorrelatorStats {
  /** Events decided as a create. */
  readonly created: number;
  /** Events decided as a patch of an earlier Event. */
  readonly patched: number;
  /** Events dropped over the rate bound. */
  readonly dropped: number;
}

export const EVENT_WINDOW_MS = 10 * 60_000;
export const EVENT_CACHE_KEYS = 4096;
export const EVENT_BURST = 25;
export const EVENT_REFILL_MS = 5 * 60_000;

interface Recorded {
  readonly name: string;
  count: number;
  readonly firstTimestamp: number;
  lastTimestamp: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/** A Map that forgets its least recently used key past `max` keys. */
export class Lru<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly max: number) {
    if (!(max >= 1)) throw new Error(`LRU size must be at least 1, not ${max}`);
  }
  get size(): number {
    return this.map.size;
  }
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value as K);
  }
  delete(key: K): void {
    this.map.delete(key);
  }
}

const SEP = "\u0000";
const MAX_NAME = 253;

export class EventCorrelator {
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly refillMs: number;
  private readonly rateKey: (ev: EventOccurrence) => string;
  private readonly nameTag: string;
  private readonly recorded: Lru<string, Recorded>;
  private readonly buckets: Lru<string, Bucket>;
  private seq = 0;
  private counts = { created: 0, patched: 0, dropped: 0 };

  constructor(opts: CorrelatorOptions = {}) {
    this.windowMs = opts.windowMs ?? EVENT_WINDOW_MS;
    this.burst = opts.burst ?? EVENT_BURST;
    this.refillMs = opts.refillMs ?? EVENT_REFILL_MS;
    this.rateKey = opts.rateKey ?? perObject;
    this.nameTag = (opts.nameTag ?? "").toLowerCase().replace(/[^a-z0-9]/g, "");
    const maxKeys = opts.maxKeys ?? EVENT_CACHE_KEYS;
    this.recorded = new Lru(maxKeys);
    this.buckets = new Lru(maxKeys);
  }

  get stats(): CorrelatorStats {
    return { ...this.counts };
  }

  /** Keys remembered for aggregation (at most `maxKeys`). */
  get size(): number {
    return this.recorded.size;
  }

  /** Decides what `ev` at time `now` (ms) becomes, and remembers it as written. */
  observe(ev: EventOccurrence, now: number): EventDecision {
    const key = eventKey(ev);
    if (!this.take(this.rateKey(ev), now)) {
      this.counts.dropped++;
      return { action: "drop", key, cause: "rate" };
    }
    const last = this.recorded.get(key);
    if (last && now - last.lastTimestamp <= this.windowMs && now >= last.lastTimestamp) {
      last.count++;
      last.lastTimestamp = now;
      this.counts.patched++;
      return { action: "patch", key, name: last.name, count: last.count, firstTimestamp: last.firstTimestamp, lastTimestamp: now };
    }
    const name = this.newName(ev.involvedObject.name, now);
    this.recorded.set(key, { name, count: 1, firstTimestamp: now, lastTimestamp: now });
    this.counts.created++;
    return { action: "create", key, name, count: 1, firstTimestamp: now, lastTimestamp: now };
  }

  /**
   * The Event `name` of `key` could not be created: the next same event creates one again
   * instead of patching one that does not exist. (A newer Event of the key is kept.)
   */
  forget(key: string, name: string): void {
    if (this.recorded.get(key)?.name === name) this.recorded.delete(key);
  }

  private take(key: string, now: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    } else if (now > b.at) {
      b.tokens = Math.min(this.burst, b.tokens + (now - b.at) / this.refillMs);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  /** `<object>.<time in ms, hex><tag><sequence, hex>`, a valid name of at most 253 characters. */
  private newName(objectName: string, now: number): string {
    const suffix = `${Math.max(0, Math.floor(now)).toString(16)}${this.nameTag}${(this.seq++).toString(16)}`;
    const base = objectName.slice(0, MAX_NAME - suffix.length - 1).replace(/[.-]+$/, "") || "event";
    return `${base}.${suffix}`;
  }
}

/** What makes two events the same (client-go's getEventKey, less the field path we never set). */
export function eventKey(ev: EventOccurrence): string {
  return [...sourceOf(ev), ...objectOf(ev.involvedObject), ev.type, ev.reason, ev.message].join(SEP);
}

const sourceOf = (ev: EventOccurrence) => [ev.source.component, ev.source.host ?? ""];
const objectOf = (o: ObjectReference) => [o.apiVersion ?? "", o.kind, o.namespace ?? "", o.name, o.uid ?? ""];

/** One bucket per source, object and type: client-go's getSpamKey. */
export const perObject = (ev: EventOccurrence): string => [...sourceOf(ev), ...objectOf(ev.involvedObject), ev.type].join(SEP);

/** One bucket per source, object, type and reason. */
export const perObjectReason = (ev: EventOccurrence): string => [...sourceOf(ev), ...objectOf(ev.involvedObject), ev.type, ev.reason].join(SEP);

/** One bucket for the whole source (component and host), whatever the object. */
export const perSource = (ev: EventOccurrence): string => sourceOf(ev).join(SEP);
