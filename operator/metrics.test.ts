import { describe, expect, it } from "vitest";
import { operatorMetrics, removePatchGauges, setPatchGauges } from "./metrics.ts";
import type { CvePosture } from "../crds/cve-posture.ts";
import { patchGauges } from "./status/patch-gauges.ts";

describe("operator metrics", () => {
  it("show a patch's nodes per phase, targeted, ready, halted and stalled, and drop them with the patch", async () => {
    const m = operatorMetrics();
    const entries = [
      { nodeName: "a", phase: "Loaded" as const },
      { nodeName: "b", phase: "Stalled" as const },
    ];
    setPatchGauges(m, "p1", patchGauges(entries, new Set(["a", "b", "c"]), false, true));
    setPatchGauges(m, "p2", patchGauges([], new Set(), true, false));
    let text = await m.registry.metrics();
    expect(text).toContain('kpatch_patch_nodes{patch="p1",phase="Loaded"} 1');
    expect(text).toContain('kpatch_patch_nodes{patch="p1",phase="Pending"} 1');
    expect(text).toContain('kpatch_patch_nodes{patch="p1",phase="Failed"} 0');
    expect(text).toContain('kpatch_transitions_stalled{patch="p1"} 1');
    expect(text).toContain('kpatch_rollout_halted{patch="p1"} 1');
    expect(text).toContain('kpatch_patch_targeted_nodes{patch="p1"} 3');
    expect(text).toContain('kpatch_patch_ready{patch="p2"} 1');
    removePatchGauges(m, "p1");
    text = await m.registry.metrics();
    expect(text).not.toContain('patch="p1"');
    expect(text).toContain('kpatch_patch_ready{patch="p2"} 1');
  });

  it("sample the work queue when scraped", async () => {
    const m = operatorMetrics();
    const labels = { name: "q", controller: "q" };
    m.samplers.queue = { labels, sample: () => ({ activeWorkers: 1, unfinishedSeconds: 2.5, longestRunningSeconds: 2 }) };
    const text = await m.registry.metrics();
    expect(text).toContain('workqueue_unfinished_work_seconds{name="q",controller="q"} 2.5');
    expect(text).toContain('workqueue_longest_running_processor_seconds{name="q",controller="q"} 2');
  });

  it("show per patch and CVE how many targeted nodes are fixed, exposed, not applicable; a CVE dropped from spec.cves and a deleted patch lose their series", async () => {
    const m = operatorMetrics();
    const counts = (fixed: number, exposed: number, notApplicable: number) => (id: string) => ({ id, fixed, exposed, notApplicable });
    const g = (cves: ReturnType<ReturnType<typeof counts>>[]) => ({ ...patchGauges([], new Set(), true, false), cves });
    setPatchGauges(m, "p1", g(["CVE-2024-1086", "CVE-2024-0001"].map(counts(2, 1, 1))));
    setPatchGauges(m, "p2", g([counts(0, 3, 0)("CVE-2024-1086")]));
    let text = await m.registry.metrics();
    expect(text).toContain('kpatch_patch_cve_nodes{patch="p1",cve="CVE-2024-1086",state="fixed"} 2');
    expect(text).toContain('kpatch_patch_cve_nodes{patch="p1",cve="CVE-2024-1086",state="exposed"} 1');
    expect(text).toContain('kpatch_patch_cve_nodes{patch="p1",cve="CVE-2024-0001",state="not_applicable"} 1');
    expect(text).toContain('kpatch_patch_cve_nodes{patch="p2",cve="CVE-2024-1086",state="exposed"} 3');
    // spec.cves of p1 loses CVE-2024-0001.
    setPatchGauges(m, "p1", g([counts(3, 0, 1)("CVE-2024-1086")]));
    text = await m.registry.metrics();
    expect(text).not.toContain("CVE-2024-0001");
    expect(text).toContain('kpatch_patch_cve_nodes{patch="p1",cve="CVE-2024-1086",state="fixed"} 3');
    // No CVEs left at all, then p2 deleted.
    setPatchGauges(m, "p1", g([]));
    removePatchGauges(m, "p2");
    text = await m.registry.metrics();
    expect(text).not.toMatch(/^kpatch_patch_cve_nodes\{/m);
  });

  it("show per CVE across the fleet how many nodes are fixed, exposed, not applicable, each node once, as the posture reads when scraped", async () => {
    const m = operatorMetrics();
    let posture: CvePosture[] = [
      { id: "CVE-2024-1086", patches: ["p1", "p2"], fixed: ["a", "b"], exposed: ["c"], notApplicable: [] },
      { id: "CVE-2024-0001", patches: ["p1"], fixed: [], exposed: ["a"], notApplicable: ["d"] },
    ];
    m.samplers.cves = () => posture;
    let text = await m.registry.metrics();
    expect(text).toContain('kpatch_cve_nodes{cve="CVE-2024-1086",state="fixed"} 2');
    expect(text).toContain('kpatch_cve_nodes{cve="CVE-2024-1086",state="exposed"} 1');
    expect(text).toContain('kpatch_cve_nodes{cve="CVE-2024-1086",state="not_applicable"} 0');
    expect(text).toContain('kpatch_cve_nodes{cve="CVE-2024-0001",state="not_applicable"} 1');
    // No patch lists CVE-2024-0001 any more.
    posture = posture.slice(0, 1);
    text = await m.registry.metrics();
    expect(text).not.toContain("CVE-2024-0001");
    expect(text).toContain('kpatch_cve_nodes{cve="CVE-2024-1086",state="fixed"} 2');
  });
});

