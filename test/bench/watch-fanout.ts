/**
 * What one KernelLivePatchNode status write costs the API server as the number of agents watching
 * their own object grows. Every agent watches its node's object by `metadata.name` field selector;
 * the question is whether each write is matched against every such watch (work per write that
 * grows with the fleet). W writes to distinct objects, first with no watch open, then with N
 * watches open (one per object, each on its own connection, as the agents hold them); the API
 * server's CPU from /proc per write, each round measured twice.
 *
 *   npm run bench:watch-fanout -- --watchers 3000 --writes 3000
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { NODE_OBJECTS_PATH, type NodePatchEntry } from "../../crds/schema.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { Watcher } from "../../node-agent/kube/watcher.ts";
import { controlPlaneBinaries, ensureBinaries } from "../../scripts/dev/control-plane/index.ts";
import { prepareCluster, RELEASE } from "./scale/cluster.ts";
import { applyEntries, createFloorObjects, loadedEntry } from "./scale/floor.ts";
import { cpuBetween, sampleProc } from "./scale/proc.ts";
import { pool } from "./scale/util.ts";

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { watchers: { type: "string" }, writes: { type: "string" } } });
  const watchers = Number(values.watchers ?? 3000);
  const writes = Number(values.writes ?? 3000);
  const binDir = await ensureBinaries(controlPlaneBinaries(false), log);
  const dir = await mkdtemp(path.join(tmpdir(), "klp-bench-fanout-"));
  const c = await prepareCluster({ dir, binDir, nodes: 1, patches: 1, log });
  const open: Array<{ watcher: Watcher; http: KubeHttp }> = [];
  try {
    const names = await createFloorObjects(c.admin, watchers);
    const apiPid = c.cp.pids()["kube-apiserver"]!;
    let round = 0;
    // W writes over the objects, 16 at a time; the API server's CPU seconds per 1,000 writes.
    const measure = async (): Promise<number> => {
      round++;
      const before = sampleProc(apiPid);
      await pool(Array.from({ length: writes }, (_, i) => names[i % names.length]!), 16, async (node) => {
        const entry: NodePatchEntry = { ...loadedEntry(node, RELEASE, "a".repeat(64), `fanout_${round}`), patch: "p" };
        await applyEntries(c.admin, node, [entry]);
      });
      return (cpuBetween(before, sampleProc(apiPid)) / writes) * 1000;
    };
    const quiet = [await measure(), await measure()];
    log(`no watch open: ${quiet.map((x) => x.toFixed(2)).join(", ")} API server CPU s per 1,000 writes`);
    log(`opening ${watchers} watches, one per object by metadata.name, each on its own connection`);
    let events = 0;
    await pool(names, 32, async (name) => {
      const http = new KubeHttp(c.conn);
      const watcher = new Watcher(http, { path: NODE_OBJECTS_PATH, query: { fieldSelector: `metadata.name=${name}` }, onChange: () => void events++ });
      open.push({ watcher, http });
      await watcher.start();
    });
    const eventsBefore = events;
    const watched = [await measure(), await measure()];
    log(`${watchers} watches open: ${watched.map((x) => x.toFixed(2)).join(", ")} API server CPU s per 1,000 writes (${events - eventsBefore} changes delivered)`);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log("\n| watches open | writes | API server CPU s per 1,000 writes (two rounds) | ratio |");
    console.log("| ---: | ---: | --- | ---: |");
    console.log(`| 0 | ${writes} | ${quiet.map((x) => x.toFixed(2)).join(", ")} | 1.00 |`);
    console.log(`| ${watchers} | ${writes} | ${watched.map((x) => x.toFixed(2)).join(", ")} | ${(mean(watched) / mean(quiet)).toFixed(2)} |`);
  } finally {
    for (const { watcher, http } of open) {
      watcher.stop();
      http.close();
    }
    c.admin.close();
    await c.cp.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
