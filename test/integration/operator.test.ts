/**
 * The controller against the real API server, controller-manager and scheduler (Node objects, no
 * kubelet): the agent DaemonSet and where its pods land, status roll-up from entries written as
 * agents write them, pacing, and the finalizer.
 */
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_VERSION, GROUP, NODE_KIND, NODE_PLURAL, VERSION, type NodeEntry, type NodePatchEntry } from "../../crds/schema.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { agentFieldManager } from "../../node-agent/kube/agent-api.ts";
import { Cluster, condition, controlPlane, entryOf, installCrd, kubeconfigPath, startOperator, until } from "../support/klp.ts";

const NS = "klp-operator-test";
const SHA = "d".repeat(64);
const RELEASE = "6.1.0-56-amd64";
const mod = { kernelRelease: RELEASE, sha256: SHA, configMap: { namespace: NS, name: "mods", key: "fix.ko" } };
const cluster = new Cluster();
let operator: Awaited<ReturnType<typeof startOperator>>;
let http: KubeHttp;

/**
 * Writes a node's entry exactly as an agent does: once the operator has made the node's
 * KernelLivePatchNode and projected the patch onto it, a server-side apply of all the node's
 * entries under the node's field manager.
 */
async function agentWrites(patch: string, entry: Partial<NodeEntry> & { nodeName: string; phase: NodeEntry["phase"] }): Promise<void> {
  const p = await cluster.getPatch(patch);
  const path = `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}/${entry.nodeName}`;
  type NodeObject = { spec?: { patches?: Array<{ name: string }> }; status?: { entries?: NodePatchEntry[] } };
  const obj = await until(`${patch} projected onto ${entry.nodeName}'s KernelLivePatchNode`, async () => {
    const o = await http.json<NodeObject>("GET", path).catch(() => undefined);
    return o?.spec?.patches?.some((x) => x.name === patch) ? o : undefined;
  });
  const others = (obj.status?.entries ?? []).filter((e) => e.patch !== patch);
  const mine = { patch, patchUID: p?.metadata.uid, observedGeneration: p?.metadata.generation ?? 1, lastTransitionTime: new Date().toISOString(), ...entry };
  await http.json("PATCH", `${path}/status`, {
    query: { fieldManager: agentFieldManager(entry.nodeName), force: true },
    contentType: "application/apply-patch+yaml",
    body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: entry.nodeName }, status: { entries: [...others, mine] } },
  });
}

/** Node update events the operator classified so far (metrics.ts kpatch_operator_node_events_total). */
async function nodeUpdates(outcome: "enqueued" | "readiness" | "ignored"): Promise<number> {
  const { values } = await operator.metrics.nodeEvents.get();
  return values.filter((v) => v.labels.verb === "update" && v.labels.outcome === outcome).reduce((sum, v) => sum + v.value, 0);
}

/** Sets a Node's Ready condition as the kubelet or the node lifecycle controller does (a merge patch of its status). */
async function setReady(node: string, status: "True" | "False" | "Unknown"): Promise<void> {
  const now = new Date();
  const condition = { type: "Ready", status, reason: status === "True" ? "KubeletReady" : "NodeStatusUnknown", message: "test", lastHeartbeatTime: now, lastTransitionTime: now };
  await cluster.core.patchNodeStatus({ name: node, body: { status: { conditions: [condition] } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
}

const podsOnNodes = async () => {
  const pods = await cluster.core.listNamespacedPod({ namespace: NS, labelSelector: "app.kubernetes.io/name=kpatch-agent" });
  return pods.items.filter((p) => !p.metadata?.deletionTimestamp).map((p) => p.spec?.nodeName ?? "").sort();
};

/**
 * Waits until the agent pods are bound to exactly `nodes`; on timeout shows what the cluster says.
 * There is no kubelet to confirm a deleted pod is gone (a template change rolls the agents), so
 * this plays that part: terminating pods are removed at once.
 */
async function podsLandOn(nodes: string[]): Promise<void> {
  const finishTermination = async () => {
    const pods = await cluster.core.listNamespacedPod({ namespace: NS });
    for (const p of pods.items.filter((p) => p.metadata?.deletionTimestamp)) {
      await cluster.core.deleteNamespacedPod({ name: p.metadata!.name!, namespace: NS, gracePeriodSeconds: 0 }).catch(() => undefined);
    }
  };
  await until(`agent pods on ${nodes.join(", ")}`, async () => {
    await finishTermination();
    return JSON.stringify(await podsOnNodes()) === JSON.stringify(nodes);
  }, 90_000).catch(async (e: Error) => {
    const cp = await controlPlane();
    const show = async (args: string[]) => (await cp.kubectl(args)).stdout;
    throw new Error(`${e.message}\n${await show(["get", "ds,pods", "-n", NS, "-o", "wide"])}\n${await show(["get", "events", "-n", NS, "--sort-by=.lastTimestamp"])}`);
  });
}

beforeAll(async () => {
  await installCrd(await controlPlane());
  await cluster.ensureNamespace(NS);
  // The chart creates the agents' ServiceAccount; without it the DaemonSet controller cannot make pods.
  await cluster.core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: "kpatch-agent" } } });
  for (const [name, pool] of [["op-a1", "a"], ["op-a2", "a"], ["op-b1", "b"], ["op-c1", "c"]] as const) {
    await cluster.createNode(name, { "klp-test/pool": pool });
  }
  // The privileged agent (agent.privileged): its DaemonSet is what the first test checks.
  operator = await startOperator({ KLP_NAMESPACE: NS, KLP_AGENT_IMAGE: "kpatch-agent:test", KLP_AGENT_PRIVILEGED: "true" });
  http = new KubeHttp(kubeconfigConnection(kubeconfigPath()));
});

afterAll(async () => {
  for (const p of ["op-p1", "op-p2", "op-pace", "op-del", "op-gate"]) await cluster.forceDeletePatch(p);
  await operator?.stop();
  for (const n of ["op-a1", "op-a2", "op-b1", "op-c1", "op-soak"]) await cluster.deleteNode(n);
  http?.close();
});

describe("the controller", () => {
  it("makes one agent DaemonSet whose pods land on exactly the matching nodes, widening and narrowing without recreating it", async () => {
    await cluster.createPatch("op-p1", { modules: [mod], nodeSelector: { matchLabels: { "klp-test/pool": "a" } } });
    const ds = await until("the agent DaemonSet", () => cluster.daemonSet(NS));
    const pod = ds.spec!.template.spec!;
    expect(pod.containers[0]!.securityContext?.privileged).toBe(true);
    expect(pod.containers[0]!.image).toBe("kpatch-agent:test");
    expect(pod.volumes?.map((v) => v.hostPath?.path).filter(Boolean)).toEqual(["/var/lib/kpatch", "/sys", "/proc"]);
    await podsLandOn(["op-a1", "op-a2"]);
    const uid = ds.metadata!.uid;

    await cluster.createPatch("op-p2", { modules: [mod], nodeSelector: { matchLabels: { "klp-test/pool": "b" } }, tolerations: [{ key: "dedicated", operator: "Exists" }] });
    await podsLandOn(["op-a1", "op-a2", "op-b1"]);
    const widened = await cluster.daemonSet(NS);
    expect(widened!.metadata!.uid).toBe(uid);
    expect(widened!.spec!.template.spec!.tolerations).toEqual([{ key: "dedicated", operator: "Exists" }]);

    await cluster.forceDeletePatch("op-p2");
    await podsLandOn(["op-a1", "op-a2"]);
    expect((await cluster.daemonSet(NS))!.metadata!.uid).toBe(uid);
  });

  it("rolls node entries up into the summary and conditions, with the finalizer on", async () => {
    const p = await until("finalizer and status", async () => {
      const p = await cluster.getPatch("op-p1");
      return p?.metadata.finalizers?.includes(`${GROUP}/unload`) && p.status?.summary ? p : undefined;
    });
    expect(p.status!.summary).toMatchObject({ targeted: 2, ready: "0/2", pending: 2 });
    await agentWrites("op-p1", { nodeName: "op-a1", phase: "Loaded", tainted: 45056, taintFlags: "OEK" });
    await agentWrites("op-p1", { nodeName: "op-a2", phase: "NotApplicable" });
    const done = await until("Ready", async () => {
      const p = await cluster.getPatch("op-p1");
      return condition(p, "Ready")?.status === "True" ? p : undefined;
    });
    expect(done.status!.summary).toMatchObject({ targeted: 2, loaded: 1, notApplicable: 1, ready: "1/1", failed: 0, pending: 0 });
    expect(condition(done, "Progressing")).toMatchObject({ status: "False", reason: "Complete" });
    expect(condition(done, "Degraded")).toMatchObject({ status: "False" });
    expect(entryOf(done, "op-a1")?.taintFlags).toBe("OEK");
    const w = await (await controlPlane()).kubectl(["wait", "--for=condition=Ready", "klp/op-p1", "--timeout=10s"]);
    expect(w.code, w.stderr).toBe(0);
    const get = await (await controlPlane()).kubectl(["get", "klp", "op-p1"]);
    expect(get.stdout).toMatch(/NAME\s+READY\s+FAILED\s+STATE\s+STATUS\s+AGE/);
    expect(get.stdout).toMatch(/op-p1\s+1\/1\s+0\s+Loaded\s+Loaded/);
    const wide = await (await controlPlane()).kubectl(["get", "klp", "op-p1", "-o", "wide"]);
    expect(wide.stdout).toMatch(/NAME\s+READY\s+FAILED\s+STATE\s+STATUS\s+TARGETED\s+NOTAPPLICABLE\s+PENDING\s+REPLACED\s+AGE/);
    expect(wide.stdout).toMatch(/op-p1\s+1\/1\s+0\s+Loaded\s+Loaded\s+2\s+1\s+0\s+0\s/);
  });

  it("keeps the agent on a node its patch no longer selects until the node reports it unloaded", async () => {
    const pinned = async () => {
      const terms = (await cluster.daemonSet(NS))?.spec?.template.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms ?? [];
      return terms.flatMap((t) => t.matchFields ?? []).flatMap((f) => f.values ?? []);
    };
    expect(await pinned()).toEqual([]);
    // op-a1 still has op-p1 Loaded (the test before): its agent must stay to unload it.
    await cluster.labelNode("op-a1", { "klp-test/pool": "x" });
    await until("op-a1 pinned by name", async () => JSON.stringify(await pinned()) === JSON.stringify(["op-a1"]));
    await podsLandOn(["op-a1", "op-a2"]);
    await agentWrites("op-p1", { nodeName: "op-a1", phase: "Unloaded" });
    await until("op-a1 no longer pinned", async () => (await pinned()).length === 0);
    await podsLandOn(["op-a2"]);
    // Back as it was for the tests after this one.
    await cluster.labelNode("op-a1", { "klp-test/pool": "a" });
    await agentWrites("op-p1", { nodeName: "op-a1", phase: "Loaded", tainted: 45056, taintFlags: "OEK" });
    await podsLandOn(["op-a1", "op-a2"]);
  });

  it("paces: no more than maxUnavailable admitted at once, none while paused, none once halted", async () => {
    await cluster.createPatch("op-pace", { modules: [mod], rollout: { maxUnavailable: 1, paused: true, failureThreshold: 1 } });
    const paused = await until("paused status", async () => {
      const p = await cluster.getPatch("op-pace");
      return condition(p, "Progressing")?.reason === "Paused" ? p : undefined;
    });
    expect((await cluster.admitted("op-pace")).admitted).toEqual([]);
    expect(paused.status!.rollout!.admittedCount).toBe(0);
    expect(paused.status!.summary!.targeted).toBe(4);

    await cluster.mergePatch("op-pace", { spec: { rollout: { paused: false } } });
    const first = await until("one admitted", async () => {
      const a = await cluster.admitted("op-pace");
      return a.admitted.length === 1 ? a : undefined;
    });
    const [n1] = first.admitted;
    await agentWrites("op-pace", { nodeName: n1!, phase: "Loading" });
    await new Promise((r) => setTimeout(r, 1500));
    expect((await cluster.admitted("op-pace")).admitted).toEqual([n1]);

    await agentWrites("op-pace", { nodeName: n1!, phase: "Loaded" });
    const second = await until("a second node admitted", async () => {
      const a = await cluster.admitted("op-pace");
      return a.admitted.length === 2 ? a : undefined;
    });
    const n2 = second.admitted.find((n) => n !== n1)!;
    await agentWrites("op-pace", { nodeName: n2, phase: "Failed", reason: "VermagicMismatch", message: "built for another kernel" });
    const halted = await until("halted", async () => {
      const p = await cluster.getPatch("op-pace");
      return p?.status?.rollout?.halted ? p : undefined;
    });
    expect(condition(halted, "Degraded")).toMatchObject({ status: "True", reason: "RolloutHalted" });
    expect(condition(halted, "Degraded")?.message).toContain(`${n2}: VermagicMismatch`);
    expect(condition(halted, "Ready")).toMatchObject({ status: "False", reason: "RolloutHalted" });
    await new Promise((r) => setTimeout(r, 1500));
    expect((await cluster.admitted("op-pace")).admitted).toEqual([n1, n2].sort());
    expect((await cluster.getPatch("op-pace"))!.status!.rollout!.admittedCount).toBe(2);
    const events = await cluster.core.listNamespacedEvent({ namespace: "default", fieldSelector: "involvedObject.name=op-pace" });
    expect(events.items.map((e) => e.reason)).toContain("RolloutHalted");
  });

  it("on delete waits for every node's unload report before the finalizer goes", async () => {
    await cluster.createPatch("op-del", { modules: [mod], nodeSelector: { matchLabels: { "klp-test/pool": "a" } } });
    await until("finalizer", async () => (await cluster.getPatch("op-del"))?.metadata.finalizers?.length);
    await agentWrites("op-del", { nodeName: "op-a1", phase: "Loaded" });
    await agentWrites("op-del", { nodeName: "op-a2", phase: "Loaded" });
    await cluster.deletePatch("op-del");
    await agentWrites("op-del", { nodeName: "op-a1", phase: "Unloaded" });
    await new Promise((r) => setTimeout(r, 2000));
    const waiting = await cluster.getPatch("op-del");
    expect(waiting, "the finalizer must hold the object while op-a2 has not unloaded").toBeDefined();
    expect(condition(waiting, "Ready")?.reason).toBe("Deleting");
    await agentWrites("op-del", { nodeName: "op-a2", phase: "Unloaded" });
    await until("the patch gone", async () => (await cluster.getPatch("op-del")) === undefined);
  });

  it("removes the entry and the KernelLivePatchNode of a node that was deleted", async () => {
    await cluster.createNode("op-gone", { "klp-test/pool": "a" });
    await agentWrites("op-p1", { nodeName: "op-gone", phase: "Loaded" });
    await until("the entry shown on the patch", async () => entryOf(await cluster.getPatch("op-p1"), "op-gone")?.phase === "Loaded");
    await cluster.deleteNode("op-gone");
    await until("entry removed", async () => (entryOf(await cluster.getPatch("op-p1"), "op-gone") === undefined ? true : undefined));
    const gone = await until("the node object deleted", async () =>
      http.json("GET", `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}/op-gone`).then(
        () => undefined,
        (err: { code?: number }) => (err.code === 404 ? true : undefined),
      ),
    );
    expect(gone).toBe(true);
  });
  it("reacts to a Node change only when it moves some patch's targeting: not to an annotation, a status update or a label no selector reads", async () => {
    // op-p1 selects pool a (op-a1, op-a2); op-pace selects every node.
    const targeted = async () => (await cluster.getPatch("op-p1"))?.status?.summary?.targeted;
    expect(await targeted()).toBe(2);
    const enqueued = await nodeUpdates("enqueued");
    let ignored = await nodeUpdates("ignored");
    const cp = await controlPlane();
    const annotate = await cp.kubectl(["annotate", "node", "op-c1", "--overwrite", "klp-test/note=seen"]);
    expect(annotate.code, annotate.stderr).toBe(0);
    await until("the annotation change ignored", async () => (await nodeUpdates("ignored")) > ignored);
    ignored = await nodeUpdates("ignored");
    await setReady("op-c1", "True"); // a kubelet's status update: only the resourceVersion reaches the metadata watch
    await until("the status update ignored", async () => (await nodeUpdates("ignored")) > ignored);
    ignored = await nodeUpdates("ignored");
    await cluster.labelNode("op-c1", { "klp-test/unrelated": "x" });
    await until("the unrelated label ignored", async () => (await nodeUpdates("ignored")) > ignored);
    expect(await nodeUpdates("enqueued")).toBe(enqueued);

    await cluster.labelNode("op-c1", { "klp-test/pool": "a" });
    await until("op-p1 targets op-c1 too", async () => (await targeted()) === 3);
    expect(await nodeUpdates("enqueued")).toBeGreaterThan(enqueued);
    await cluster.labelNode("op-c1", { "klp-test/pool": "c", "klp-test/unrelated": null });
    await until("op-p1 back to two nodes", async () => (await targeted()) === 2);
  });

  it("fails a node that goes NotReady during its soak, its readiness read on demand as the metadata watch sees its Node change", async () => {
    await cluster.createNode("op-soak", { "klp-test/pool": "soak" });
    await cluster.createPatch("op-gate", { modules: [mod], nodeSelector: { matchLabels: { "klp-test/pool": "soak" } }, rollout: { maxUnavailable: 1, failureThreshold: 1, soakSeconds: 120 } });
    await until("op-soak admitted", async () => (await cluster.admitted("op-gate")).admitted.includes("op-soak"));
    const reads = async () => (await operator.metrics.nodeReads.get()).values[0]?.value ?? 0;
    const readsBefore = await reads();
    const changesBefore = await nodeUpdates("readiness");
    await agentWrites("op-gate", { nodeName: "op-soak", phase: "Loaded" });
    await until("op-soak Loaded on the patch", async () => entryOf(await cluster.getPatch("op-gate"), "op-soak")?.phase === "Loaded");
    // The soak has two minutes to run: the verdict must come from the Node's change, not the soak's end.
    await setReady("op-soak", "Unknown");
    const failed = await until("NodeNotReadyDuringSoak", async () => {
      const p = await cluster.getPatch("op-gate");
      return condition(p, "Degraded")?.message?.includes("op-soak: NodeNotReadyDuringSoak") ? p : undefined;
    }, 30_000);
    expect(failed.status?.rollout?.halted).toBe(true);
    // One read when the node entered its soak, then at most one per change of its Node while it is
    // of interest (the condition, and the taints the node lifecycle controller puts on it), not per reconcile.
    const read = (await reads()) - readsBefore;
    const changes = (await nodeUpdates("readiness")) - changesBefore;
    expect(read).toBeGreaterThanOrEqual(2);
    expect(read).toBeLessThanOrEqual(1 + changes);
  });
});
