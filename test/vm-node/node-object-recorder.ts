// A watch on one node's KernelLivePatchNode: every version the API server serves, with the
// entries the node's agent wrote in it. The KernelLivePatch's status.nodes is the operator's copy;
// this is the agent's own write, so an entry that flapped there and was rolled up too late to show
// in the patch's status still shows here.
import { isDeepStrictEqual } from "node:util";
import type { KubeConfig } from "@kubernetes/client-node";
import { Watch } from "@kubernetes/client-node";
import { NODE_OBJECTS_PATH, type KernelLivePatchNode, type NodeEntry } from "../../crds/schema.ts";

export interface NodeObjectVersion {
  /** Host clock (ms since epoch) when the event arrived. */
  at: number;
  resourceVersion: string;
  /** The agent's entry per patch name, without the `patch`/`patchUID` keys. */
  entries: Map<string, NodeEntry>;
}

export class NodeObjectRecorder {
  readonly versions: NodeObjectVersion[] = [];
  private abort: AbortController | undefined;
  private stopped = false;
  constructor(
    private readonly kc: KubeConfig,
    private readonly nodeName: string,
  ) {}

  async start(): Promise<void> {
    this.abort = await new Watch(this.kc).watch(
      NODE_OBJECTS_PATH,
      { fieldSelector: `metadata.name=${this.nodeName}` },
      (type: string, obj: KernelLivePatchNode) => {
        if (type === "DELETED" || type === "BOOKMARK") return;
        const rv = obj.metadata.resourceVersion ?? "";
        // A relist after a broken watch repeats the version it already delivered.
        if (this.versions.at(-1)?.resourceVersion === rv) return;
        const entries = new Map((obj.status?.entries ?? []).map(({ patch, patchUID: _, ...entry }) => [patch, entry as NodeEntry]));
        this.versions.push({ at: Date.now(), resourceVersion: rv, entries });
      },
      () => {
        if (!this.stopped) setTimeout(() => void this.start().catch(() => undefined), 1000);
      },
    );
  }

  /**
   * The patch's entry in every version of the node's object in effect from `t` on: the one the
   * object had at `t`, then each later one (undefined where it had no entry for the patch).
   */
  from(t: number, patch: string): Array<{ at: number; resourceVersion: string; entry: NodeEntry | undefined }> {
    const first = Math.max(0, this.versions.findLastIndex((v) => v.at <= t));
    return this.versions.slice(first).map((v) => ({ at: v.at, resourceVersion: v.resourceVersion, entry: v.entries.get(patch) }));
  }

  /** The patch's entry in the latest version seen. */
  latest(patch: string): NodeEntry | undefined {
    return this.versions.at(-1)?.entries.get(patch);
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
  }
}

/** Phases (with module) an entry went through, consecutive duplicates collapsed. */
export function phases(seen: ReadonlyArray<{ entry: NodeEntry | undefined }>): string[] {
  const out: string[] = [];
  for (const s of seen) {
    const p = s.entry ? `${s.entry.phase}(${s.entry.moduleName ?? "-"})` : "none";
    if (out[out.length - 1] !== p) out.push(p);
  }
  return out;
}

/** The entry but its boot id (a new boot's agent writes its own). */
export function withoutBoot(e: NodeEntry | undefined): Partial<NodeEntry> | undefined {
  if (!e) return undefined;
  const { bootID: _, ...rest } = e;
  return rest;
}

/** The operator's copy (the patch's status) says what the agent wrote (the copy may shorten the message). */
export function sameReport(copy: NodeEntry | undefined, own: NodeEntry | undefined): boolean {
  const fields = (e: NodeEntry) => [e.phase, e.moduleName, e.sha256, e.replacedBy, e.bootID, e.enabled, e.transition, e.lastTransitionTime];
  return copy !== undefined && own !== undefined && isDeepStrictEqual(fields(copy), fields(own));
}
