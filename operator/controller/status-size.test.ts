/**
 * A KernelLivePatch stays bounded whatever the fleet: the status the operator plans for 15,000
 * targeted nodes, each entry as large as the schema lets an agent write it, and the object around
 * it as `kubectl get -o json` prints it (metadata with managedFields and kubectl's
 * last-applied-configuration, a spec near its limits), under 256 KiB. Each patch's status is
 * planned from its own entries only, so ten patches on the same fleet are ten objects of this size.
 */
import { describe, expect, it } from "vitest";
import { FINALIZER, KernelLivePatch as KernelLivePatchSchema, MAX_STATUS_NODES, type KernelLivePatch, type NodeEntry, type NodePhase } from "../../crds/schema.ts";
import type { NodeReadiness } from "../rollout/settled.ts";
import { planPatch } from "./plan-patch.ts";

const NODES = 15_000;
const LIMIT = 256 * 1024;
const NOW = new Date("2026-12-03T12:00:00.000Z");

/** A node name of 253 characters (a DNS subdomain at its limit), distinct per node. */
const nodeName = (i: number) => `${"n".repeat(63)}.${"pool-a".padEnd(63, "x")}.${"zone-b".padEnd(63, "y")}.${String(i).padStart(61, "0")}`;
/** Every phase that keeps an entry, so the digest has something to choose among. */
const PHASES: NodePhase[] = ["Failed", "Stalled", "Loading", "Unloading", "Staging", "Loaded", "Replaced", "Unloaded", "NotApplicable", "Staged"];

/** An entry as large as the schema allows: a 4096-character message, 32 stalled tasks, every field at its limit. */
function worstEntry(i: number): NodeEntry {
  return {
    nodeName: nodeName(i),
    phase: PHASES[i % PHASES.length]!,
    kernelRelease: `6.1.0-${i}`.padEnd(128, "r"),
    bootID: "b".repeat(64),
    moduleName: "m".repeat(64),
    sha256: "a".repeat(64),
    enabled: true,
    transition: true,
    tainted: 2 ** 31 - 1,
    // A different flag set on many nodes: the taint summary is bounded too.
    taintFlags: `T${i % 997}`.padEnd(64, "K"),
    replacedBy: "p".repeat(253),
    previousModuleName: "o".repeat(64),
    stalledTasks: Array.from({ length: 32 }, (_, t) => ({ pid: 2 ** 31 - 1 - t, comm: "c".repeat(64) })),
    reason: "R".repeat(128),
    message: "x".repeat(4096),
    observedGeneration: 1,
    lastTransitionTime: "2026-12-03T11:59:00.000000+00:00",
  };
}

/** A patch near its spec's limits, with the metadata a client-side `kubectl apply` and the operator leave on it. */
function bigPatch(): KernelLivePatch {
  const spec = {
    state: "Loaded",
    description: "d".repeat(1024),
    cves: Array.from({ length: 64 }, (_, i) => `CVE-2026-${String(10000 + i)}`),
    modules: Array.from({ length: 32 }, (_, i) => ({
      kernelRelease: `6.1.0-${i}-amd64`,
      sha256: "a".repeat(64),
      url: `https://artifacts.example.com/${"path/".repeat(40)}klp-${i}.ko`,
    })),
    nodeSelector: { matchLabels: { "node-role.kubernetes.io/worker": "", pool: "a" } },
    tolerations: Array.from({ length: 8 }, (_, i) => ({ key: `example.com/taint-${i}`, operator: "Exists" as const })),
    rollout: { maxUnavailable: "10%", failureThreshold: 100 },
  };
  return KernelLivePatchSchema.parse({
    apiVersion: "livepatch.kpatch.dev/v1alpha1",
    kind: "KernelLivePatch",
    metadata: {
      name: "p".repeat(253),
      uid: "6f1c2a9e-3b7d-4c1e-9a8f-0d2e4b6c8a10",
      generation: 1,
      resourceVersion: "123456789",
      creationTimestamp: "2026-12-03T10:00:00Z",
      finalizers: [FINALIZER],
      annotations: { "kubectl.kubernetes.io/last-applied-configuration": JSON.stringify({ apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", metadata: { name: "p".repeat(253) }, spec }) },
      managedFields: [
        { manager: "kubectl-client-side-apply", operation: "Update", apiVersion: "livepatch.kpatch.dev/v1alpha1", time: "2026-12-03T10:00:00Z", fieldsType: "FieldsV1", fieldsV1: { "f:metadata": { "f:annotations": { ".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {} } }, "f:spec": Object.fromEntries(Object.keys(spec).map((k) => [`f:${k}`, {}])) } },
        { manager: "kpatch-operator", operation: "Update", apiVersion: "livepatch.kpatch.dev/v1alpha1", time: "2026-12-03T10:00:01Z", fieldsType: "FieldsV1", fieldsV1: { "f:metadata": { "f:finalizers": { ".": {}, [`v:"${FINALIZER}"`]: {} } } } },
        { manager: "kpatch-operator", operation: "Apply", apiVersion: "livepatch.kpatch.dev/v1alpha1", time: "2026-12-03T12:00:00Z", fieldsType: "FieldsV1", subresource: "status", fieldsV1: { "f:status": { "f:conditions": {}, "f:nodes": {}, "f:nodesOmitted": {}, "f:observedGeneration": {}, "f:rollout": { "f:admittedCount": {}, "f:generation": {}, "f:halted": {} }, "f:summary": { "f:cves": {}, "f:cveExposure": {}, "f:taints": {}, "f:ready": {}, "f:targeted": {} } } } },
      ],
    },
    spec,
  });
}

describe("a KernelLivePatch's size at scale", () => {
  const patch = bigPatch();
  const entries = Array.from({ length: NODES }, (_, i) => worstEntry(i)).sort((a, b) => (a.nodeName < b.nodeName ? -1 : 1));
  const names = entries.map((e) => e.nodeName);
  const ready: NodeReadiness = { ready: true };
  const plan = planPatch(
    {
      patch,
      lastWrite: undefined,
      // Half the fleet admitted: the admitted set is in the node objects, only counted here.
      memory: { admitted: new Set(names.filter((_, i) => i % 2 === 0)) },
      statusIntervalMs: 500,
      notReadyGraceSeconds: 60,
      observe: () => ({ entries, readiness: new Map(names.map((n) => [n, ready])), targeted: new Set(names), projectedAdmitted: new Set() }),
    },
    NOW,
  );
  if (plan.kind !== "act" || !plan.status) throw new Error("expected a status to write");
  const status = plan.status.status;
  const object = { ...patch, status };
  const size = Buffer.byteLength(JSON.stringify(object, null, 4));

  it(`is ${size} bytes (${(size / 1024).toFixed(1)} KiB) as kubectl get -o json prints it, at ${NODES} nodes with worst-case entries: under 256 KiB`, () => {
    console.log(`KernelLivePatch at ${NODES} nodes, worst-case entries: ${size} bytes (${(size / 1024).toFixed(1)} KiB) indented as kubectl prints it, ${Buffer.byteLength(JSON.stringify(object))} bytes compact; status ${Buffer.byteLength(JSON.stringify(status))} bytes`);
    expect(size).toBeLessThan(LIMIT);
  });

  it("lists the bound of entries, counts the rest, and keeps the counts of every node", () => {
    expect(status.nodes).toHaveLength(MAX_STATUS_NODES);
    expect(status.nodesOmitted).toBe(NODES - MAX_STATUS_NODES);
    expect(status.nodes!.every((e) => e.phase === "Failed")).toBe(true);
    expect(status.summary?.targeted).toBe(NODES);
    expect(status.summary?.taints?.reduce((n, r) => n + r.nodes, 0)).toBe(NODES);
    expect(status.rollout?.admittedCount).toBeGreaterThanOrEqual(NODES / 2);
  });

  it("parses with the schema the API server enforces", () => {
    expect(KernelLivePatchSchema.safeParse(object).success).toBe(true);
  });
});
