/**
 * The simulated fleet split over processes: each holds about 6 descriptors per agent at the peak of
 * a rollout, and one process may open 20,000 files on this machine (the hard limit, not raisable in
 * its container), so a fleet beyond SHARD_NODES agents runs in forked shards (fleet-shard.ts) of at
 * most that many, each with the same in-process agents as Fleet. Below it, Fleet runs in-process.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { AgentStats, FleetOptions } from "./fleet.ts";
import { Fleet, mergeStats } from "./fleet.ts";

/**
 * The most agents one process runs (about 6 descriptors each, under a 20,000 limit with room for the
 * rest); KLP_BENCH_SHARD_NODES sets it (a small value tries the shards on a small fleet).
 */
export const SHARD_NODES = Number(process.env.KLP_BENCH_SHARD_NODES ?? 2500);

export type ShardRequest =
  | { type: "start"; names: string[]; kubeconfig: string; hostsDir: string; kernelRelease: string; transitionMs: number; resyncMs: number }
  | { type: "totals" }
  | { type: "stop" };
export type ShardReply =
  | { type: "started" }
  | { type: "passes"; n: number }
  | { type: "totals"; stats: AgentStats }
  | { type: "stopped" }
  | { type: "error"; message: string };

/** What the benchmark reads of its fleet, in-process or sharded. */
export interface FleetHandle {
  start(names: readonly string[]): Promise<void>;
  readonly passesDone: number;
  totals(): Promise<AgentStats>;
  stop(): Promise<void>;
  /** The processes the agents run in, for CPU figures (empty: the benchmark's own). */
  readonly pids: number[];
}

export interface FleetChoice extends FleetOptions {
  readonly kubeconfig: string;
  /** Epoch ms (performance.timeOrigin + now) to the run's clock, for the shards' action times. */
  readonly fromEpoch: (epochMs: number) => number;
}

/** How many processes a fleet of `nodes` agents runs in (0: this one). */
export const fleetShards = (nodes: number) => (nodes <= SHARD_NODES ? 0 : Math.ceil(nodes / SHARD_NODES));

export function createFleet(nodes: number, opts: FleetChoice): FleetHandle {
  return fleetShards(nodes) === 0 ? new Fleet(opts) : new ShardedFleet(opts);
}

class Shard {
  passes = 0;
  private readonly waiting = new Map<ShardReply["type"], Array<(m: ShardReply) => void>>();
  private failure: Error | undefined;

  constructor(readonly child: ChildProcess) {
    child.on("message", (m: ShardReply) => {
      if (m.type === "passes") this.passes = m.n;
      if (m.type === "error") this.failure = new Error(`fleet shard ${child.pid}: ${m.message}`);
      for (const f of this.waiting.get(m.type) ?? []) f(m);
      this.waiting.delete(m.type);
    });
    child.on("exit", (code) => {
      this.failure ??= new Error(`fleet shard ${child.pid} exited (${code})`);
    });
  }

  ask<T extends ShardReply["type"]>(req: ShardRequest, reply: T, timeoutMs = 900_000): Promise<Extract<ShardReply, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(this.failure ?? new Error(`fleet shard ${this.child.pid}: no ${reply} within ${timeoutMs / 1000} s`)), timeoutMs);
      const list = this.waiting.get(reply) ?? [];
      list.push((m) => (clearTimeout(timer), resolve(m as Extract<ShardReply, { type: T }>)));
      this.waiting.set(reply, list);
      if (this.failure) return reject(this.failure);
      this.child.send(req);
    });
  }
}

class ShardedFleet implements FleetHandle {
  private shards: Shard[] = [];

  constructor(private readonly opts: FleetChoice) {}

  get pids(): number[] {
    return this.shards.map((s) => s.child.pid!);
  }

  get passesDone(): number {
    return this.shards.reduce((n, s) => n + s.passes, 0);
  }

  async start(names: readonly string[]): Promise<void> {
    const script = fileURLToPath(new URL("./fleet-shard.ts", import.meta.url));
    const count = fleetShards(names.length);
    for (let i = 0; i < count; i++) {
      // The benchmark runs under tsx: the shard inherits its loader flags.
      const child = fork(script, [], { execArgv: process.execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"], env: process.env });
      this.shards.push(new Shard(child));
    }
    const shards = this.shards;
    process.once("exit", () => shards.forEach((s) => s.child.kill("SIGKILL"))); // never outlive the benchmark
    const { kubeconfig, hostsDir, kernelRelease, transitionMs, resyncMs } = this.opts;
    await Promise.all(
      this.shards.map((s, i) => s.ask({ type: "start", names: names.slice(i * SHARD_NODES, (i + 1) * SHARD_NODES), kubeconfig, hostsDir, kernelRelease, transitionMs, resyncMs }, "started")),
    );
  }

  async totals(): Promise<AgentStats> {
    const all = await Promise.all(this.shards.map(async (s) => (await s.ask({ type: "totals" }, "totals", 60_000)).stats));
    return mergeStats(all, this.opts.fromEpoch);
  }

  async stop(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.ask({ type: "stop" }, "stopped", 120_000).catch(() => s.child.kill("SIGKILL"))));
    this.shards = [];
  }
}
