/**
 * list-watch's metadataOnly option against the real API server: a kubelet-sized Node (images,
 * conditions, addresses) reaches the cache as PartialObjectMetadata, from the list and from the
 * watch, without its spec or status.
 */
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { ListWatch, type ListWatchClient } from "../../kube/list-watch.ts";
import { watchOwnNode } from "../../node-agent/kube/agent-api.ts";
import type { Watcher } from "../../node-agent/kube/watcher.ts";
import { Cluster, kubeconfigPath, until } from "../support/klp.ts";

const cluster = new Cluster();
const NODE = "mw-node";
let http: KubeHttp;
const informers: Array<ListWatch<Record<string, unknown>> | Watcher> = [];

/** A list-watch of Nodes keeping every object as it arrived (managedFields aside). */
async function watchNodes(metadataOnly: boolean): Promise<ListWatch<Record<string, unknown>>> {
  const lw = new ListWatch<Record<string, unknown>>(http, { path: "/api/v1/nodes", query: { fieldSelector: `metadata.name=${NODE}` }, metadataOnly });
  informers.push(lw);
  await lw.start();
  return lw;
}

beforeAll(async () => {
  http = new KubeHttp(kubeconfigConnection(kubeconfigPath()));
  await cluster.createNode(NODE, { "klp-test/pool": "mw" });
  const images = Array.from({ length: 50 }, (_, i) => ({ names: [`registry.example.com/team/app-${i}@sha256:${String(i).padStart(64, "0")}`], sizeBytes: 1e8 + i }));
  await cluster.core.patchNodeStatus(
    { name: NODE, body: { status: { images, addresses: [{ type: "InternalIP", address: "10.0.0.7" }] } } },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
});

afterAll(async () => {
  for (const lw of informers) lw.stop();
  await cluster.deleteNode(NODE);
  http?.close();
});

describe("a metadata-only list-watch of Nodes", () => {
  it("lists and watches a Node with images, conditions and addresses as PartialObjectMetadata: labels and resourceVersion, no spec, no status", async () => {
    const whole = await watchNodes(false);
    expect((whole.get(NODE)?.status as { images?: unknown[] } | undefined)?.images).toHaveLength(50);

    const meta = await watchNodes(true);
    const listed = meta.get(NODE)!;
    expect(listed).toMatchObject({ kind: "PartialObjectMetadata", apiVersion: "meta.k8s.io/v1", metadata: { name: NODE, labels: { "klp-test/pool": "mw" } } });
    expect(listed).not.toHaveProperty("status");
    expect(listed).not.toHaveProperty("spec");
    expect(JSON.stringify(listed).length).toBeLessThan(1024);

    await cluster.labelNode(NODE, { "klp-test/moved": "yes" });
    const watched = await until("the label change through the watch", () => {
      const o = meta.get(NODE) as { metadata?: { labels?: Record<string, string> } } | undefined;
      return o?.metadata?.labels?.["klp-test/moved"] === "yes" ? o : undefined;
    });
    expect(watched).toMatchObject({ kind: "PartialObjectMetadata" });
    expect(watched).not.toHaveProperty("status");
  });
});

describe("the agent's watch of its own Node", () => {
  it("asks for metadata only, list and watch, and still sees its labels change", async () => {
    // The production client, noting the Accept header of each request the watch makes.
    const accepts: Array<string | undefined> = [];
    const noting: ListWatchClient = {
      json: (method, p, opts) => (accepts.push(opts.accept), http.json(method, p, opts)),
      stream: (p, opts) => (accepts.push(opts.accept), http.stream(p, opts)),
    };
    let labels: Record<string, string> | undefined;
    const w = watchOwnNode(noting, NODE, (l) => (labels = l), pino({ level: "silent" }));
    informers.push(w);
    await w.start();
    await until("the Node's labels", () => labels?.["klp-test/pool"] === "mw");
    await cluster.labelNode(NODE, { "klp-test/agent-saw": "yes" });
    await until("the label change through the agent's watch", () => labels?.["klp-test/agent-saw"] === "yes");
    expect(accepts.length).toBeGreaterThanOrEqual(2);
    for (const a of accepts) expect(a).toContain("as=PartialObjectMetadata");
  });
});
