/**
 * Follows the rollout through the benchmark's own watches: the KernelLivePatches (the operator's
 * finalizer, admission, roll-up and Ready) and the KernelLivePatchNodes (the operator's projections
 * onto them, the agents' entries). Every version is attributed to its writer: a node object's
 * version whose spec changed is the operator's (the agents write only the status subresource), one
 * whose status changed an agent's; a patch's version whose status changed is the operator's (it
 * alone writes that status now), one whose metadata changed the operator's finalizer write.
 */
import { FINALIZER } from "../../../crds/schema.ts";

export interface Timeline {
  /** Patch: the operator's finalizer on every patch. */
  finalizerMs?: number;
  /** Node objects: every node object exists (the operator's first projection). */
  projectedMs?: number;
  /** Patch: status.rollout counts every node admitted, for every patch. */
  admittedMs?: number;
  /** Node objects: every node's projection says admitted, for every patch. */
  projectedAdmittedMs?: number;
  /** Node objects: the first agent entry Loaded / every node's entries Loaded. */
  firstLoadedMs?: number;
  allLoadedMs?: number;
  /** Patch: status.summary counts every node Loaded, for every patch (the operator's roll-up). */
  rolledUpMs?: number;
  /** Patch: Ready with summary.ready N/N, for every patch. */
  readyMs?: number;
}

interface PatchView {
  metadata: { name: string; generation?: number; resourceVersion?: string; finalizers?: string[] };
  status?: {
    observedGeneration?: number;
    conditions?: Array<{ type: string; status: string }>;
    summary?: { ready?: string; loaded?: number };
    rollout?: { generation: number; admittedCount?: number; halted: boolean };
  };
}

export interface NodeObjectView {
  metadata?: { name?: string; resourceVersion?: string; annotations?: Record<string, string> };
  spec?: { patches?: Array<{ name: string; admitted: boolean }> };
  status?: { entries?: Array<{ patch: string; phase: string }> };
}

export class Tracker {
  readonly timeline: Timeline = {};
  /** Versions by writer: the operator's patch status and finalizer writes, its node-object spec writes, the agents' entry writes. */
  readonly versions = { operatorStatus: 0, operatorMeta: 0, operatorSpec: 0, agents: 0 };
  /** Fewest nodes Loaded over the patches: in the node objects (agents), and in the patches' status (roll-up). */
  loaded = 0;
  rolledUp = 0;
  private readonly seenPatches = new Map<string, { rv: string | undefined; meta: string; status: string }>();
  private readonly seenNodes = new Map<string, { rv: string | undefined; spec: string; status: string }>();
  private patches: ReadonlyMap<string, unknown> = new Map();
  private lastNodeObject: NodeObjectView | undefined;
  /** What each node object counts for: every patch admitted in its projection, the patches its entries say Loaded. */
  private readonly nodeFacts = new Map<string, { admitted: boolean; loaded: string[] }>();
  private admitted = 0;
  private readonly loadedPerPatch: Map<string, number>;

  constructor(
    private readonly names: readonly string[],
    private readonly nodes: number,
    private readonly elapsed: () => number,
  ) {
    this.loadedPerPatch = new Map(names.map((n) => [n, 0]));
  }

  get ready(): boolean {
    return this.timeline.readyMs !== undefined;
  }

  /** Node objects' writes per node, between the start of counting and now. */
  private counting = false;

  /** Versions seen before this call only set the baseline. */
  startCounting(): void {
    this.counting = true;
  }

  private mark(key: keyof Timeline, cond: boolean): void {
    if (this.counting && cond && this.timeline[key] === undefined) this.timeline[key] = this.elapsed();
  }

  observePatches(objects: ReadonlyMap<string, unknown>): void {
    this.patches = objects;
    const views = this.names.map((n) => objects.get(n) as PatchView | undefined);
    for (const p of views) if (p) this.attributePatch(p);
    if (views.some((v) => v === undefined)) return;
    const ps = views as PatchView[];
    // status.nodes lists at most 50 nodes: the roll-up's counts say how many are Loaded.
    const loaded = ps.map((p) => p.status?.summary?.loaded ?? 0);
    this.rolledUp = Math.min(...loaded);
    this.mark("finalizerMs", ps.every((p) => p.metadata.finalizers?.includes(FINALIZER)));
    this.mark("admittedMs", ps.every((p) => p.status?.rollout?.generation === p.metadata.generation && p.status?.rollout?.admittedCount === this.nodes));
    this.mark("rolledUpMs", this.rolledUp === this.nodes);
    this.mark(
      "readyMs",
      ps.every(
        (p) =>
          p.status?.observedGeneration === p.metadata.generation &&
          p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") &&
          p.status.summary?.ready === `${this.nodes}/${this.nodes}`,
      ),
    );
  }

  /**
   * One node object added or changed (a ListWatch's add and update handlers). Counts are kept per
   * event, not recounted over every object: a recount costs the benchmark O(nodes) per event,
   * O(nodes²) per rollout, on the cores the API server needs (at 5,000 nodes it was the largest
   * CPU figure that grew faster than the fleet).
   */
  observeNodeObject(o: NodeObjectView): void {
    this.lastNodeObject = o;
    this.attributeNode(o);
    const name = o.metadata?.name ?? "";
    this.forget(name);
    const projected = o.spec?.patches ?? [];
    const facts = {
      admitted: this.names.every((n) => projected.some((p) => p.name === n && p.admitted)),
      loaded: (o.status?.entries ?? []).filter((e) => e.phase === "Loaded" && this.loadedPerPatch.has(e.patch)).map((e) => e.patch),
    };
    this.nodeFacts.set(name, facts);
    if (facts.admitted) this.admitted++;
    for (const patch of facts.loaded) this.loadedPerPatch.set(patch, this.loadedPerPatch.get(patch)! + 1);
    this.markNodes();
  }

  /** A node object deleted (a ListWatch's delete handler). */
  forgetNodeObject(o: NodeObjectView): void {
    this.forget(o.metadata?.name ?? "");
    this.markNodes();
  }

  private forget(name: string): void {
    const facts = this.nodeFacts.get(name);
    if (!facts) return;
    this.nodeFacts.delete(name);
    if (facts.admitted) this.admitted--;
    for (const patch of facts.loaded) this.loadedPerPatch.set(patch, this.loadedPerPatch.get(patch)! - 1);
  }

  private markNodes(): void {
    const loaded = [...this.loadedPerPatch.values()];
    this.loaded = Math.min(...loaded);
    this.mark("projectedMs", this.nodeFacts.size >= this.nodes);
    this.mark("projectedAdmittedMs", this.admitted >= this.nodes);
    this.mark("firstLoadedMs", loaded.some((n) => n > 0));
    this.mark("allLoadedMs", this.loaded === this.nodes);
  }

  /** The JSON size of one patch and one node object as last seen (without managedFields). */
  sizes(): { patchBytes: number; nodeObjectBytes: number } {
    return { patchBytes: JSON.stringify(this.patches.get(this.names[0]!) ?? {}).length, nodeObjectBytes: JSON.stringify(this.lastNodeObject ?? {}).length };
  }

  private attributePatch(p: PatchView): void {
    const last = this.seenPatches.get(p.metadata.name);
    if (last?.rv === p.metadata.resourceVersion) return;
    const seen = { rv: p.metadata.resourceVersion, meta: JSON.stringify(p.metadata.finalizers ?? []), status: JSON.stringify(p.status ?? {}) };
    this.seenPatches.set(p.metadata.name, seen);
    if (!this.counting || last === undefined) return;
    if (last.status !== seen.status) this.versions.operatorStatus++;
    if (last.meta !== seen.meta) this.versions.operatorMeta++;
  }

  private attributeNode(o: NodeObjectView): void {
    const name = o.metadata?.name ?? "";
    const last = this.seenNodes.get(name);
    if (last?.rv === o.metadata?.resourceVersion) return;
    const seen = { rv: o.metadata?.resourceVersion, spec: JSON.stringify([o.spec ?? {}, o.metadata?.annotations ?? {}]), status: JSON.stringify(o.status ?? {}) };
    this.seenNodes.set(name, seen);
    if (!this.counting) return;
    // A new object is the operator's first projection (it creates the object by applying its spec).
    if (last === undefined || last.spec !== seen.spec) this.versions.operatorSpec++;
    if (last !== undefined ? last.status !== seen.status : seen.status !== "{}") this.versions.agents++;
  }
}
