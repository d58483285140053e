/**
 * What the plugin shows, computed from one read of the fleet (every KernelLivePatch and every
 * KernelLivePatchNode). Pure: the I/O shell reads, these decide, render.ts prints.
 *
 * A node's entry for a patch is taken from its KernelLivePatchNode (what its agent wrote last),
 * else from the patch's status.nodes (the operator's copy). The nodes a patch concerns are those
 * whose KernelLivePatchNode the operator projected it onto, and those with an entry for it: the
 * targeted nodes, and any it still has to clean up.
 */
import { fleetCvePosture, nodeCves, type CvePosture, type PatchCoverage } from "../crds/cve-posture.ts";
import { FAILED_PHASES } from "../crds/phases.ts";
import type { KernelLivePatch, KernelLivePatchNode, NodeEntry, NodePhase } from "../crds/schema.ts";
import { ofThisPatch } from "./api-names.ts";

export interface FleetSnapshot {
  readonly patches: readonly KernelLivePatch[];
  readonly nodes: readonly KernelLivePatchNode[];
}

/** One patch and what each node it concerns reported (no entry: nothing reported yet). */
export interface PatchOnFleet {
  readonly name: string;
  readonly cves: readonly string[];
  readonly nodes: ReadonlyMap<string, NodeEntry | undefined>;
}

/** The phase shown for a node that has reported nothing for a patch yet. */
const NOT_REPORTED: NodePhase = "Pending";

export function indexFleet(snapshot: FleetSnapshot): PatchOnFleet[] {
  return [...snapshot.patches]
    .sort((a, b) => compare(a.metadata.name, b.metadata.name))
    .map((p) => {
      const { name, uid } = p.metadata;
      const nodes = new Map<string, NodeEntry | undefined>();
      for (const e of p.status?.nodes ?? []) nodes.set(e.nodeName, e);
      for (const n of snapshot.nodes) {
        const node = n.metadata.name;
        const entry = n.status?.entries?.find((e) => e.patch === name && ofThisPatch(e.patchUID, uid));
        const projected = n.spec.patches.some((q) => q.name === name && (q.uid === uid || uid === undefined));
        if (entry) {
          const { patch: _p, patchUID: _u, ...rest } = entry;
          nodes.set(node, { ...rest, nodeName: node });
        } else if (projected && !nodes.has(node)) nodes.set(node, undefined);
      }
      return { name, cves: p.spec.cves ?? [], nodes: new Map([...nodes].sort(([a], [b]) => compare(a, b))) };
    });
}

/** The posture's view of a patch: every node it concerns counts as targeted. */
export function coverageOf(p: PatchOnFleet): PatchCoverage {
  const phases = new Map<string, NodePhase>();
  for (const [node, e] of p.nodes) if (e) phases.set(node, e.phase);
  return { patch: p.name, cves: p.cves, targeted: new Set(p.nodes.keys()), phases };
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
      exposedNodes: c.exposed.map((node) => {
        const listing = fleet.filter((p) => p.cves.includes(c.id) && p.nodes.has(node));
        const entries = listing.map((p) => ({ p, e: p.nodes.get(node) }));
        return {
          node,
          kernelRelease: entries.find(({ e }) => e?.kernelRelease)?.e?.kernelRelease,
          patches: entries.map(({ p, e }) => ({ patch: p.name, phase: e?.phase ?? NOT_REPORTED, reason: e?.reason })),
        };
      }),
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
 * One row per node with a KernelLivePatchNode or an entry: the patches live in its kernel, the
 * CVEs they fix, and its taint. The release and taint are the node's, not a patch's: its most
 * recently written entry says them (the taint is sticky until reboot).
 */
export function nodeRows(fleet: readonly PatchOnFleet[], snapshot: FleetSnapshot): NodeRow[] {
  const live = new Map(nodeCves(fleet.map(coverageOf)).map((n) => [n.node, n]));
  const names = new Set([...snapshot.nodes.map((n) => n.metadata.name), ...live.keys()]);
  return [...names].sort(compare).map((node) => {
    const entries = fleet.flatMap((p) => {
      const e = p.nodes.get(node);
      return e ? [{ patch: p.name, e }] : [];
    });
    const latest = [...entries].sort((a, b) => compare(b.e.lastTransitionTime ?? "", a.e.lastTransitionTime ?? ""))[0]?.e;
    return {
      node,
      kernelRelease: latest?.kernelRelease,
      livePatches: live.get(node)?.livePatches ?? [],
      cves: live.get(node)?.cves ?? [],
      taintFlags: latest?.taintFlags,
      failedPatches: entries.filter(({ e }) => FAILED_PHASES.includes(e.phase)).map(({ patch }) => patch),
    };
  });
}

/** The nodes where a patch failed or stalled (what spec.retry tries again). */
export function failedNodes(p: PatchOnFleet): string[] {
  return [...p.nodes].filter(([, e]) => e !== undefined && FAILED_PHASES.includes(e.phase)).map(([n]) => n);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
