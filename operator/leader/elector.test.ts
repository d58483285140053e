import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import pino from "pino";
import { KubeApiError, type KubeHttp } from "../../kube/http-client.ts";
import { LeaderElector } from "./elector.ts";

interface Lease {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: Record<string, unknown>;
}

/** One Lease kept as the API server would: merge patches guarded by resourceVersion (409 when stale). */
function fakeApi() {
  let lease: Lease | undefined;
  let version = 1;
  const requests: string[] = [];
  const http = {
    async json(method: string, path: string, opts: { body?: { metadata?: { resourceVersion?: string }; spec?: Record<string, unknown> } } = {}) {
      requests.push(method);
      const conflict = () => new KubeApiError(409, "Conflict", `${method} ${path}: the object has been modified`);
      if (method === "GET") {
        if (!lease) throw new KubeApiError(404, "NotFound", `${method} ${path}: not found`);
        return structuredClone(lease);
      }
      if (method === "POST") {
        if (lease) throw conflict();
        lease = { metadata: { name: "l", namespace: "ns", resourceVersion: String(version++) }, spec: { ...opts.body?.spec } };
        return structuredClone(lease);
      }
      if (method === "PATCH") {
        if (!lease) throw new KubeApiError(404, "NotFound", `${method} ${path}: not found`);
        const rv = opts.body?.metadata?.resourceVersion;
        if (rv !== undefined && rv !== lease.metadata.resourceVersion) throw conflict();
        lease = { metadata: { ...lease.metadata, resourceVersion: String(version++) }, spec: { ...lease.spec, ...opts.body?.spec } };
        return structuredClone(lease);
      }
      throw new Error(`unexpected ${method}`);
    },
  };
  /** Another writer touches the lease (its holder stays). */
  const bump = () => lease && (lease.metadata.resourceVersion = String(version++));
  return { http: http as unknown as KubeHttp, requests, bump, holder: () => lease?.spec.holderIdentity };
}

describe("LeaderElector", () => {
  beforeEach(() => vi.useFakeTimers({ now: new Date("2026-12-04T12:00:00Z") }));
  afterEach(() => vi.useRealTimers());

  it("renews with one write per period on the lease it last wrote (client-go's fast path), reading the lease only when that write conflicts", async () => {
    const api = fakeApi();
    const lost = vi.fn();
    const elector = new LeaderElector(api.http, { namespace: "ns", name: "l", identity: "me", retryPeriodMs: 2000, onLost: lost }, pino({ level: "silent" }));
    await elector.acquire();
    expect(api.holder()).toBe("me");
    api.requests.length = 0;

    await vi.advanceTimersByTimeAsync(3 * 2000);
    expect(api.requests).toEqual(["PATCH", "PATCH", "PATCH"]);

    // Someone else wrote the lease: the renewal on the stale version conflicts, then the lease is
    // read, judged (still this process's) and renewed.
    api.bump();
    api.requests.length = 0;
    await vi.advanceTimersByTimeAsync(2000);
    expect(api.requests).toEqual(["PATCH", "GET", "PATCH"]);
    await vi.advanceTimersByTimeAsync(2000);
    expect(api.requests.slice(3)).toEqual(["PATCH"]);
    expect(elector.isLeader).toBe(true);
    expect(lost).not.toHaveBeenCalled();
    await elector.release();
  });
});
