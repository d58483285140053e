// A VM-node suite's scenario: timed, failed by any kernel panic nobody announced, and on failure the
// cluster's and the guests' state written beside the run's figures.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { expect, type TestContext } from "vitest";
import type { VmNode } from "../support/vm-node.ts";
import type { VmCluster } from "./vm-cluster.ts";

export interface ScenarioContext {
  /** Why the suite cannot run here (the scenario is skipped), or undefined. */
  skipReason(): string | undefined;
  cluster(): VmCluster | undefined;
  /** The guests; none means they did not start. */
  nodes(): readonly VmNode[];
  /** Where the failure reports go. */
  lastRun: string;
  /** Each scenario's wall time, ms, by name. */
  times: Record<string, number>;
  log(line: string): void;
}

/** What the cluster and each guest look like: a failure's report. */
export async function diagnostics(cluster: VmCluster | undefined, nodes: readonly VmNode[]): Promise<string> {
  const steps: Array<[string, () => Promise<string>]> = [];
  if (cluster) {
    steps.push(["klp", () => cluster.kubectl(["get", "klp", "-o", "yaml"])]);
    steps.push(["klpn", () => cluster.kubectl(["get", "klpn", "-o", "yaml"])]);
    steps.push(["pods", () => cluster.kubectl(["get", "pods", "-A", "-o", "wide"])]);
    steps.push(["events", () => cluster.kubectl(["get", "events", "-A", "--sort-by=.lastTimestamp"])]);
  }
  for (const node of nodes) {
    steps.push([`${node.nodeName} state`, async () => JSON.stringify(await node.state(), null, 1)]);
    steps.push([`${node.nodeName} pods log`, async () => (await node.guestLog("pods")).slice(-6000)]);
    steps.push([`${node.nodeName} kubelet log`, async () => (await node.guestLog("kubelet")).slice(-4000)]);
  }
  const parts: string[] = [];
  for (const [what, f] of steps) {
    try {
      parts.push(`--- ${what}\n${await f()}`);
    } catch (e) {
      parts.push(`--- ${what}: ${String(e)}`);
    }
  }
  return parts.join("\n");
}

/** Runs one scenario of the suite `c`. */
export async function runScenario(c: ScenarioContext, ctx: TestContext, name: string, body: () => Promise<void>): Promise<void> {
  const skip = c.skipReason();
  if (skip) ctx.skip(skip);
  const nodes = c.nodes();
  if (nodes.length === 0) throw new Error("the VM nodes did not start (see beforeAll)");
  const t0 = Date.now();
  c.log(`${name}: start`);
  try {
    await body();
    // A panic nobody announced fails the scenario even when nothing waited on the guest meanwhile.
    for (const node of nodes) expect(node.unexpectedPanics(), `kernel panics nobody expected in ${node.nodeName}`).toEqual([]);
  } catch (e) {
    const report = await diagnostics(c.cluster(), nodes);
    mkdirSync(c.lastRun, { recursive: true });
    writeFileSync(path.join(c.lastRun, `failure-${name.replace(/[^a-z0-9]+/gi, "-")}.txt`), `${String(e)}\n\n${report}`);
    c.log(`${name}: FAILED after ${Date.now() - t0} ms (diagnostics in ${c.lastRun})`);
    throw e;
  } finally {
    c.times[name] = Date.now() - t0;
  }
  c.log(`${name}: ok in ${Date.now() - t0} ms`);
}
