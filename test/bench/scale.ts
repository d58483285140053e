/**
 * `npm run bench` (tsx test/bench/scale.ts): the rollout of P patches (maxUnavailable 100%) to N
 * simulated nodes against a real control plane, one run per N, each with its own API server.
 *
 *   --nodes 10,100,1000     fleet sizes (default 10,100; at most 15000, for --seed)
 *   --patches 1             patches applied at once (10 for the operator-memory goal)
 *   --operator tsx          tsx (node --import tsx operator/main.ts) | bundle (the image's esbuild bundle)
 *   --operator-node-flags=".."  node flags for the operator process (default: those of the operator
 *                           image's CMD, images/operator.Dockerfile), e.g. "" to see what they change
 *   --transition-ms 0       the simulated kernel's transition time
 *   --agent-resync-seconds 60   the simulated agents' resync period (the agent's default); on a real
 *                           fleet each agent's resync runs on its own node, here all of them share
 *                           the API server's cores for as long as the rollout lasts
 *   --idle-seconds 10       window for idle RSS/CPU after Ready
 *   --timeout-seconds 900   apply → Ready limit per run
 *   --floor-timeout-seconds 600   limit of each floor measurement
 *   --seed                  instead of a rollout: the operator's and one agent's memory at the
 *                           size a rollout ends at (scale/seed.ts), with --churn writes (default 200)
 *   --out file.json         also write the raw results
 *
 * Every in-process agent watches its own KernelLivePatchNode and its own Node, as in production
 * (scale/fleet.ts). Prints, per run: apply → Ready and the floor it is compared with (scale/floor.ts:
 * the same number of bare status writes as the run made, at the same concurrency, measured after the
 * rollout on the same API server), API requests per node by verb (from the API server's
 * apiserver_request_total), status writes per node, operator and agent RSS/CPU, and where the
 * time goes. The tables are Markdown (docs/benchmarks.md holds the last results).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { SHARD_NODES } from "./scale/fleet-shards.ts";
import { z } from "zod";
import { bundle, RE2JS_ENTRY } from "../../scripts/bundle.ts";
import { controlPlaneBinaries, ensureBinaries } from "../../scripts/dev/control-plane/index.ts";
import { imageNodeFlags } from "./scale/fleet.ts";
import { REPO } from "./scale/cluster.ts";
import { floors, headline, requestsPerNode, seeded, toJson, whereTimeGoes, writesPerNode } from "./scale/report.ts";
import type { OperatorRunner } from "./scale/cluster.ts";
import { runOnce, type RunResult } from "./scale/run.ts";
import { runSeeded, type SeedResult } from "./scale/seed.ts";

const Args = z.object({
  nodes: z
    .string()
    .default("10,100")
    .transform((s) => s.split(",").map((n) => Number(n.trim())))
    .pipe(z.array(z.int().min(2).max(15000)).min(1)),
  patches: z.coerce.number().int().min(1).max(50).default(1),
  operator: z.enum(["tsx", "bundle"]).default("tsx"),
  "operator-node-flags": z.string().optional(),
  "transition-ms": z.coerce.number().int().min(0).default(0),
  "agent-resync-seconds": z.coerce.number().int().min(1).default(60),
  "idle-seconds": z.coerce.number().int().min(1).default(10),
  "timeout-seconds": z.coerce.number().int().min(10).default(900),
  "floor-timeout-seconds": z.coerce.number().int().min(10).default(600),
  seed: z.boolean().default(false),
  churn: z.coerce.number().int().min(1).default(200),
  out: z.string().optional(),
});

/**
 * The simulated agents hold sockets (their requests and two watches each) and open their simulated
 * hosts' files: about 6 descriptors per node at the peak of a rollout, in the process that runs them
 * (this one, or a fleet shard of at most SHARD_NODES agents: fleet-shards.ts); the floors' writers
 * then hold one socket per node here. Past the limit agents fail their loads with EMFILE
 * (HostIOError), which the rollout rightly halts on: a figure of the machine, not of the product, so
 * the run refuses to start instead.
 */
function checkOpenFileLimit(nodes: number): void {
  const needed = Math.max(Math.min(nodes, SHARD_NODES) * 6, nodes) + 2000;
  const soft = Number(/^Max open files\s+(\d+|unlimited)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1]?.replace("unlimited", "Infinity") ?? Infinity);
  if (soft < needed) throw new Error(`--nodes ${nodes} needs about ${needed} open files in one process and this one may open ${soft}: raise the limit first (ulimit -n ${needed}; as root, ulimit -Hn too)`);
}

async function main(): Promise<void> {
  const strings = ["nodes", "patches", "operator", "operator-node-flags", "transition-ms", "agent-resync-seconds", "idle-seconds", "timeout-seconds", "floor-timeout-seconds", "churn", "out"];
  const { values } = parseArgs({
    options: { ...Object.fromEntries(strings.map((k) => [k, { type: "string" as const }])), seed: { type: "boolean" as const } },
  });
  const args = Args.parse(values);
  const log = (line: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
  if (!args.seed) checkOpenFileLimit(Math.max(...args.nodes)); // a seeded run starts one agent process, no simulated fleet
  const binDir = await ensureBinaries(controlPlaneBinaries(false), log);
  const workDir = await mkdtemp(path.join(tmpdir(), "klp-bench-scale-"));
  const agentBundle = path.join(workDir, "node-agent.mjs");
  await bundle("node-agent/main.ts", agentBundle);
  await bundle(RE2JS_ENTRY, path.join(workDir, "re2js.mjs")); // imported by both bundles from beside them
  const operatorBundle = path.join(workDir, "operator.mjs");
  if (args.operator === "bundle") await bundle("operator/main.ts", operatorBundle);

  // Unless told otherwise, the flags of the operator image's CMD: the operator as deployed.
  const nodeFlags = args["operator-node-flags"] !== undefined ? args["operator-node-flags"].split(" ").filter(Boolean) : imageNodeFlags(REPO, "operator");
  const operator: OperatorRunner = args.operator === "tsx" ? { kind: "tsx", nodeFlags } : { kind: "bundle", file: operatorBundle, nodeFlags };
  const results: RunResult[] = [];
  const seededResults: SeedResult[] = [];
  const write = async () => args.out && (await writeFile(args.out, JSON.stringify([...results, ...seededResults].map(toJson), null, 2) + "\n"));
  try {
    for (const nodes of args.nodes) {
      if (args.seed) {
        log(`=== ${nodes} nodes × ${args.patches} patch(es), seeded`);
        const r = await runSeeded({ nodes, patches: args.patches, churn: args.churn, idleSeconds: args["idle-seconds"], operator, agentBundle, binDir, workDir, log });
        seededResults.push(r);
        console.log(`\n${seeded([r])}\n`);
        await write();
        continue;
      }
      log(`=== ${nodes} nodes × ${args.patches} patch(es)`);
      const r = await runOnce({
        nodes,
        patches: args.patches,
        transitionMs: args["transition-ms"],
        agentResyncMs: args["agent-resync-seconds"] * 1000,
        idleSeconds: args["idle-seconds"],
        timeoutSeconds: args["timeout-seconds"],
        floorTimeoutSeconds: args["floor-timeout-seconds"],
        operator,
        agentBundle,
        binDir,
        workDir,
        log,
      });
      results.push(r);
      console.log(`\n${headline([r])}\n`);
      await write();
    }
  } finally {
    if (!process.env.KLP_BENCH_KEEP) await rm(workDir, { recursive: true, force: true });
  }
  console.log(`\n## Results (operator: ${args.operator}${nodeFlags.length ? ` with ${nodeFlags.join(" ")}` : ""}, transition ${args["transition-ms"]} ms)\n`);
  if (results.length) {
    console.log(headline(results));
    console.log("\n### The floor (bare status applies to N KernelLivePatchNodes, N writers at once; measured after the rollout)\n");
    console.log(floors(results));
    console.log("\n### Writes per node (versions seen by the benchmark's watches; API server APPLY counts)\n");
    console.log(writesPerNode(results));
    console.log("\n### API requests per node, by verb (apply → idle)\n");
    console.log(requestsPerNode(results));
    console.log("\n### Where the time goes\n");
    console.log(whereTimeGoes(results));
  }
  if (seededResults.length) console.log(seeded(seededResults));
}

// Ctrl-C or a CI timeout: exit, so the exit hooks stop the operator, the agent process and the control plane.
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
