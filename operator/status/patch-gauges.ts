import type { CveCount } from "../../crds/cve-posture.ts";
import type { NodeEntry, NodePhase } from "../../crds/schema.ts";

export interface PatchGauges {
  /** Targeted nodes per phase; a targeted node without an entry yet is Pending. */
  readonly byPhase: Record<NodePhase, number>;
  readonly targeted: number;
  readonly ready: boolean;
  readonly halted: boolean;
  /** status.summary.cves: per CVE in spec.cves, the targeted nodes fixed, exposed, not applicable. */
  readonly cves: readonly CveCount[];
}

const ZERO: Record<NodePhase, number> = {
  Pending: 0,
  Staging: 0,
  Staged: 0,
  Loading: 0,
  Loaded: 0,
  Replaced: 0,
  Unloading: 0,
  Unloaded: 0,
  NotApplicable: 0,
  Failed: 0,
  Stalled: 0,
};

/** What the operator's per-patch gauges show, from the entries and the rollout decision. */
export function patchGauges(entries: readonly NodeEntry[], targeted: ReadonlySet<string>, ready: boolean, halted: boolean, cves: readonly CveCount[] = []): PatchGauges {
  const byPhase = { ...ZERO };
  const seen = new Set<string>();
  for (const e of entries) {
    if (!targeted.has(e.nodeName) || seen.has(e.nodeName)) continue;
    seen.add(e.nodeName);
    byPhase[e.phase]++;
  }
  byPhase.Pending += targeted.size - seen.size;
  return { byPhase, targeted: targeted.size, ready, halted, cves };
}
