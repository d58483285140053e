/**
 * What the plugin shows, computed from one read of the fleet (every KernelLivePatch, every
 * KernelLivePatchNode, and the Nodes' labels). Pure: the I/O shell reads, these decide, render.ts
 * prints.
 *
 * A patch targets the Nodes its spec.nodeSelector selects (the API's definition, read from the
 * labels, so the view does not wait for the operator to project a new spec). A selected node where
 * no agent may run (the operator's KLP_AGENT_NODE_SELECTOR) stays Pending, and exposed: nothing
 * patches it. A node's entry for a patch is taken from its KernelLivePatchNode (what its agent wrote
 * last), never from the patch's status.nodes (beyond 50 nodes a digest, its messages cut); a node
 * with an entry is shown whether targeted or not (one the patch no longer selects may still hold it).
 */
import { fleetCvePosture, nodeCves, type CvePosture, type PatchCoverage } from "../crds/cve-posture.ts";
import { selectorMatches } from "../crds/label-selector.ts";
import { FAILED_PHASES } from "../crds/phases.ts";
import type { KernelLivePatch, KernelLivePatchNode, NodeEntry, NodePhase } from "../crds/schema.ts";
import { ofThisPatch } from "../crds/names.ts";

/** A Node as the views need it. */
export interface ClusterNode {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface FleetSnapshot {
  readonly patches: readonly KernelLivePatch[];
  readonly nodeObjects: readonly KernelLivePatchNode[];
  readonly clusterNodes: readonly ClusterNode[];
}

/** One patch, the nodes it targets, and what each node it concerns reported (no entry: nothing reported yet). */
export interface PatchOnFleet {
  readonly name: string;
  readonly cves: readonly string[];
  readonly targeted: ReadonlySet<string>;
  readonly nodes: ReadonlyMap<string, NodeEntry | undefined>;
}

/** The phase shown for a node that has reported nothing for a patch yet. */
const NOT_REPORTED: NodePhase = "Pending";

export function indexFleet(snapshot: FleetSnapshot): PatchOnFleet[] {
  return [...snapshot.patches]
    .sort((a, b) => compare(a.metadata.name, b.metadata.name))
    .map((p) => {
      const { name, uid } = p.metadata;
      const targeted = new Set(snapshot.clusterNodes.filter((n) => selectorMatches(p.spec.nodeSelector, n.labels)).map((n) => n.name));
      const nodes = new Map<string, NodeEntry | undefined>([...targeted].map((n) => [n, undefined]));
      for (const n of snapshot.nodeObjects) {
        const entry = n.status?.entries?.find((e) => e.patch === name && ofThisPatch(e.patchUID, uid));
        if (!entry) continue;
        const { patch: _p, patchUID: _u, ...rest } = entry;
        nodes.set(n.metadata.name, { ...rest, nodeName: n.metadata.name });
      }
      return { name, cves: p.spec.cves ?? [], targeted, nodes: new Map([...nodes].sort(([a], [b]) => compare(a, b))) };
    });
}

/** The posture's view of a patch. */
export function coverageOf(p: PatchOnFleet): PatchCoverage {
  const phases = new Map<string, NodePhase>();
  for (const [node, e] of p.nodes) if (e) phases.set(node, e.phase);
  return { patch: p.name, cves: p.cves, targeted: p.targeted, phases };
}

export interface StatusRow {
  readonly patch: string;
  readonly node: string;
  readonly kernelRelease?: string | undefined;
  readonly phase: NodePhase;
  readonly reason?: string | undefined;
  readonly taintFlags?: string | undefined;
  readonly moduleName?: string | undefined;
  readonly lastTransitionTime?: string | undefined;
}

/** One row per patch and node it concerns, for one patch or all. */
export function statusRows(fleet: readonly PatchOnFleet[], patch?: string): StatusRow[] {
  return fleet
    .filter((p) => patch === undefined || p.name === patch)
    .flatMap((p) =>
      [...p.nodes].map(([node, e]) => ({
        patch: p.name,
        node,
        kernelRelease: e?.kernelRelease,
        phase: e?.phase ?? NOT_REPORTED,
        reason: e?.reason,
        taintFlags: e?.taintFlags,
        moduleName: e?.moduleName,
        lastTransitionTime: e?.lastTransitionTime,
      })),
    );
}

/** An exposed node and, per patch that could fix the CVE there, where it stands. */
export interface ExposedNode {
  readonly node: string;
  readonly kernelRelease?: string | undefined;
  readonly patches: ReadonlyArray<{ readonly patch: string; readonly phase: NodePhase; readonly reason?: string | undefined }>;
}

export interface CveRow extends CvePosture {
  readonly exposedNodes: readonly ExposedNode[];
}

/** Each CVE the patches list (or only `cve`), with the nodes in each state and why the exposed ones are. */
export function cveRows(fleet: readonly PatchOnFleet[], cve?: string): CveRow[] {
  return fleetCvePosture(fleet.map(coverageOf))
    .filter((c) => cve === undefined || c.id === cve)
    .map((c) => ({
      ...c,
      exposedNodes: c.exposed.map((node) => ({
        node,
        kernelRelease: releaseOf(fleet, node),
        patches: fleet
          .filter((p) => p.cves.includes(c.id) && p.nodes.has(node))
          .map((p) => {
            const e = p.nodes.get(node);
            return { patch: p.name, phase: e?.phase ?? NOT_REPORTED, reason: e?.reason };
          }),
      })),
    }));
}

export interface NodeRow {
  readonly node: string;
  readonly kernelRelease?: string | undefined;
  readonly livePatches: readonly string[];
  readonly cves: readonly string[];
  readonly taintFlags?: string | undefined;
  /** Patches that failed or stalled here. */
  readonly failedPatches: readonly string[];
}

/**
 * One row per node a patch targets or has an entry on, or with a KernelLivePatchNode: the patches
 * live in its kernel, the CVEs they fix, and its taint. The release and taint are the node's, not
 * a patch's: its most recently written entry says them (the taint is sticky until reboot).
 */
export function nodeRows(fleet: readonly PatchOnFleet[], snapshot: FleetSnapshot): NodeRow[] {
  const live = new Map(nodeCves(fleet.map(coverageOf)).map((n) => [n.node, n]));
  const names = new Set([...snapshot.nodeObjects.map((n) => n.metadata.name), ...live.keys(), ...fleet.flatMap((p) => [...p.nodes.keys()])]);
  return [...names].sort(compare).map((node) => {
    const entries = entriesOf(fleet, node);
    const latest = entries[0]?.e;
    return {
      node,
      kernelRelease: latest?.kernelRelease,
      livePatches: live.get(node)?.livePatches ?? [],
      cves: live.get(node)?.cves ?? [],
      taintFlags: latest?.taintFlags,
      failedPatches: entries.filter(({ e }) => FAILED_PHASES.includes(e.phase)).map(({ patch }) => patch).sort(compare),
    };
  });
}

/** A node's entries across the patches, the most recently written first. */
function entriesOf(fleet: readonly PatchOnFleet[], node: string): Array<{ patch: string; e: NodeEntry }> {
  return fleet
    .flatMap((p) => {
      const e = p.nodes.get(node);
      return e ? [{ patch: p.name, e }] : [];
    })
    .sort((a, b) => compare(b.e.lastTransitionTime ?? "", a.e.lastTransitionTime ?? ""));
}

/** The node's kernel release, as its latest entry with one says. */
function releaseOf(fleet: readonly PatchOnFleet[], node: string): string | undefined {
  return entriesOf(fleet, node).find(({ e }) => e.kernelRelease)?.e.kernelRelease;
}

/** The nodes where a patch failed or stalled (what spec.retry tries again). */
export function failedNodes(p: PatchOnFleet): string[] {
  return [...p.nodes].filter(([, e]) => e !== undefined && FAILED_PHASES.includes(e.phase)).map(([n]) => n);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
