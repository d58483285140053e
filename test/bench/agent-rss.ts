/**
 * `npm run bench:agent-rss`: the agent's idle memory, beside both baselines, measured in one run.
 *   1. a bare Node process;
 *   2. a Node process that imported @kubernetes/client-node (what the agent would cost with it);
 *   3. the bundled agent (dist/node-agent.mjs), connected to a real API server, watching its Node
 *      and its KernelLivePatchNode projecting N KernelLivePatches (one loaded on its simulated
 *      host), after it has gone idle. No operator runs: the benchmark writes the node object's
 *      projection as the operator would (its own projectNode), every patch admitted.
 * Prints RSS in MiB and the agent's CPU over the idle window.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { GROUP, KernelLivePatch, NODE_KIND, API_VERSION } from "../../crds/schema.ts";
import { projectNode } from "../../operator/nodes/projection.ts";
import { buildSimModule } from "../../node-agent/sim/build-module.ts";
import { layoutSimHost } from "../../node-agent/sim/layout.ts";
import { imageNodeFlags } from "./scale/fleet.ts";
import { controlPlaneBinaries, ensureBinaries, freePorts, startControlPlane } from "../../scripts/dev/control-plane/index.ts";

const REPO = path.resolve(import.meta.dirname, "../..");
const PATCHES = Number(process.env.PATCHES ?? 10);
const IDLE_MS = Number(process.env.IDLE_MS ?? 15_000);

function status(pid: number): { rssKiB: number; cpuTicks: number } {
  const rss = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return { rssKiB: Number(rss), cpuTicks: Number(stat[11]) + Number(stat[12]) };
}

async function settledRss(child: ChildProcess, ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return status(child.pid!).rssKiB;
}

const mib = (kib: number) => (kib / 1024).toFixed(1);

async function main(): Promise<void> {
  const node = process.execPath;
  const bare = spawn(node, ["-e", "setInterval(() => {}, 1000)"]);
  const withClient = spawn(node, ["--input-type=module", "-e", "await import('@kubernetes/client-node'); setInterval(() => {}, 1000)"], { cwd: REPO });
  const bareRss = await settledRss(bare, 3000);
  const clientRss = await settledRss(withClient, 1000);
  bare.kill();
  withClient.kill();

  const binDir = await ensureBinaries(controlPlaneBinaries(false));
  const dir = await mkdtemp(path.join(tmpdir(), "klp-bench-rss-"));
  const cp = await startControlPlane({ dir, binDir, controllers: false, log: () => undefined });
  try {
    for (const plural of ["kernellivepatches", "kernellivepatchnodes"]) {
      await cp.kubectl(["apply", "--server-side", "-f", path.join(REPO, `crds/${GROUP}_${plural}.yaml`)]);
      await cp.kubectl(["wait", "--for=condition=Established", `crd/${plural}.${GROUP}`]);
    }
    await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "Node", metadata: { name: "bench-node", labels: { bench: "yes" } } }) });
    const module = buildSimModule({ name: "bench_fix", vermagic: "6.1.0-56-amd64" });
    const sha = createHash("sha256").update(module).digest("hex");
    await cp.kubectl(["create", "namespace", "bench"]);
    await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: "mods", namespace: "bench" }, binaryData: { "m.ko": module.toString("base64") } }) });
    const patches: KernelLivePatch[] = [];
    for (let i = 0; i < PATCHES; i++) {
      const spec = { modules: [{ kernelRelease: i === 0 ? "6.1.0-56-amd64" : `5.10.0-${i}-amd64`, sha256: sha, configMap: { namespace: "bench", name: "mods", key: "m.ko" } }], rollout: { maxUnavailable: "100%" } };
      await cp.kubectl(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: API_VERSION, kind: "KernelLivePatch", metadata: { name: `bench-${i}` }, spec }) });
      const got = await cp.kubectl(["get", "klp", `bench-${i}`, "-o", "json"]);
      const p = KernelLivePatch.parse(JSON.parse(got.stdout));
      patches.push(p);
    }
    // No operator here: the node admitted for every patch, and the projection onto its
    // KernelLivePatchNode, as the controller writes them.
    const projection = projectNode({ nodeName: "bench-node", labels: { bench: "yes" }, globalSelector: {}, patches, entryOf: () => undefined, admitted: () => true });
    const nodeObject = { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: "bench-node" }, spec: { patches: projection } };
    const applied = await cp.kubectl(["apply", "--server-side", "--field-manager=kpatch-operator", "-f", "-"], { input: JSON.stringify(nodeObject) });
    if (applied.code !== 0) throw new Error(applied.stderr);
    const root = path.join(dir, "host");
    await layoutSimHost(root, { kernelRelease: "6.1.0-56-amd64", transitionMs: 200 });
    // The agent runs with the flags of its image's CMD (images/agent.Dockerfile); AGENT_NODE_FLAGS
    // overrides them to compare settings ("" for none).
    const flags = (process.env.AGENT_NODE_FLAGS ?? imageNodeFlags(REPO, "agent").join(" ")).split(" ").filter(Boolean);
    const agent = spawn(node, [...flags, path.join(REPO, "dist/node-agent.mjs")], {
      // Metrics and the probes' endpoints on, as the chart runs it (METRICS_PORT=0 measures without).
      env: { ...process.env, NODE_NAME: "bench-node", KPATCH_HOST_ROOT: root, KPATCH_LOADER: "sim", KUBECONFIG: cp.kubeconfigPath, LOG_LEVEL: "warn", METRICS_PORT: process.env.METRICS_PORT ?? String((await freePorts(1))[0]) },
      stdio: ["ignore", "inherit", "inherit"],
    });
    const start = Date.now();
    for (;;) {
      const r = await cp.kubectl(["get", "kernellivepatchnodes", "bench-node", "-o", `jsonpath={.status.entries[?(@.patch=="bench-0")].phase}`]);
      if (r.stdout === "Loaded") break;
      if (Date.now() - start > 60_000) throw new Error("the agent did not load the bench patch");
      await new Promise((r) => setTimeout(r, 200));
    }
    const before = status(agent.pid!);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const after = status(agent.pid!);
    const ticksPerSec = 100;
    const cpuPct = (((after.cpuTicks - before.cpuTicks) / ticksPerSec) / (IDLE_MS / 1000)) * 100;
    agent.kill("SIGTERM");
    console.log("\nagent idle memory (Node " + process.version + ")");
    console.log(`  bare node process                   ${mib(bareRss).padStart(7)} MiB`);
    console.log(`  node + @kubernetes/client-node      ${mib(clientRss).padStart(7)} MiB`);
    console.log(`  kpatch agent${flags.length ? ` (${flags.join(" ")})` : ""}, ${String(PATCHES).padStart(3)} patches on its node object  ${mib(after.rssKiB).padStart(7)} MiB   cpu ${cpuPct.toFixed(2)}% over ${IDLE_MS / 1000} s idle   (goal: <= 64 MiB)`);
  } finally {
    await cp.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

void main();
