import { describe, expect, it } from "vitest";
import { KernelLivePatchSpec, type KernelLivePatch, type KernelLivePatchNode, type NodeEntry, type NodePatchEntry, type NodePhase } from "../crds/schema.ts";
import { decidePause, decideRetry } from "./actions.ts";
import { cveRows, failedNodes, indexFleet, nodeRows, statusRows, type FleetSnapshot } from "./fleet-view.ts";
import { cveTable, exposedTable, nodeTable, statusTable, structured } from "./render.ts";

const rollout = { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 };
const klp = (name: string, cves: string[] | undefined, matchLabels: Record<string, string> = {}, nodes: NodeEntry[] = [], paused = false): KernelLivePatch => ({
  apiVersion: "livepatch.kpatch.dev/v1alpha1",
  kind: "KernelLivePatch",
  metadata: { name, uid: `uid-${name}` },
  spec: { state: "Loaded", ...(cves ? { cves } : {}), modules: [], nodeSelector: { matchLabels }, rollout: { ...rollout, paused }, transitionTimeoutSeconds: 75 },
  status: { nodes },
});
const entry = (patch: string, phase: NodePhase, over: Partial<NodePatchEntry> = {}): NodePatchEntry => ({
  patch,
  patchUID: `uid-${patch}`,
  nodeName: "",
  phase,
  kernelRelease: "6.1.0-56-amd64",
  moduleName: `livepatch_${patch.replace(/-/g, "_")}`,
  taintFlags: "K",
  lastTransitionTime: "2026-12-03T10:00:00Z",
  ...over,
});
/** A projected spec as the operator writes it; the plugin reads only the patch's name from it. */
const PROJECTED_SPEC = KernelLivePatchSpec.parse({ state: "Loaded", modules: [{ sha256: "a".repeat(64), url: "https://modules.example/p.ko", kernelRelease: "6.1.0-56-amd64" }] });
const klpn = (name: string, projected: string[], entries: NodePatchEntry[]): KernelLivePatchNode => ({
  apiVersion: "livepatch.kpatch.dev/v1alpha1",
  kind: "KernelLivePatchNode",
  metadata: { name },
  spec: { patches: projected.map((p) => ({ name: p, uid: `uid-${p}`, generation: 1, creationTimestamp: "2026-12-03T09:00:00Z", admitted: true, spec: PROJECTED_SPEC })) },
  status: { entries: entries.map((e) => ({ ...e, nodeName: name })) },
});

const NOW = new Date("2026-12-03T10:05:00Z");
/**
 * nft fixes CVE-2024-1086: replaced on n1, failed on n2, no module for n3's kernel, n4 has not
 * reported yet. nft-v2 (cumulative) fixes it and CVE-2024-0002: live on n1, not reported on n2.
 * misc lists no CVE. n5 holds only an entry of an older patch named nft.
 */
const FLEET = { fleet: "yes" };
const SNAPSHOT: FleetSnapshot = {
  patches: [klp("nft", ["CVE-2024-1086"], FLEET), klp("nft-v2", ["CVE-2024-1086", "CVE-2024-0002"], { v2: "yes" }), klp("misc", undefined, { "kubernetes.io/hostname": "n2" })],
  nodeObjects: [
    klpn("n1", ["nft", "nft-v2"], [entry("nft", "Replaced", { taintFlags: "OK" }), entry("nft-v2", "Loaded", { taintFlags: "OK", lastTransitionTime: "2026-12-03T10:01:00Z" })]),
    klpn("n2", ["nft", "nft-v2", "misc"], [entry("nft", "Failed", { reason: "VermagicMismatch" }), entry("misc", "Loaded", { lastTransitionTime: "2026-12-03T09:00:00Z" })]),
    klpn("n3", ["nft"], [entry("nft", "NotApplicable", { kernelRelease: "6.12.0-1-amd64", moduleName: undefined, taintFlags: "" })]),
    // An entry another patch of the same name left behind: not this one's.
    klpn("n5", [], [entry("nft", "Loaded", { patchUID: "uid-old" })]),
  ],
  clusterNodes: [
    { name: "n1", labels: { ...FLEET, v2: "yes", "kubernetes.io/hostname": "n1" } },
    { name: "n2", labels: { ...FLEET, v2: "yes", "kubernetes.io/hostname": "n2" } },
    { name: "n3", labels: { ...FLEET, "kubernetes.io/hostname": "n3" } },
    // Selected, but no object of its own yet (the operator has not projected the patch onto it).
    { name: "n4", labels: { ...FLEET, "kubernetes.io/hostname": "n4" } },
    { name: "n5", labels: { "kubernetes.io/hostname": "n5" } },
    { name: "n6", labels: { "kubernetes.io/hostname": "n6" } },
  ],
};

describe("the fleet views", () => {
  const fleet = indexFleet(SNAPSHOT);

  it("status: a row per patch and node it concerns; a node that has not reported is Pending", () => {
    expect(statusTable(statusRows(fleet, "nft"), NOW, true)).toBe(
      [
        "NODE   RELEASE          PHASE           TAINT   MODULE          SINCE   REASON",
        "n1     6.1.0-56-amd64   Replaced        OK      livepatch_nft   5m      -",
        "n2     6.1.0-56-amd64   Failed          K       livepatch_nft   5m      VermagicMismatch",
        "n3     6.12.0-1-amd64   NotApplicable   -       -               5m      -",
        "n4     -                Pending         -       -               -       -",
        "",
      ].join("\n"),
    );
    expect(statusTable(statusRows(fleet), NOW, false).split("\n")[0]).toBe("PATCH    NODE   RELEASE          PHASE           TAINT   MODULE             SINCE   REASON");
    expect(statusRows(fleet).map((r) => `${r.patch}/${r.node}`)).toEqual(["misc/n2", "nft/n1", "nft/n2", "nft/n3", "nft/n4", "nft-v2/n1", "nft-v2/n2"]);
  });

  it("cves: fixed where any patch listing it is live, exposed where one applies and none is live", () => {
    expect(cveTable(cveRows(fleet))).toBe(
      [
        "CVE             FIXED   EXPOSED   NOT APPLICABLE   PATCHES",
        "CVE-2024-0002   1       1         0                nft-v2",
        "CVE-2024-1086   1       2         1                nft,nft-v2",
        "",
      ].join("\n"),
    );
  });

  it("cves --exposed: each exposed node and where each patch that would fix it stands", () => {
    expect(exposedTable(cveRows(fleet, "CVE-2024-1086"))).toBe(
      [
        "CVE             NODE   RELEASE          PATCHES",
        "CVE-2024-1086   n2     6.1.0-56-amd64   nft Failed (VermagicMismatch), nft-v2 Pending",
        "CVE-2024-1086   n4     -                nft Pending",
        "",
      ].join("\n"),
    );
    expect(exposedTable(cveRows(fleet, "CVE-1999-0001"))).toBe("No exposed nodes.\n");
  });

  it("nodes: what is live in each kernel, its CVEs, its taint (from its latest entry), what failed", () => {
    expect(nodeTable(nodeRows(fleet, SNAPSHOT))).toBe(
      [
        "NODE   RELEASE          LIVE         CVES                          TAINT   FAILED",
        "n1     6.1.0-56-amd64   nft,nft-v2   CVE-2024-0002,CVE-2024-1086   OK      -",
        "n2     6.1.0-56-amd64   misc         -                             K       nft",
        "n3     6.12.0-1-amd64   -            -                             -       -",
        "n4     -                -            -                             -       -",
        "n5     -                -            -                             -       -",
        "",
      ].join("\n"),
    );
  });

  it("-o json carries names and timestamps, not ages", () => {
    const json = JSON.parse(structured(cveRows(fleet, "CVE-2024-1086"), "json")) as unknown;
    expect(json).toEqual([
      {
        id: "CVE-2024-1086",
        patches: ["nft", "nft-v2"],
        fixed: ["n1"],
        exposed: ["n2", "n4"],
        notApplicable: ["n3"],
        exposedNodes: [
          { node: "n2", kernelRelease: "6.1.0-56-amd64", patches: [{ patch: "nft", phase: "Failed", reason: "VermagicMismatch" }, { patch: "nft-v2", phase: "Pending" }] },
          { node: "n4", patches: [{ patch: "nft", phase: "Pending" }] },
        ],
      },
    ]);
    expect(structured(statusRows(fleet, "nft").slice(0, 1), "yaml")).toBe(
      "- patch: nft\n  node: n1\n  kernelRelease: 6.1.0-56-amd64\n  phase: Replaced\n  taintFlags: OK\n  moduleName: livepatch_nft\n  lastTransitionTime: 2026-12-03T10:00:00Z\n",
    );
  });

  it("an empty cluster", () => {
    const none = indexFleet({ patches: [], nodeObjects: [], clusterNodes: [] });
    expect(statusTable(statusRows(none), NOW, false)).toBe("No nodes found.\n");
    expect(cveTable(cveRows(none))).toBe("No KernelLivePatch lists a CVE.\n");
  });

  it("every row comes from the KernelLivePatchNodes, not the patch's status.nodes (a digest of 50 nodes at most, its messages cut)", () => {
    const digest = [{ nodeName: "gone", phase: "Loaded" as const }, { nodeName: "n1", phase: "Failed" as const, message: "cut…" }];
    const fleet2 = indexFleet({
      patches: [klp("nft", ["CVE-2024-1086"], FLEET, digest)],
      nodeObjects: [klpn("n1", ["nft"], [entry("nft", "Failed", { message: "the whole message" })])],
      clusterNodes: [{ name: "n1", labels: FLEET }, { name: "n2", labels: FLEET }],
    });
    expect(statusRows(fleet2).map((r) => [r.node, r.phase])).toEqual([["n1", "Failed"], ["n2", "Pending"]]);
    expect(fleet2[0]!.nodes.get("n1")?.message).toBe("the whole message");
  });

  describe("retry, pause, resume", () => {
    const nft = fleet.find((p) => p.name === "nft")!;
    it("retry sets spec.retry to the time and names the nodes that will try again", () => {
      expect(failedNodes(nft)).toEqual(["n2"]);
      expect(decideRetry(SNAPSHOT.patches[0]!, nft, NOW)).toEqual({
        ok: true,
        patchBody: { spec: { retry: "2026-12-03T10:05:00.000Z" } },
        message: "kernellivepatch/nft retry requested (spec.retry=2026-12-03T10:05:00.000Z); the nodes where it failed or stalled try again: n2; at the pace of spec.rollout.maxUnavailable\n",
      });
    });
    it.each<[string, string, string | undefined]>([
      ["a failed node: the whole patch retries, and it says so", "n2", undefined],
      ["a loaded node: refused", "n1", "n1 is not Failed or Stalled for nft (it is Replaced): nothing to retry there"],
      ["a node not reported yet: refused", "n4", "n4 is not Failed or Stalled for nft (it is Pending): nothing to retry there"],
      ["a node the patch does not concern: refused", "n9", "n9 is not Failed or Stalled for nft (the patch does not concern it): nothing to retry there"],
    ])("retry --node: %s", (_name, node, refusal) => {
      const d = decideRetry(SNAPSHOT.patches[0]!, nft, NOW, node);
      if (refusal) expect(d).toEqual({ ok: false, message: refusal });
      else expect(d).toMatchObject({ ok: true, patchBody: { spec: { retry: NOW.toISOString() } }, message: expect.stringContaining("spec.retry has no node of its own: every node where it failed or stalled tries again: n2") as unknown });
    });
    it.each<[string, boolean, boolean, Record<string, unknown> | undefined, string]>([
      ["pause a running rollout", false, true, { spec: { rollout: { paused: true } } }, "kernellivepatch/p paused: no new node is admitted to change; nodes already changing finish (spec.rollout.paused=true)\n"],
      ["pause a paused one: nothing to write", true, true, undefined, "kernellivepatch/p already paused (spec.rollout.paused=true)\n"],
      ["resume", true, false, { spec: { rollout: { paused: false } } }, "kernellivepatch/p resumed: nodes are admitted again at the pace of spec.rollout.maxUnavailable (spec.rollout.paused=false)\n"],
      ["resume a running one", false, false, undefined, "kernellivepatch/p already running (spec.rollout.paused=false)\n"],
    ])("%s", (_name, pausedNow, pause, body, message) => {
      expect(decidePause(klp("p", undefined, {}, [], pausedNow), pause)).toEqual({ ok: true, ...(body ? { patchBody: body } : {}), message });
    });
  });
});
