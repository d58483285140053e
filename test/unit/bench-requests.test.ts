import { describe, expect, it } from "vitest";
import type { RunResult } from "../bench/scale/run.ts";
import { requestsPerNode } from "../bench/scale/report.ts";

/** A run with only what the requests tables read. */
function run(nodes: number, byRequest: Record<string, number>): RunResult {
  const byVerb = new Map<string, number>();
  for (const [kind, n] of Object.entries(byRequest)) byVerb.set(kind.split(" ")[0]!, (byVerb.get(kind.split(" ")[0]!) ?? 0) + n);
  return { nodes, patches: 1, api: { byVerb, byRequest: new Map(Object.entries(byRequest)) } } as unknown as RunResult;
}

/** Five requests per node, 30 per run, and the API server's own growing with the run's duration. */
const perNode = (nodes: number, ownPerRun: number) =>
  run(nodes, {
    "APPLY kernellivepatchnodes/status": 2 * nodes,
    "APPLY kernellivepatchnodes": nodes,
    "GET configmaps": nodes,
    "POST events": nodes + 15,
    "APPLY kernellivepatches/status": 15,
    "PUT leases": ownPerRun,
    "GET endpoints": ownPerRun,
    "GET /openapi/v3": 2 * ownPerRun,
  });

describe("requests per node added", () => {
  it("is the slope between the smallest and the largest run, by this project's clients; the API server's own is shown beside it", () => {
    const out = requestsPerNode([perNode(1000, 2), perNode(5000, 11)]);
    expect(out).toContain("Requests per node added, 1000 → 5000 nodes (goal ≤ 5): **5.00** by this project's clients (5.01 with the API server's own)");
    expect(out).toContain("30 at 1000 (and 8 of the API server's own), 30 at 5000 (and 44 of the API server's own)");
  });

  it("says so when there is one fleet size only", () => {
    expect(requestsPerNode([perNode(1000, 2)])).toContain("needs two fleet sizes");
  });
});
