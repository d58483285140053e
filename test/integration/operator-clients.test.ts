/**
 * The operator's writes as the real API server takes them: Events on a patch (one Event per
 * repeated event, its count the writes that got through, a patch never ahead of its create), the
 * patch status and finalizers, and the KernelLivePatchNode objects. The decisions behind them are
 * unit-tested beside their modules; here the world they leave is checked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FINALIZER, KernelLivePatchSpec, NODE_OBJECTS_PATH, type KernelLivePatchStatus, type PatchOnNode } from "../../crds/schema.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import type { KubeHttp } from "../../kube/http-client.ts";
import { operatorHttp } from "../../operator/kube/api-client.ts";
import { eventRecorder } from "../../operator/kube/events.ts";
import { NodeObjectClient, PROJECTION_HASH } from "../../operator/kube/node-objects.ts";
import { OPERATOR_FIELD_MANAGER, PatchClient } from "../../operator/kube/patches.ts";
import { Cluster, controlPlane, installCrd, kubeconfigPath, testLog } from "../support/klp.ts";

const suffix = Date.now().toString(36);
const PATCH = `oc-${suffix}`;
const NODE = `oc-node-${suffix}`;
const cluster = new Cluster();
const log = testLog("operator-clients");
let http: KubeHttp;

interface EventObject {
  metadata: { name: string };
  involvedObject: { apiVersion?: string; kind: string; name: string; uid?: string };
  type: string;
  reason: string;
  message: string;
  count: number;
  source?: { component?: string };
  reportingComponent?: string;
}

/** The Events the API server holds about the object named `name` (in `default`, where cluster-scoped objects' Events go). */
async function eventsOf(name: string): Promise<EventObject[]> {
  const list = await http.json<{ items: EventObject[] }>("GET", "/api/v1/namespaces/default/events", { query: { fieldSelector: `involvedObject.name=${name}` } });
  return list.items;
}

beforeAll(async () => {
  await installCrd(await controlPlane());
  http = operatorHttp(kubeconfigConnection(kubeconfigPath()), 30_000);
});

afterAll(async () => {
  await cluster.forceDeletePatch(PATCH).catch(() => undefined);
  await cluster.deleteNode(NODE);
  http?.close();
});

describe("the operator's Events", () => {
  it("1000 identical Warning events on a patch leave one Event whose count is the writes that got through (at most 26), none failed", async () => {
    const name = `${PATCH}-halted`;
    const rec = eventRecorder(http, "kpatch-operator", log);
    for (let i = 0; i < 1000; i++) rec.patchEvent({ name, uid: "u-1" }, "Warning", "RolloutHalted", "3 of 10 nodes failed");
    await rec.flush();
    const stats = rec.stats();
    expect(stats).toMatchObject({ created: 1, failed: 0 });
    const written = stats.created + stats.patched;
    expect(written).toBeLessThanOrEqual(26);
    expect(stats.dropped).toBe(1000 - written);
    const events = await eventsOf(name);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      involvedObject: { apiVersion: "livepatch.kpatch.dev/v1alpha1", kind: "KernelLivePatch", name, uid: "u-1" },
      type: "Warning",
      reason: "RolloutHalted",
      message: "3 of 10 nodes failed",
      count: written,
      source: { component: "kpatch-operator" },
      reportingComponent: "kpatch-operator",
    });
  });

  it("a RolloutComplete still reaches the API server after a long rollout's progress events", async () => {
    const name = `${PATCH}-progress`;
    const rec = eventRecorder(http, "kpatch-operator", log);
    for (let i = 0; i < 100; i++) rec.patchEvent({ name, uid: "u-2" }, "Normal", "Loaded", `klp loaded on ${i} nodes`);
    rec.patchEvent({ name, uid: "u-2" }, "Normal", "RolloutComplete", "done");
    await rec.flush();
    expect(rec.stats().failed).toBe(0);
    const events = await eventsOf(name);
    const loaded = events.filter((e) => e.reason === "Loaded");
    expect(loaded.length).toBeGreaterThan(0);
    expect(loaded.reduce((n, e) => n + e.count, 0)).toBeLessThanOrEqual(25);
    expect(events.filter((e) => e.reason === "RolloutComplete").map((e) => [e.message, e.count])).toEqual([["done", 1]]);
  });
});

describe("the operator's writes to patches and node objects", () => {
  it("applyStatus writes the whole status under the operator's field manager; setFinalizers is refused on a stale resourceVersion", async () => {
    await cluster.createPatch(PATCH, { modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://example.com/m.ko" }] });
    const client = new PatchClient(http);
    const status: KernelLivePatchStatus = {
      observedGeneration: 1,
      summary: { ready: "0/0", targeted: 0, staged: 0, loaded: 0, replaced: 0, unloaded: 0, notApplicable: 0, failed: 0, pending: 0 },
      rollout: { generation: 1, admittedCount: 0, halted: false },
      nodes: [],
    };
    await client.applyStatus(PATCH, status);
    const withStatus = (await cluster.getPatch(PATCH))!;
    expect(withStatus.status).toMatchObject({ observedGeneration: 1, summary: status.summary, rollout: status.rollout });
    const managers = (withStatus.metadata as { managedFields?: Array<{ manager?: string; subresource?: string }> }).managedFields ?? [];
    expect(managers).toContainEqual(expect.objectContaining({ manager: OPERATOR_FIELD_MANAGER, subresource: "status" }));

    await client.setFinalizers(withStatus, [FINALIZER]);
    expect((await cluster.getPatch(PATCH))?.metadata.finalizers).toEqual([FINALIZER]);
    // The same read again: its resourceVersion is gone, so the write must not land.
    await expect(client.setFinalizers(withStatus, [])).rejects.toMatchObject({ code: 409 });
    expect((await cluster.getPatch(PATCH))?.metadata.finalizers).toEqual([FINALIZER]);
  });

  it("applySpec makes the node's object, owned by its Node and carrying the projection's hash; delete removes it, twice without error", async () => {
    await cluster.createNode(NODE, {});
    const node = await cluster.core.readNode({ name: NODE });
    const client = new NodeObjectClient(http);
    const projection: PatchOnNode[] = [
      { name: "p", uid: "uid-p", generation: 2, creationTimestamp: "2026-12-03T12:00:00Z", admitted: true, spec: KernelLivePatchSpec.parse({ state: "Loaded", modules: [{ sha256: "a".repeat(64), url: "https://modules.example/p.ko", kernelRelease: "6.1.0-56-amd64" }] }) },
    ];
    await client.applySpec({ name: NODE, uid: node.metadata!.uid! }, projection, "hash-1");
    type NodeObject = { metadata: { annotations?: Record<string, string>; ownerReferences?: Array<{ kind: string; name: string; uid: string }> }; spec: { patches: PatchOnNode[] } };
    const obj = await http.json<NodeObject>("GET", `${NODE_OBJECTS_PATH}/${NODE}`);
    expect(obj.metadata.annotations?.[PROJECTION_HASH]).toBe("hash-1");
    expect(obj.metadata.ownerReferences).toEqual([expect.objectContaining({ kind: "Node", name: NODE, uid: node.metadata!.uid })]);
    expect(obj.spec.patches).toEqual(projection);

    // A new generation replaces the projection, and its hash with it.
    const next = [{ ...projection[0]!, generation: 3, admitted: false }];
    await client.applySpec({ name: NODE, uid: node.metadata!.uid! }, next, "hash-2");
    const updated = await http.json<NodeObject>("GET", `${NODE_OBJECTS_PATH}/${NODE}`);
    expect([updated.spec.patches, updated.metadata.annotations?.[PROJECTION_HASH]]).toEqual([next, "hash-2"]);

    await client.delete(NODE);
    await expect(http.json("GET", `${NODE_OBJECTS_PATH}/${NODE}`)).rejects.toMatchObject({ code: 404 });
    await expect(client.delete(NODE)).resolves.toBeUndefined();
  });
});
