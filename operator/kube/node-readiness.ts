/**
 * The readiness of the few Nodes a decision reads it of (nodes in their soak, nodes a deleted
 * patch's finalizer waits for: see rollout/readiness-wanted.ts), read on demand with a GET of the
 * Node, since the Nodes are watched as metadata only.
 *
 * A reading is current until the metadata watch reports the Node at another resourceVersion (any
 * change of its conditions is one): then it is stale, and a decision that wants it reads it again.
 * A kubelet posts its Node status when something changed or every few minutes, so a node of
 * interest costs one GET, and one more per change while it stays of interest. A stale reading is
 * kept a while for `readySeenAt` (a Node seen Ready after its soak has settled), then dropped.
 */
import { ignoreNotFound, type KubeHttp } from "../../kube/http-client.ts";
import type { NodeReadiness } from "../rollout/settled.ts";
import { nodeReadiness } from "./nodes.ts";
import type { V1Node } from "@kubernetes/client-node";

interface Reading {
  readonly readiness: NodeReadiness;
  /** The Node's resourceVersion as read. */
  readonly resourceVersion: string | undefined;
  /** When the Node was first seen at another resourceVersion (ms); undefined while current. */
  staleSince?: number;
}

export interface NodeReadinessOptions {
  /** Called for every GET of a Node (counted in a metric). */
  readonly onRead?: () => void;
  /** GETs in flight at most (default 8). */
  readonly concurrency?: number;
  /** How long a stale reading is kept (default 15 min). */
  readonly keepStaleMs?: number;
}

export class NodeReadinessCache {
  private readonly readings = new Map<string, Reading>();

  constructor(
    private readonly http: Pick<KubeHttp, "json">,
    private readonly opts: NodeReadinessOptions = {},
  ) {}

  /** The current reading of a Node, if any. */
  current(name: string): NodeReadiness | undefined {
    const r = this.readings.get(name);
    return r && r.staleSince === undefined ? r.readiness : undefined;
  }

  /** When the Node was last known Ready (ms): `now` while a Ready reading is current, else when it went stale. */
  readySeenAt(name: string, now: number): number | undefined {
    const r = this.readings.get(name);
    if (!r?.readiness.ready) return undefined;
    return r.staleSince ?? now;
  }

  /** The metadata watch saw the Node at `resourceVersion`: a reading of another version is stale. */
  changed(name: string, resourceVersion: string | undefined, now: number): void {
    const r = this.readings.get(name);
    if (r && r.staleSince === undefined && r.resourceVersion !== resourceVersion) r.staleSince = now;
  }

  deleted(name: string): void {
    this.readings.delete(name);
  }

  /** Reads the Nodes that have no current reading (a Node gone meanwhile is skipped). */
  async read(names: readonly string[], now: number): Promise<void> {
    this.prune(now);
    const todo = names.filter((n) => this.current(n) === undefined);
    const worker = async () => {
      for (let name = todo.pop(); name !== undefined; name = todo.pop()) {
        this.opts.onRead?.();
        const node = await ignoreNotFound(this.http.json<V1Node>("GET", `/api/v1/nodes/${encodeURIComponent(name)}`));
        if (!node) this.readings.delete(name);
        else this.readings.set(name, { readiness: nodeReadiness(node), resourceVersion: node.metadata?.resourceVersion });
      }
    };
    await Promise.all(Array.from({ length: Math.min(todo.length, this.opts.concurrency ?? 8) }, worker));
  }

  private prune(now: number): void {
    const keep = this.opts.keepStaleMs ?? 900_000;
    for (const [name, r] of this.readings) if (r.staleSince !== undefined && now - r.staleSince > keep) this.readings.delete(name);
  }
}
