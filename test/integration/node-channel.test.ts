/**
 * The agent's writes to its KernelLivePatchNode (node-agent/kube/node-channel.ts) against the real
 * API server: every write carries every entry of the node, writes never overlap, entries set while
 * one is in flight go out together in the next, and the agent's condition is held until the object
 * exists, then written once with the entries already there.
 *
 * The client is the production one; the test only notes each status apply as it leaves (what went
 * in which write, and how many were in flight), and reads the outcome back from the API server.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_VERSION, NODE_KIND, NODE_OBJECTS_PATH } from "../../crds/names.ts";
import type { NodePatchEntry } from "../../crds/schema.ts";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { APPLY, KubeHttp, type RequestOptions } from "../../kube/http-client.ts";
import { agentFieldManager } from "../../node-agent/kube/agent-api.ts";
import { nodeChannel, type NodeChannel } from "../../node-agent/kube/node-channel.ts";
import { controlPlane, installCrd, kubeconfigPath, until } from "../support/klp.ts";

const log = pino({ level: "silent" });

/** A KernelLivePatch spec as the API server defaulted it. */
const SPEC = {
  state: "Loaded",
  modules: [{ kernelRelease: "6.1.0-56-amd64", sha256: "a".repeat(64), url: "https://x.example/a.ko" }],
  rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 },
  transitionTimeoutSeconds: 75,
};

const projection = (name: string) => ({ name, uid: `uid-${name}`, generation: 1, creationTimestamp: "2026-12-01T00:00:00Z", admitted: true, spec: SPEC });

interface SentStatus {
  entries: Array<{ patch: string; phase: string }>;
  summary?: string;
  conditions?: unknown[];
}

/** The production client, noting each status apply as it leaves. */
class NotingHttp extends KubeHttp {
  readonly applies: SentStatus[] = [];
  private inFlight = 0;
  maxInFlight = 0;
  private readonly waiting: Array<{ count: number; resolve: () => void }> = [];

  override async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    if (method !== "PATCH" || !path.endsWith("/status")) return super.json<T>(method, path, opts);
    this.applies.push(structuredClone((opts.body as { status: SentStatus }).status));
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    for (const w of this.waiting.filter((x) => x.count <= this.applies.length)) w.resolve();
    try {
      return await super.json<T>(method, path, opts);
    } finally {
      this.inFlight--;
    }
  }

  /** Resolves once `count` status applies have left (the last one is still in flight then: its answer needs I/O). */
  sent(count: number): Promise<void> {
    if (this.applies.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push({ count, resolve }));
  }
}

interface NodeObject {
  metadata: { resourceVersion: string };
  status?: { entries?: NodePatchEntry[]; summary?: string; conditions?: Array<Record<string, string>> };
}

let admin: KubeHttp;
const channels: NodeChannel[] = [];
const clients: KubeHttp[] = [];
const objects: string[] = [];

function channelFor(node: string): { ch: NodeChannel; http: NotingHttp } {
  const http = new NotingHttp(kubeconfigConnection(kubeconfigPath()));
  const ch = nodeChannel(http, node, log);
  clients.push(http);
  channels.push(ch);
  return { ch, http };
}

/** Creates a node's object with projected patches and a status as an earlier run of the node's agent wrote it. */
async function createNodeObject(node: string, patches: string[], status?: NodeObject["status"]): Promise<void> {
  objects.push(node);
  await admin.json("POST", NODE_OBJECTS_PATH, { body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: node }, spec: { patches: patches.map(projection) } } });
  if (status) {
    await admin.json("PATCH", `${NODE_OBJECTS_PATH}/${node}/status`, {
      query: { fieldManager: agentFieldManager(node), force: true },
      contentType: APPLY,
      body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: node }, status },
    });
  }
}

const read = (node: string): Promise<NodeObject> => admin.json<NodeObject>("GET", `${NODE_OBJECTS_PATH}/${node}`);
const phases = (entries: ReadonlyArray<{ patch: string; phase: string }> | undefined): string[] => (entries ?? []).map((e) => `${e.patch}:${e.phase}`);
const settle = (ms = 500): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  await installCrd(await controlPlane());
  admin = new KubeHttp(kubeconfigConnection(kubeconfigPath()));
});

afterAll(async () => {
  for (const ch of channels) ch.stop();
  for (const node of objects) await admin.json("DELETE", `${NODE_OBJECTS_PATH}/${node}`).catch(() => undefined);
  for (const c of [...clients, admin]) c.close();
});

describe("the agent's status writes to its KernelLivePatchNode, on the real API server", () => {
  it("drops the entry of a patch no longer projected, sends every entry in each write, never two at once, and coalesces what was set meanwhile", async () => {
    const node = "nc-writes";
    await createNodeObject(node, ["a", "b"], {
      entries: [
        { patch: "b", patchUID: "uid-b", nodeName: node, phase: "Loaded" },
        { patch: "gone", nodeName: node, phase: "Unloaded" },
      ],
    });
    const { ch, http } = channelFor(node);
    let seen: unknown[] = [];
    await ch.start((p) => (seen = p));
    expect(seen).toHaveLength(2);
    // The stale entry of a patch no longer projected goes, by a write of its own.
    await until("the stale entry dropped", async () => phases((await read(node)).status?.entries).join() === "b:Loaded");
    expect(http.applies.map((s) => phases(s.entries))).toEqual([["b:Loaded"]]);

    const first = ch.api.applyEntry("a", { nodeName: node, phase: "Loading" });
    await http.sent(2); // the first is in flight now
    const second = ch.api.applyEntry("a", { nodeName: node, phase: "Loaded" });
    const third = ch.api.applyEntry("b", { nodeName: node, phase: "Unloading" });
    const versions = await Promise.all([first, second, third]);

    expect(http.maxInFlight).toBe(1);
    // The first went alone, with every entry of the node; the next two, set while it was in flight, together after it.
    expect(http.applies.slice(1).map((s) => phases(s.entries))).toEqual([["a:Loading", "b:Loaded"], ["a:Loaded", "b:Unloading"]]);
    // The two that went together resolve to the one version their write made (versions are opaque: only compared for equality).
    expect(versions[1]).toBe(versions[2]);
    expect(versions[0]).not.toBe(versions[1]);
    const now = await read(node);
    expect(now.metadata.resourceVersion).toBe(versions[2]);
    expect(phases(now.status?.entries)).toEqual(["a:Loaded", "b:Unloading"]);
    expect(now.status?.entries?.find((e) => e.patch === "a")?.patchUID).toBe("uid-a");
    // The one-line summary for kubectl get goes with the entries.
    expect(now.status?.summary).toBe("a Loaded, b Unloading");
  });
});

describe("the agent's conditions on its KernelLivePatchNode, on the real API server", () => {
  const policy = { type: "NodeWritePolicy", status: "False" as const, reason: "NodeWritePolicyMissing", message: "no policy" };
  const T0 = "2026-12-01T00:00:00Z";

  it("writes a condition with the entries already on the object, once, keeping its transition time while the status holds", async () => {
    const node = "nc-condition";
    await createNodeObject(node, ["b"], {
      entries: [{ patch: "b", patchUID: "uid-b", nodeName: node, phase: "Loaded" }],
      conditions: [{ ...policy, message: "older words", lastTransitionTime: T0 }],
    });
    const { ch, http } = channelFor(node);
    await ch.watch();
    ch.reportCondition(policy);
    await until("the condition written", async () => (await read(node)).status?.conditions?.[0]?.message === "no policy");
    const now = await read(node);
    expect(now.status?.conditions).toEqual([{ ...policy, lastTransitionTime: T0 }]);
    // The entry written before this agent's first write is carried, not dropped.
    expect(phases(now.status?.entries)).toEqual(["b:Loaded"]);
    expect(now.status?.summary).toBe("b Loaded");
    await settle();
    expect(http.applies).toHaveLength(1);
  });

  it("holds a condition set before the object exists and writes it once the object is seen; the same condition again is not written", async () => {
    const node = "nc-late";
    const { ch, http } = channelFor(node);
    ch.reportCondition(policy);
    await ch.watch();
    await settle();
    expect(http.applies).toEqual([]);

    await createNodeObject(node, []);
    await until("the held condition written", async () => (await read(node)).status?.conditions?.length === 1);
    expect(http.applies).toMatchObject([{ entries: [], summary: "", conditions: [policy] }]);
    ch.reportCondition(policy);
    await settle();
    expect(http.applies).toHaveLength(1);
    // The agent loop, started after the watch, still receives the object's projections.
    let fromObject: boolean | undefined;
    await ch.start((_p, f) => (fromObject = f));
    expect(fromObject).toBe(true);
  });

  it("sends no conditions field while the agent has set none", async () => {
    const node = "nc-quiet";
    await createNodeObject(node, ["a"]);
    const { ch, http } = channelFor(node);
    await ch.watch();
    await ch.api.applyEntry("a", { nodeName: node, phase: "Pending" });
    expect(http.applies).toHaveLength(1);
    expect(http.applies[0]).not.toHaveProperty("conditions");
    const now = await read(node);
    expect(phases(now.status?.entries)).toEqual(["a:Pending"]);
    expect(now.status).not.toHaveProperty("conditions");
  });
});
