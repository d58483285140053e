/**
 * The agent's metrics: what its node's kernel says (taint, live patches), what the agent did to
 * it (host operations by op and result), and how its API connection fares (status writes, watch
 * restarts). Updated by the loop and the watches; rendered on /metrics.
 */
import { MetricSet } from "./exposition.ts";
import type { PatchFacts } from "./patch-facts.ts";

/** The part of a host read the metrics show. */
export interface HostFacts {
  readonly kernelRelease: string;
  readonly bootId: string;
  readonly tainted: number;
  readonly taintFlags: string;
  readonly livepatches: ReadonlyArray<{ readonly name: string; readonly enabled: boolean; readonly transition: boolean }>;
}

export type WatchRestartCause = "error" | "silent" | "expired";

export interface AgentMetrics {
  hostRead(host: HostFacts): void;
  /** Each patch's phase on this node and whether its wanted module is live, as of the last pass. */
  patches(facts: readonly PatchFacts[]): void;
  /** `result` is "success" or the failure's reason code. */
  hostOperation(op: string, result: string, seconds: number): void;
  statusWrite(ok: boolean): void;
  /** A phase change the allowed transitions (crds/phases.ts) do not list; written all the same. */
  disallowedTransition(from: string, to: string): void;
  watchRestart(resource: string, cause: WatchRestartCause): void;
  pass(ok: boolean, at: Date): void;
  render(): string;
}

export interface ProcessFacts {
  readonly rssBytes: () => number;
  readonly cpuSeconds: () => number;
  readonly startTimeSeconds: number;
}

export function nodeProcessFacts(): ProcessFacts {
  return {
    rssBytes: () => process.memoryUsage.rss(),
    cpuSeconds: () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    },
    startTimeSeconds: Math.round(Date.now() / 1000 - process.uptime()),
  };
}

export function agentMetrics(nodeName: string, proc: ProcessFacts = nodeProcessFacts()): AgentMetrics {
  const m = new MetricSet();
  const info = m.gauge("kpatch_agent_node_info", "The node this agent runs on, its kernel release and boot id (value 1)");
  const tainted = m.gauge("kpatch_agent_kernel_tainted", "Raw /proc/sys/kernel/tainted of the node (sticky until reboot)");
  const taintBit = m.gauge("kpatch_agent_kernel_taint_flag", "1 for each taint letter set on the node's kernel (K: livepatched, O: out-of-tree, E: unsigned)");
  const loaded = m.gauge("kpatch_agent_loaded_patches", "Livepatch modules enabled in the node's kernel");
  const enabled = m.gauge("kpatch_agent_livepatch_enabled", "/sys/kernel/livepatch/<module>/enabled per livepatch module in the kernel");
  const transition = m.gauge("kpatch_agent_livepatch_transition", "/sys/kernel/livepatch/<module>/transition per livepatch module in the kernel");
  const patchPhase = m.gauge("kpatch_agent_patch_phase", "This node's phase for each KernelLivePatch that concerns it (value 1; Pending before its first entry)");
  const patchLive = m.gauge(
    "kpatch_agent_patch_live",
    "Per KernelLivePatch that wants its module live on this node (state Loaded, a module for its kernel, rollout admitted): 1 while the fix is in the kernel (module enabled, or Replaced by a cumulative patch), else 0",
  );
  const ops = m.counter("kpatch_agent_host_operations_total", "Host operations by op (install, installAndLoad, unload, removeLeftover, uninstall) and result (success or a reason code)");
  const opSeconds = m.summary("kpatch_agent_host_operation_duration_seconds", "Time spent in host operations, by op");
  const writes = m.counter("kpatch_agent_status_writes_total", "Writes of this node's status entries, by result");
  const disallowed = m.counter(
    "kpatch_agent_disallowed_phase_transitions_total",
    "Entry phase changes the agent wrote that the allowed transitions do not list (a bug, or a host changed behind the agent's back), by from and to",
  );
  const restarts = m.counter("kpatch_agent_watch_restarts_total", "Watches relisted, by resource and cause (error, silent: nothing arrived for too long, expired: 410 Gone)");
  const passes = m.counter("kpatch_agent_passes_total", "Agent passes (read the host, decide, act, report), by result");
  const lastPass = m.gauge("kpatch_agent_last_pass_timestamp_seconds", "When the last agent pass finished");
  const rss = m.gauge("process_resident_memory_bytes", "Resident memory size in bytes");
  const cpu = m.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds");
  const start = m.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds");
  start.set({}, proc.startTimeSeconds);

  return {
    hostRead(host) {
      info.clear();
      info.set({ node: nodeName, kernel_release: host.kernelRelease, boot_id: host.bootId }, 1);
      tainted.set({}, host.tainted);
      taintBit.clear();
      for (const letter of host.taintFlags) taintBit.set({ flag: letter }, 1);
      loaded.set({}, host.livepatches.filter((p) => p.enabled).length);
      enabled.clear();
      transition.clear();
      for (const p of host.livepatches) {
        enabled.set({ module: p.name }, p.enabled ? 1 : 0);
        transition.set({ module: p.name }, p.transition ? 1 : 0);
      }
    },
    patches(facts) {
      patchPhase.clear();
      patchLive.clear();
      for (const f of facts) {
        patchPhase.set({ patch: f.patch, phase: f.phase }, 1);
        if (f.wanted) patchLive.set({ patch: f.patch, module: f.wanted.module }, f.wanted.live ? 1 : 0);
      }
    },
    hostOperation(op, result, seconds) {
      ops.inc({ op, result });
      opSeconds.observe({ op }, seconds);
    },
    statusWrite(ok) {
      writes.inc({ result: ok ? "success" : "error" });
    },
    disallowedTransition(from, to) {
      disallowed.inc({ from, to });
    },
    watchRestart(resource, cause) {
      restarts.inc({ resource, cause });
    },
    pass(ok, at) {
      passes.inc({ result: ok ? "success" : "error" });
      if (ok) lastPass.set({}, at.getTime() / 1000);
    },
    render() {
      rss.set({}, proc.rssBytes());
      cpu.setTotal({}, proc.cpuSeconds());
      return m.render();
    },
  };
}
