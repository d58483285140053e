/** Follows the benchmark's patches through its own watch: the rollout's timeline and who wrote each version. */
import { FINALIZER } from "../../../crds/schema.ts";

export interface Timeline {
  finalizerMs?: number;
  admittedMs?: number;
  firstLoadedMs?: number;
  allLoadedMs?: number;
  readyMs?: number;
}

interface PatchView {
  metadata: { name: string; generation?: number; resourceVersion?: string; finalizers?: string[] };
  status?: {
    observedGeneration?: number;
    conditions?: Array<{ type: string; status: string }>;
    summary?: unknown;
    rollout?: { generation: number; admitted: string[]; halted: boolean };
    nodes?: Array<{ nodeName: string; phase: string }>;
  };
}

/** Follows the patches through the benchmark's own watch: timeline and who wrote each version. */
export class Tracker {
  readonly timeline: Timeline = {};
  readonly versions = { agents: 0, operator: 0 };
  loaded = 0;
  private readonly seen = new Map<string, { rv: string | undefined; signature: string }>();

  constructor(
    private readonly names: readonly string[],
    private readonly nodes: number,
    private readonly elapsed: () => number,
  ) {}

  get ready(): boolean {
    return this.timeline.readyMs !== undefined;
  }

  observe(objects: ReadonlyMap<string, unknown>): void {
    const views = this.names.map((n) => objects.get(n) as PatchView | undefined);
    for (const p of views) if (p) this.attribute(p);
    if (views.some((v) => v === undefined)) return;
    const ps = views as PatchView[];
    const at = this.elapsed();
    const mark = (key: keyof Timeline, cond: boolean) => {
      if (cond && this.timeline[key] === undefined) this.timeline[key] = at;
    };
    const loaded = ps.map((p) => (p.status?.nodes ?? []).filter((e) => e.phase === "Loaded").length);
    this.loaded = Math.min(...loaded);
    mark("finalizerMs", ps.every((p) => p.metadata.finalizers?.includes(FINALIZER)));
    mark("admittedMs", ps.every((p) => p.status?.rollout?.generation === p.metadata.generation && p.status?.rollout?.admitted.length === this.nodes));
    mark("firstLoadedMs", loaded.some((n) => n > 0));
    mark("allLoadedMs", this.loaded === this.nodes);
    mark(
      "readyMs",
      ps.every(
        (p) =>
          p.status?.observedGeneration === p.metadata.generation &&
          p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") &&
          (p.status.summary as { ready?: string } | undefined)?.ready === `${this.nodes}/${this.nodes}`,
      ),
    );
  }

  /** A version whose controller-owned part changed was written by the operator, any other by an agent. */
  private attribute(p: PatchView): void {
    const last = this.seen.get(p.metadata.name);
    if (last?.rv === p.metadata.resourceVersion) return;
    const s = p.status;
    const signature = JSON.stringify([p.metadata.finalizers, s?.observedGeneration, s?.conditions, s?.summary, s?.rollout?.generation, s?.rollout?.halted, s?.rollout?.admitted.length]);
    this.seen.set(p.metadata.name, { rv: p.metadata.resourceVersion, signature });
    if (last === undefined) return;
    // One write is one manager's: the operator's changes the controller-owned part, an agent's its entry.
    if (last.signature !== signature) this.versions.operator++;
    else this.versions.agents++;
  }
}

