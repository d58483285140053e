/**
 * The floor: how long the same API server takes for bare server-side-apply status writes, one per
 * node and patch, with the agents' own request code and body shape (a Loaded entry under the
 * field manager kpatch-agent/<node>), every node writing at once on its own connection (as the
 * agents do), each node's writes to several patches one after another (as an agent's are), a
 * failed write retried with the agent's pass backoff.
 */
import { randomUUID } from "node:crypto";
import { pino } from "pino";
import { API_VERSION, KIND, type NodeEntry } from "../../../crds/schema.ts";
import { agentApi, PATCHES_PATH } from "../../../node-agent/kube/agent-api.ts";
import type { Connection } from "../../../node-agent/kube/connection.ts";
import { KubeHttp } from "../../../node-agent/kube/http-client.ts";
import { failureKind, pool } from "./util.ts";

export interface FloorResult {
  /** Until every write landed (undefined: not within the time limit). */
  ms: number | undefined;
  writes: number;
  /** Writes that landed within the limit. */
  landed: number;
  /** Failed attempts (retried like an agent retries a failed pass: 1 s, 2 s, 4 s ... 60 s). */
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

export async function measureFloor(opts: {
  conn: Connection;
  admin: KubeHttp;
  nodes: readonly string[];
  patches: number;
  kernelRelease: string;
  sha256: string;
  timeoutMs: number;
}): Promise<FloorResult> {
  const names = Array.from({ length: opts.patches }, (_, i) => `bench-floor-${i}`);
  for (const name of names) {
    const spec = { modules: [{ kernelRelease: "0.0.0-floor", sha256: opts.sha256, url: "https://example.invalid/floor.ko" }], rollout: { maxUnavailable: "100%" } };
    await opts.admin.json("POST", PATCHES_PATH, { body: { apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec } });
  }
  const log = pino({ level: "silent" });
  const clients = opts.nodes.map(() => new KubeHttp(opts.conn));
  try {
    await pool(clients, 64, (c) => c.json("GET", "/version")); // connections up, as the agents' are
    const result: FloorResult = { ms: undefined, writes: opts.nodes.length * names.length, landed: 0, failures: 0, failuresByCode: {} };
    const started = performance.now();
    const deadline = started + opts.timeoutMs;
    let stop = false;
    const all = Promise.all(
      opts.nodes.map(async (node, i) => {
        const api = agentApi(clients[i]!, node, log);
        for (const patch of names) {
          for (let attempt = 0; !stop; attempt++) {
            try {
              await api.applyEntry(patch, loadedEntry(node, opts.kernelRelease, opts.sha256, "bench_fix"));
              result.landed++;
              break;
            } catch (err) {
              result.failures++;
              const code = failureKind(err);
              result.failuresByCode[code] = (result.failuresByCode[code] ?? 0) + 1;
              await new Promise((r) => setTimeout(r, Math.min(60_000, 1000 * 2 ** attempt, Math.max(0, deadline - performance.now()))));
            }
          }
        }
      }),
    );
    const timer = new Promise<void>((r) => setTimeout(r, opts.timeoutMs).unref());
    await Promise.race([all, timer]);
    if (result.landed === result.writes) result.ms = performance.now() - started;
    stop = true;
    for (const c of clients) c.close(); // ends the writes still in flight
    await all.catch(() => undefined);
    return result;
  } finally {
    for (const c of clients) c.close();
    for (const name of names) await opts.admin.json("DELETE", `${PATCHES_PATH}/${name}`).catch(() => undefined);
  }
}
