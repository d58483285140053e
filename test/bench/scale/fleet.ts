/**
 * The simulated fleet: Node objects, one simulated host tree per node (on tmpfs), and the real
 * agent code on each. Agents run in this process (an `Agent` per node, each with its own API
 * connection, as test/support/klp.ts startSimAgent builds them); 1000 agent processes would need
 * ~50 GiB of RAM. One extra node runs the bundled agent as its own process, so one agent's RSS and
 * CPU are measured as they would be on a node.
 *
 * How the in-process agents receive KernelLivePatches:
 *   - "per-agent": each agent has its own watch, as in production (keeping only its own entry, as
 *     node-agent/main.ts does): every status write reaches every agent through the API server (the
 *     fan-out measured in full).
 *   - "shared": one watch in this process feeds every agent the latest objects (its own part),
 *     coalesced (an agent busy with a pass gets the newest set once it is done). The API server
 *     sends each event a few times instead of N times; the agent process still has its own watch.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, open } from "node:fs/promises";
import path from "node:path";
import { pino, type Logger } from "pino";
import { createLoader } from "../../../node-agent/host/create-loader.ts";
import { createHostDriver } from "../../../node-agent/host/driver.ts";
import { readFileSync } from "node:fs";
import { agentApi, ownPart, watchOwnNode, watchPatches } from "../../../node-agent/kube/agent-api.ts";
import type { Connection } from "../../../node-agent/kube/connection.ts";
import { KubeHttp } from "../../../node-agent/kube/http-client.ts";
import type { Watcher } from "../../../node-agent/kube/watcher.ts";
import { Agent } from "../../../node-agent/loop/agent.ts";
import { moduleSources } from "../../../node-agent/loop/sources.ts";
import { layoutSimHost } from "../../../node-agent/sim/layout.ts";
import { failureKind, pool } from "./util.ts";

export type WatchMode = "per-agent" | "shared";

export const nodeName = (i: number) => `bench-node-${String(i).padStart(4, "0")}`;

export async function createNodes(http: KubeHttp, names: readonly string[]): Promise<void> {
  await pool(names, 16, (name) =>
    http.json("POST", "/api/v1/nodes", { body: { apiVersion: "v1", kind: "Node", metadata: { name, labels: { "kubernetes.io/hostname": name, bench: "yes" } } } }),
  );
}

/** Counters of one in-process agent. */
export interface AgentStats {
  /** Watch deliveries (per-agent: events; shared: coalesced sets) handed to updatePatches. */
  deliveries: number;
  /** Status applies and their total latency. */
  writes: number;
  writeMs: number;
  /** Failed status applies (the agent's pass fails and is retried with backoff), by kind. */
  failures: number;
  failureKinds: Record<string, number>;
  /** Status applies by the phase written. */
  phases: Record<string, number>;
  /** ms since the benchmark's t0 when each host action finished, by outcome. */
  actions: Array<{ patch: string; op: string; outcome: string; at: number }>;
}

interface FleetAgent {
  readonly name: string;
  readonly agent: Agent;
  readonly stats: AgentStats;
  readonly watchers: Watcher[];
  readonly http: KubeHttp;
  /** Shared mode: a delivery is running / another one is due. */
  busy: boolean;
  pending: boolean;
}

export interface FleetOptions {
  readonly conn: Connection;
  readonly hostsDir: string;
  readonly kernelRelease: string;
  readonly transitionMs: number;
  readonly mode: WatchMode;
  /** Time origin for action timestamps. */
  readonly clock: () => number;
}

/** N in-process agents on simulated hosts. */
export class Fleet {
  readonly agents: FleetAgent[] = [];
  private latest: unknown[] = [];
  private readonly log: Logger = pino({ level: process.env.KLP_BENCH_LOG ?? "silent" });

  constructor(private readonly opts: FleetOptions) {}

  async start(names: readonly string[]): Promise<void> {
    await pool(names, 32, (name) => layoutSimHost(path.join(this.opts.hostsDir, name), { kernelRelease: this.opts.kernelRelease, transitionMs: this.opts.transitionMs }));
    await pool(names, 16, (name) => this.startAgent(name));
  }

  /** Shared mode: the benchmark's own watch hands every change here. */
  feed(objects: Iterable<unknown>): void {
    this.latest = [...objects];
    for (const a of this.agents) this.deliver(a);
  }

  get passesDone(): number {
    return this.agents.filter((a) => a.agent.lastPassAt > 0).length;
  }

  totals(): Omit<AgentStats, "actions"> & { actions: AgentStats["actions"] } {
    const t: AgentStats = { deliveries: 0, writes: 0, writeMs: 0, failures: 0, failureKinds: {}, phases: {}, actions: [] };
    for (const { stats } of this.agents) {
      t.deliveries += stats.deliveries;
      t.writes += stats.writes;
      t.writeMs += stats.writeMs;
      t.failures += stats.failures;
      for (const [kind, n] of Object.entries(stats.failureKinds)) t.failureKinds[kind] = (t.failureKinds[kind] ?? 0) + n;
      for (const [phase, n] of Object.entries(stats.phases)) t.phases[phase] = (t.phases[phase] ?? 0) + n;
      t.actions.push(...stats.actions);
    }
    return t;
  }

  async stop(): Promise<void> {
    for (const a of this.agents) for (const w of a.watchers) w.stop();
    await Promise.all(this.agents.map((a) => a.agent.stop()));
    for (const a of this.agents) a.http.close();
  }

  private async startAgent(name: string): Promise<void> {
    const root = path.join(this.opts.hostsDir, name);
    const http = new KubeHttp(this.opts.conn);
    const driver = createHostDriver({ hostRoot: root, loader: createLoader(root, "sim"), log: this.log });
    const stats: AgentStats = { deliveries: 0, writes: 0, writeMs: 0, failures: 0, failureKinds: {}, phases: {}, actions: [] };
    const api = agentApi(http, name, this.log);
    const agent = new Agent({
      nodeName: name,
      driver,
      api: {
        event: api.event,
        applyEntry: async (patch, entry) => {
          const started = performance.now();
          try {
            await api.applyEntry(patch, entry);
          } catch (err) {
            stats.failures++;
            const kind = failureKind(err);
            stats.failureKinds[kind] = (stats.failureKinds[kind] ?? 0) + 1;
            throw err;
          }
          stats.writes++;
          stats.writeMs += performance.now() - started;
          stats.phases[entry.phase] = (stats.phases[entry.phase] ?? 0) + 1;
        },
      },
      sources: moduleSources({ http, imageModulesDir: path.join(root, ".images"), maxBytes: 64 << 20 }),
      log: this.log,
      resyncMs: 60_000,
      onAction: (patch, action, outcome) => stats.actions.push({ patch, op: action.op, outcome, at: this.opts.clock() }),
    });
    const a: FleetAgent = { name, agent, stats, http, watchers: [], busy: false, pending: false };
    a.watchers.push(watchOwnNode(http, name, (labels) => agent.updateNode(labels), this.log));
    if (this.opts.mode === "per-agent") {
      a.watchers.push(
        watchPatches(
          http,
          (objects) => {
            stats.deliveries++;
            agent.updatePatches(objects);
          },
          this.log,
          { ownNode: name },
        ),
      );
    }
    this.agents.push(a);
    await Promise.all(a.watchers.map((w) => w.start()));
    if (this.opts.mode === "shared") this.deliver(a);
  }

  /** Coalesced delivery: at most one parse of the newest set per agent pass. */
  private deliver(a: FleetAgent): void {
    if (a.busy) {
      a.pending = true;
      return;
    }
    a.busy = true;
    setImmediate(async () => {
      try {
        do {
          a.pending = false;
          a.stats.deliveries++;
          a.agent.updatePatches(this.latest.map((o) => ownPart(o, a.name)));
          await a.agent.idle();
        } while (a.pending);
      } finally {
        a.busy = false;
      }
    });
  }
}

/** The node flags of the agent image's CMD (images/agent.Dockerfile), so the agent runs as deployed. */
export function agentImageFlags(repo: string): string[] {
  const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(path.join(repo, "images/agent.Dockerfile"), "utf8"))?.[1];
  const argv = cmd ? (JSON.parse(cmd) as string[]) : [];
  return argv.slice(1).filter((a) => a.startsWith("--"));
}

/** One agent as a node runs it: the bundled agent in its own process (the image's node flags), with its own watches. */
export async function startAgentProcess(opts: {
  bundle: string;
  flags: readonly string[];
  name: string;
  root: string;
  kubeconfig: string;
  kernelRelease: string;
  transitionMs: number;
  port: number;
  logFile: string;
}): Promise<ChildProcess> {
  await mkdir(opts.root, { recursive: true });
  await layoutSimHost(opts.root, { kernelRelease: opts.kernelRelease, transitionMs: opts.transitionMs });
  const log = await open(opts.logFile, "a");
  const child = spawn(process.execPath, [...opts.flags, opts.bundle], {
    env: {
      PATH: process.env.PATH ?? "",
      NODE_NAME: opts.name,
      KPATCH_HOST_ROOT: opts.root,
      KPATCH_LOADER: "sim",
      KUBECONFIG: opts.kubeconfig,
      LOG_LEVEL: "warn",
      METRICS_PORT: String(opts.port),
    },
    stdio: ["ignore", log.fd, log.fd],
  });
  await log.close();
  process.once("exit", () => child.kill("SIGKILL")); // never outlive the benchmark
  return child;
}
