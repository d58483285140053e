/**
 * Holds a Lease while leading. `run` resolves once this process leads and calls `onLost` if it
 * ever stops renewing in time (the caller exits, as controller-runtime does: a fresh process is
 * simpler to reason about than a controller that stops and restarts its informers).
 */
import type { V1Lease, V1LeaseSpec } from "@kubernetes/client-node";
import { MERGE, type KubeHttp } from "../../kube/http-client.ts";
import type { Logger } from "pino";
import { leaseAction, microTime, observe, type LeaseAction, type LeaseObservation, type LeaseView } from "./lease-decision.ts";

export interface ElectorOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly leaseDurationSeconds?: number;
  readonly retryPeriodMs?: number;
  readonly onLost: () => void;
  readonly onLeading?: (leading: boolean) => void;
  /** The local clock (default: the real one); another holder's lease is judged on it alone. */
  readonly now?: () => Date;
}

export class LeaderElector {
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenew = 0;
  private renewing = false;
  /** The lease as last seen and when it was first seen so: see lease-decision.ts. */
  private observed: LeaseObservation | undefined;
  /** The lease as this process last wrote it (its resourceVersion guards the next renewal). */
  private written: V1Lease | undefined;

  constructor(
    private readonly http: KubeHttp,
    private readonly opts: ElectorOptions,
    private readonly log: Logger,
  ) {}

  get isLeader(): boolean {
    return this.leading;
  }

  /** Resolves once this process holds the lease; API errors meanwhile are retried, not fatal. */
  async acquire(): Promise<void> {
    for (;;) {
      try {
        if (await this.tryOnce()) break;
      } catch (err) {
        this.log.warn({ err }, "could not read or take the leader lease; retrying");
      }
      await new Promise((r) => setTimeout(r, this.retryMs));
    }
    this.timer = setInterval(() => this.tick(), this.retryMs);
  }

  async release(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (!this.leading) return;
    this.leading = false;
    await this.http
      .json("PATCH", this.leasePath(), { contentType: MERGE, body: { spec: { holderIdentity: null, renewTime: null } } })
      .catch((err: unknown) => this.log.warn({ err }, "could not release the lease"));
  }

  private leasePath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases/${this.opts.name}`;
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  private get retryMs(): number {
    return this.opts.retryPeriodMs ?? 2000;
  }

  private get durationS(): number {
    return this.opts.leaseDurationSeconds ?? 15;
  }

  /**
   * One renewal at a time, and the deadline judged on every tick, before any await: a renewal
   * that hangs (a dead connection) must not keep this process believing it leads while another
   * takes the expired lease.
   */
  private tick(): void {
    const sinceRenewMs = this.now().getTime() - this.lastRenew;
    if (this.leading && sinceRenewMs > this.durationS * 1000 * 0.66) {
      this.leading = false;
      this.opts.onLeading?.(false);
      this.log.error({ sinceRenewMs }, "lost the leader lease");
      if (this.timer) clearInterval(this.timer);
      this.opts.onLost();
      return;
    }
    if (this.renewing) return;
    this.renewing = true;
    this.tryOnce()
      .catch((err: unknown) => this.log.warn({ err }, "could not renew the leader lease"))
      .finally(() => (this.renewing = false));
  }

  private async tryOnce(): Promise<boolean> {
    if (this.leading && this.written && (await this.renewOnWritten(this.written))) return true;
    const { namespace, name, identity } = this.opts;
    const lease = await this.read();
    const now = this.now();
    const { action, observed } = leaseAction(lease?.spec ? leaseView(lease.spec) : undefined, identity, this.observed, now, this.durationS);
    this.observed = observed;
    if (action === "wait") return false;
    try {
      await this.write(action, lease, now);
    } catch (err) {
      const code = (err as { code?: number }).code;
      if (code === 409 || code === 404) return false;
      throw err;
    }
    this.lastRenew = this.now().getTime();
    if (!this.leading) {
      this.leading = true;
      this.opts.onLeading?.(true);
      this.log.info({ lease: `${namespace}/${name}`, action }, "became leader");
    }
    return true;
  }

  /**
   * client-go's fast path: the leader renews the lease it last wrote without reading it first (one
   * request per renewal, not two). Its resourceVersion makes the write fail when anyone else wrote
   * since; then the lease is read and judged as on any other tick.
   */
  private async renewOnWritten(lease: V1Lease): Promise<boolean> {
    try {
      await this.write("renew", lease, this.now());
    } catch (err) {
      this.written = undefined;
      this.log.debug({ err }, "could not renew the leader lease as last written; reading it");
      return false;
    }
    this.lastRenew = this.now().getTime();
    return true;
  }

  /** The lease, or undefined when there is none. */
  private async read(): Promise<V1Lease | undefined> {
    try {
      return await this.http.json<V1Lease>("GET", this.leasePath());
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
      return undefined;
    }
  }

  /** Takes or renews the lease, guarded by the resourceVersion read (409 when another wrote first). */
  private async write(action: Exclude<LeaseAction, "wait">, lease: V1Lease | undefined, now: Date): Promise<void> {
    const { namespace, name, identity } = this.opts;
    if (action === "create") {
      await this.http.json("POST", `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`, {
        body: { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace }, spec: { holderIdentity: identity, leaseDurationSeconds: this.durationS } },
      });
    }
    const body = {
      metadata: { resourceVersion: action === "create" ? undefined : lease?.metadata?.resourceVersion },
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds: this.durationS,
        renewTime: microTime(now),
        ...(action === "renew" ? {} : { acquireTime: microTime(now), leaseTransitions: (lease?.spec?.leaseTransitions ?? 0) + (lease ? 1 : 0) }),
      },
    };
    const written = await this.http.json<V1Lease>("PATCH", this.leasePath(), { contentType: MERGE, body });
    // What this process wrote, seen now (client-go's setObservedRecord after its update).
    if (written?.spec) this.observed = observe(undefined, leaseView(written.spec), now);
    this.written = written;
  }
}

/** The API's JSON gives times as strings; the client library's types say Date. */
function leaseView(spec: V1LeaseSpec): LeaseView {
  return { ...spec, renewTime: rawTime(spec.renewTime), acquireTime: rawTime(spec.acquireTime) };
}

function rawTime(t: Date | string | undefined): string | undefined {
  if (t === undefined) return undefined;
  return t instanceof Date ? t.toISOString() : String(t);
}
