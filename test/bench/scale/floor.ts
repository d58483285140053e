/**
 * The floor: how long the same API server takes for the same number of bare server-side-apply
 * status writes as the agents make, at the same client concurrency. N KernelLivePatchNode objects
 * (`bench-floor-<i>`, created first by an admin apply of `spec.patches: []`, not timed), each written
 * by its own writer on its own connection, all writers at once; each write is the agent's request
 * (node-agent/kube/node-channel.ts EntryWriter): an apply of `status.entries` (one entry per patch)
 * to `kernellivepatchnodes/<node>/status` under the field manager `kpatch-agent/<node>`. W writes
 * are spread over the N writers (W mod N of them write one more), each writer's one after another
 * (an agent's writes never overlap); a failed write is retried with the agent's pass backoff.
 *
 * The design's floor adds, before each writer's status writes, the one write the operator makes per
 * node: the apply of its projection (`spec.patches`, as projectNode computes it) under the
 * operator's field manager. The rollout's API server CPU divided by this floor's is the overhead of
 * everything beyond the design's minimal writes (reads, watches, roll-ups, retries).
 */
import { randomUUID } from "node:crypto";
import { API_VERSION, NODE_KIND, type NodeEntry, type NodePatchEntry, type PatchOnNode } from "../../../crds/schema.ts";
import { agentFieldManager } from "../../../node-agent/kube/agent-api.ts";
import type { Connection } from "../../../kube/connection.ts";
import { KubeHttp } from "../../../kube/http-client.ts";
import { NODE_OBJECTS_PATH } from "../../../crds/schema.ts";
import { NodeObjectClient } from "../../../operator/kube/node-objects.ts";
import { failureKind, pool } from "./util.ts";

export interface FloorResult {
  /** Status writes made (W), by N writers. */
  writes: number;
  /** Projection applies made before them (the design's floor: one per node; otherwise 0). */
  projectionWrites: number;
  writers: number;
  /** Until every write landed (undefined: not within the time limit). */
  ms: number | undefined;
  /** Writes that landed within the limit. */
  landed: number;
  /** Failed attempts (retried like an agent retries a failed pass: 1 s, 2 s, 4 s ... 60 s, jittered). */
  failures: number;
  /** Failed attempts by HTTP status. */
  failuresByCode: Record<string, number>;
}

export function loadedEntry(node: string, kernelRelease: string, sha256: string, moduleName: string): NodeEntry {
  return {
    nodeName: node,
    phase: "Loaded",
    kernelRelease,
    bootID: randomUUID(),
    moduleName,
    sha256,
    enabled: true,
    transition: false,
    tainted: 45056,
    taintFlags: "OEK",
    observedGeneration: 1,
    lastTransitionTime: new Date().toISOString(),
  };
}

/** The agent's request: every entry of the node, as one server-side apply of the object's status. */
export async function applyEntries(http: KubeHttp, node: string, entries: readonly NodePatchEntry[]): Promise<string | undefined> {
  const written = await http.json<{ metadata?: { resourceVersion?: string } } | undefined>("PATCH", `${NODE_OBJECTS_PATH}/${encodeURIComponent(node)}/status`, {
    query: { fieldManager: agentFieldManager(node), force: true },
    contentType: "application/apply-patch+yaml",
    body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: node }, status: { entries } },
  });
  return written?.metadata?.resourceVersion;
}

export const floorObject = (i: number) => `bench-floor-${String(i).padStart(4, "0")}`;

/** The floor's N node objects, as an admin creates them: `spec.patches: []` (not timed). */
export async function createFloorObjects(admin: KubeHttp, writers: number): Promise<string[]> {
  const names = Array.from({ length: writers }, (_, i) => floorObject(i));
  await pool(names, 16, (name) =>
    admin.json("PATCH", `${NODE_OBJECTS_PATH}/${name}`, {
      query: { fieldManager: "bench-floor", force: true },
      contentType: "application/apply-patch+yaml",
      body: { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name }, spec: { patches: [] } },
    }),
  );
  return names;
}

/** W writes over the objects `names` (one writer each, all at once); see the module comment. */
export async function measureFloor(opts: {
  conn: Connection;
  names: readonly string[];
  writes: number;
  /** One entry per patch in every write. */
  patches: readonly string[];
  kernelRelease: string;
  sha256: string;
  timeoutMs: number;
  /** The design's floor: the operator's projection for each node, applied by its writer before its status writes. */
  projectionOf?: (node: string) => PatchOnNode[];
  /** Called once every writer's connection is up, just before the timed writes (to sample CPU from there). */
  onTimedStart?: () => void;
}): Promise<FloorResult> {
  const clients = opts.names.map(() => new KubeHttp(opts.conn));
  const n = opts.names.length;
  const share = (i: number) => Math.floor(opts.writes / n) + (i < opts.writes % n ? 1 : 0);
  try {
    await pool(clients, 64, (c) => c.json("GET", "/version")); // connections up, as the agents' are
    const projectionWrites = opts.projectionOf ? n : 0;
    const result: FloorResult = { writes: opts.writes, projectionWrites, writers: n, ms: undefined, landed: 0, failures: 0, failuresByCode: {} };
    opts.onTimedStart?.();
    const started = performance.now();
    const deadline = started + opts.timeoutMs;
    let stop = false;
    const all = Promise.all(
      opts.names.map(async (node, i) => {
        const k = share(i);
        const withRetry = async (write: () => Promise<unknown>): Promise<void> => {
          for (let attempt = 0; !stop; attempt++) {
            try {
              await write();
              result.landed++;
              return;
            } catch (err) {
              result.failures++;
              const code = failureKind(err);
              result.failuresByCode[code] = (result.failuresByCode[code] ?? 0) + 1;
              const ms = Math.min(60_000, 1000 * 2 ** attempt);
              await new Promise((r) => setTimeout(r, Math.min(ms / 2 + Math.random() * (ms / 2), Math.max(0, deadline - performance.now()))));
            }
          }
        };
        const projection = opts.projectionOf?.(node);
        // The operator's request (its projection of the node's patches); the floor's objects have no Node to own them.
        if (projection) await withRetry(() => new NodeObjectClient(clients[i]!).applySpec({ name: node }, projection));
        for (let j = 0; j < k && !stop; j++) {
          // Loading before the last write, Loaded at the last: each write changes the entries, as the agents' do.
          const entries = opts.patches.map(
            (patch): NodePatchEntry => ({
              ...loadedEntry(node, opts.kernelRelease, opts.sha256, "bench_fix"),
              ...(j < k - 1 ? { phase: "Loading", enabled: false, transition: true } : {}),
              patch,
            }),
          );
          await withRetry(() => applyEntries(clients[i]!, node, entries));
        }
      }),
    );
    const timer = new Promise<void>((r) => setTimeout(r, opts.timeoutMs).unref());
    await Promise.race([all, timer]);
    if (result.landed === result.writes + projectionWrites) result.ms = performance.now() - started;
    stop = true;
    for (const c of clients) c.close(); // ends the writes still in flight
    await all.catch(() => undefined);
    return result;
  } finally {
    for (const c of clients) c.close();
  }
}
