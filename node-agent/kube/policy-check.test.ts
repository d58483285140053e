import { describe, expect, it } from "vitest";
import { KubeApiError } from "../../kube/http-client.ts";
import {
  awaitNodeWritePolicy,
  classifyDryRun,
  decideNodeWritePolicy,
  otherNodeObject,
  outsidePolicy,
  probeNodeWritePolicy,
  type PolicyProbe,
  type PolicyVerdict,
} from "./policy-check.ts";

const VAP_DENIAL = new KubeApiError(
  403,
  "Forbidden",
  'kernellivepatchnodes.livepatch.kpatch.dev "b" is forbidden: ValidatingAdmissionPolicy \'x-agent-status\' with binding \'x-agent-status\' denied request: ...',
);
const RBAC_DENIAL = new KubeApiError(403, "Forbidden", 'kernellivepatchnodes.livepatch.kpatch.dev "b" is forbidden: User "u" cannot patch resource "kernellivepatchnodes/status"');

describe("decideNodeWritePolicy", () => {
  const denied: PolicyProbe = { kind: "denied", target: "b", by: "admission", message: "denied" };
  const allowed: PolicyProbe = { kind: "allowed", target: "b" };
  const unknown: PolicyProbe = { kind: "unknown", detail: "there is no other node's KernelLivePatchNode to try the write on" };
  it.each<[string, PolicyProbe, boolean, Partial<PolicyVerdict>]>([
    ["refused: the policy holds, the agent acts", denied, false, { state: "enforced", act: true, metric: 1, level: "info" }],
    ["allowed: missing, the agent does not act", allowed, false, { state: "missing", act: false, metric: 0, level: "error", eventReason: "NodeWritePolicyMissing" }],
    ["allowed, but running without the policy is allowed: acts, still loudly", allowed, true, { state: "missing", act: true, metric: 0, level: "error", eventReason: "NodeWritePolicyMissing" }],
    ["could not tell: acts, warns", unknown, false, { state: "unverified", act: true, metric: -1, level: "warn" }],
  ])("%s", (_n, probe, allow, want) => {
    const v = decideNodeWritePolicy(probe, "a", allow);
    expect(v).toMatchObject(want);
    if (!want.eventReason) expect(v.eventReason).toBeUndefined();
  });

  it("says which object it tried, what is wrong and what to do", () => {
    const v = decideNodeWritePolicy({ kind: "allowed", target: "b" }, "a", false);
    expect(v.message).toContain("kernellivepatchnodes/b");
    expect(v.message).toContain("node a");
    expect(v.message).toContain("admissionPolicy.enabled=true");
    expect(v.message).toContain("not acting");
    expect(decideNodeWritePolicy({ kind: "allowed", target: "b" }, "a", true).message).toContain("acting anyway");
  });
});

describe("classifyDryRun", () => {
  it.each<[string, unknown, Partial<PolicyProbe>]>([
    ["success: the write would have happened", undefined, { kind: "allowed", target: "b" }],
    ["403 from the admission policy", VAP_DENIAL, { kind: "denied", by: "admission" }],
    ["403 from RBAC", RBAC_DENIAL, { kind: "denied", by: "rbac" }],
    ["422 from an admission policy answering Invalid", new KubeApiError(422, "Invalid", "ValidatingAdmissionPolicy 'p' denied request"), { kind: "denied", by: "admission" }],
    ["422 from the schema says nothing", new KubeApiError(422, "Invalid", "status.summary: Too long"), { kind: "unknown" }],
    ["404: the object went in between", new KubeApiError(404, "NotFound", "not found"), { kind: "unknown" }],
    ["a network error", new Error("ECONNRESET"), { kind: "unknown" }],
  ])("%s", (_n, error, want) => {
    expect(classifyDryRun("b", error)).toMatchObject(want);
  });
});

describe("outsidePolicy and otherNodeObject", () => {
  it("checks ServiceAccounts only", () => {
    expect(outsidePolicy("system:serviceaccount:kpatch-system:kpatch-agent")).toBeUndefined();
    expect(outsidePolicy("kubernetes-admin")).toMatchObject({ kind: "unknown" });
  });
  it("picks another node's object", () => {
    expect(otherNodeObject(["a", "b"], "a")).toBe("b");
    expect(otherNodeObject(["b", "a"], "a")).toBe("b");
    expect(otherNodeObject(["a"], "a")).toBeUndefined();
    expect(otherNodeObject([], "a")).toBeUndefined();
  });
});

/** A fake API: who the agent is, the node objects, and what the dry-run patch answers. */
function fakeApi(o: { user: string; names: string[]; patch: () => Promise<void> }) {
  const calls: Array<{ method: string; path: string; query?: unknown; body?: unknown }> = [];
  return {
    calls,
    api: {
      json: async <T>(method: string, path: string, opts: { query?: unknown; body?: unknown } = {}): Promise<T> => {
        calls.push({ method, path, query: opts.query, body: opts.body });
        if (path.endsWith("selfsubjectreviews")) return { status: { userInfo: { username: o.user } } } as T;
        return { items: o.names.map((name) => ({ metadata: { name } })) } as T;
      },
      send: async (method: string, path: string, opts: { query?: unknown; body?: unknown } = {}): Promise<void> => {
        calls.push({ method, path, query: opts.query, body: opts.body });
        return o.patch();
      },
    },
  };
}

describe("probeNodeWritePolicy", () => {
  const SA = "system:serviceaccount:kpatch-system:kpatch-agent";
  it("dry-runs a status write of another node's object and reads the refusal", async () => {
    const f = fakeApi({ user: SA, names: ["a", "b"], patch: () => Promise.reject(VAP_DENIAL) });
    expect(await probeNodeWritePolicy(f.api as never, "a")).toMatchObject({ kind: "denied", target: "b", by: "admission" });
    const patch = f.calls.find((c) => c.method === "PATCH")!;
    expect(patch.path).toBe("/apis/livepatch.kpatch.dev/v1alpha1/kernellivepatchnodes/b/status");
    expect(patch.query).toMatchObject({ dryRun: "All" });
  });
  it("an accepted dry run is a missing policy", async () => {
    const f = fakeApi({ user: SA, names: ["b", "a"], patch: () => Promise.resolve() });
    expect(await probeNodeWritePolicy(f.api as never, "a")).toEqual({ kind: "allowed", target: "b" });
  });
  it("with no other node's object, or not as a ServiceAccount, there is nothing to try", async () => {
    const alone = fakeApi({ user: SA, names: ["a"], patch: () => Promise.resolve() });
    expect(await probeNodeWritePolicy(alone.api as never, "a")).toMatchObject({ kind: "unknown" });
    expect(alone.calls.some((c) => c.method === "PATCH")).toBe(false);
    const admin = fakeApi({ user: "kubernetes-admin", names: ["a", "b"], patch: () => Promise.resolve() });
    expect(await probeNodeWritePolicy(admin.api as never, "a")).toMatchObject({ kind: "unknown" });
    expect(admin.calls.some((c) => c.method === "PATCH")).toBe(false);
  });
});

describe("awaitNodeWritePolicy", () => {
  it("waits, checking again, while the policy is missing; goes on once it is refused", async () => {
    const probes: PolicyProbe[] = [{ kind: "allowed", target: "b" }, { kind: "allowed", target: "b" }, { kind: "denied", target: "b", by: "admission", message: "no" }];
    const reported: PolicyVerdict[] = [];
    const slept: number[] = [];
    const v = await awaitNodeWritePolicy("a", false, {
      probe: async () => probes.shift()!,
      report: (r) => reported.push(r),
      sleep: async (ms) => void slept.push(ms),
      stopping: () => false,
      recheckMs: 60_000,
    });
    expect(v?.state).toBe("enforced");
    expect(reported.map((r) => r.act)).toEqual([false, false, true]);
    expect(slept).toEqual([60_000, 60_000]);
  });
  it("goes on at once when allowed without the policy", async () => {
    const v = await awaitNodeWritePolicy("a", true, {
      probe: async () => ({ kind: "allowed", target: "b" }),
      report: () => undefined,
      sleep: () => Promise.reject(new Error("must not wait")),
      stopping: () => false,
      recheckMs: 1,
    });
    expect(v).toMatchObject({ state: "missing", act: true });
  });
  it("gives up when the agent is told to stop while waiting", async () => {
    let stop = false;
    const v = await awaitNodeWritePolicy("a", false, {
      probe: async () => ({ kind: "allowed", target: "b" }),
      report: () => undefined,
      sleep: async () => void (stop = true),
      stopping: () => stop,
      recheckMs: 1,
    });
    expect(v).toBeUndefined();
  });
});
