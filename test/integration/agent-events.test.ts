/**
 * The agent's Events (node-agent/kube/agent-api.ts) on the real API server: what ends up stored,
 * not which calls were made. Aggregation and the rate bound leave one Event per object whose count
 * is the number of writes; a repeat is a patch of the Event its create wrote (a patch before the
 * create would find nothing, and the create after it would then fail as a duplicate).
 */
import { afterAll, describe, expect, it } from "vitest";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { agentEvents } from "../../node-agent/kube/agent-api.ts";
import { kubeconfigPath, testLog } from "../support/klp.ts";

const http = new KubeHttp(kubeconfigConnection(kubeconfigPath()));
const log = testLog("agent-events");

afterAll(() => http.close());

interface StoredEvent {
  involvedObject: { kind: string; name: string; uid?: string };
  source: { component?: string; host?: string };
  message: string;
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
}

/** The Events stored about one object (cluster-scoped objects' Events live in `default`). */
async function eventsAbout(kind: string, name: string): Promise<StoredEvent[]> {
  const list = await http.json<{ items: StoredEvent[] }>("GET", "/api/v1/namespaces/default/events", {
    query: { fieldSelector: `involvedObject.kind=${kind},involvedObject.name=${name}` },
  });
  return list.items;
}

describe("agent Events on the API server", () => {
  it("1000 identical Warnings: one Event on the patch and one on the Node, counting at most 26 writes (aggregated, then rate-bounded per node)", async () => {
    const node = "ev-n1";
    const event = agentEvents(http, node, log);
    for (let i = 0; i < 1000; i++) event({ name: "ev-fix-1", uid: "u-ev-1" }, "Warning", "VermagicMismatch", `${node}: module built for another kernel`);
    await event.flush();
    const stats = event.stats();
    const writes = stats.created + stats.patched;
    expect(stats.failed).toBe(0);
    expect(writes).toBeGreaterThan(0);
    expect(writes).toBeLessThanOrEqual(26);
    expect(stats.dropped).toBe(2000 - writes);
    const events = [...(await eventsAbout("KernelLivePatch", "ev-fix-1")), ...(await eventsAbout("Node", node))];
    expect(events.map((e) => e.involvedObject.kind).sort()).toEqual(["KernelLivePatch", "Node"]);
    expect(events.reduce((n, e) => n + e.count, 0)).toBe(writes);
    expect(events.every((e) => e.count > 1 && e.lastTimestamp >= e.firstTimestamp)).toBe(true);
  });

  it("a Normal event goes on the Node only; a repeat patches the Event its create wrote (count 2)", async () => {
    const node = "ev-n2";
    const event = agentEvents(http, node, log);
    event({ name: "ev-fix-2", uid: "u-ev-2" }, "Normal", "Loaded", `klp_fix loaded on ${node}`);
    event({ name: "ev-fix-2", uid: "u-ev-2" }, "Normal", "Loaded", `klp_fix loaded on ${node}`);
    await event.flush();
    expect(event.stats()).toMatchObject({ created: 1, patched: 1, failed: 0 });
    expect(await eventsAbout("KernelLivePatch", "ev-fix-2")).toEqual([]);
    const stored = await eventsAbout("Node", node);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      involvedObject: { kind: "Node", name: node, uid: node },
      source: { component: "kpatch-agent", host: node },
      message: `ev-fix-2: klp_fix loaded on ${node}`,
      count: 2,
    });
  });
});
