import { describe, expect, it } from "vitest";
import { agentMetrics } from "./agent-metrics.ts";

const proc = { rssBytes: () => 50 * 1024 * 1024, cpuSeconds: () => 1.25, startTimeSeconds: 1_700_000_000 };
const host = (over: Partial<Parameters<ReturnType<typeof agentMetrics>["hostRead"]>[0]> = {}) => ({
  kernelRelease: "6.1.0-56-amd64",
  bootId: "b-1",
  tainted: 45056,
  taintFlags: "OEK",
  livepatches: [
    { name: "klp_a", enabled: true, transition: false },
    { name: "klp_b", enabled: false, transition: true },
  ],
  ...over,
});

describe("agent metrics", () => {
  it("show what the last host read says: taint, live patches, the node's release", () => {
    const m = agentMetrics("node-1", proc);
    m.hostRead(host());
    const text = m.render();
    expect(text).toContain("kpatch_agent_kernel_tainted 45056");
    expect(text).toContain('kpatch_agent_kernel_taint_flag{flag="K"} 1');
    expect(text).toContain("kpatch_agent_loaded_patches 1");
    expect(text).toContain('kpatch_agent_livepatch_enabled{module="klp_b"} 0');
    expect(text).toContain('kpatch_agent_livepatch_transition{module="klp_b"} 1');
    expect(text).toContain('kpatch_agent_node_info{node="node-1",kernel_release="6.1.0-56-amd64",boot_id="b-1"} 1');
    expect(text).toContain("process_resident_memory_bytes 52428800");
    expect(text).toContain("process_cpu_seconds_total 1.25");
  });

  it("forget modules that left the kernel and taint letters of an earlier boot", () => {
    const m = agentMetrics("node-1", proc);
    m.hostRead(host());
    m.hostRead(host({ bootId: "b-2", tainted: 0, taintFlags: "", livepatches: [] }));
    const text = m.render();
    expect(text).not.toContain("klp_a");
    expect(text).not.toContain("taint_flag{");
    expect(text).not.toContain("b-1");
    expect(text).toContain("kpatch_agent_loaded_patches 0");
  });

  it("count host operations by op and result, status writes, watch restarts and passes", () => {
    const m = agentMetrics("node-1", proc);
    m.hostOperation("installAndLoad", "success", 0.5);
    m.hostOperation("installAndLoad", "TransitionStalled", 75);
    m.hostOperation("installAndLoad", "success", 0.25);
    m.statusWrite(true);
    m.statusWrite(false);
    m.watchRestart("nodes", "silent");
    m.pass(true, new Date(2_000_000));
    m.pass(false, new Date(3_000_000));
    const text = m.render();
    expect(text).toContain('kpatch_agent_host_operations_total{op="installAndLoad",result="success"} 2');
    expect(text).toContain('kpatch_agent_host_operations_total{op="installAndLoad",result="TransitionStalled"} 1');
    expect(text).toContain('kpatch_agent_host_operation_duration_seconds_sum{op="installAndLoad"} 75.75');
    expect(text).toContain('kpatch_agent_host_operation_duration_seconds_count{op="installAndLoad"} 3');
    expect(text).toContain('kpatch_agent_status_writes_total{result="error"} 1');
    expect(text).toContain('kpatch_agent_watch_restarts_total{resource="nodes",cause="silent"} 1');
    expect(text).toContain('kpatch_agent_passes_total{result="error"} 1');
    expect(text).toContain("kpatch_agent_last_pass_timestamp_seconds 2000");
  });
});

describe("agent metrics per patch", () => {
  it("show each patch's phase on the node and whether its wanted module is live, and drop what the last pass no longer lists", () => {
    const m = agentMetrics("node-1", proc);
    m.patches([
      { patch: "p1", phase: "Loaded", wanted: { module: "klp_a", live: true } },
      { patch: "p2", phase: "Failed", wanted: { module: "klp_b", live: false } },
      { patch: "p3", phase: "Staged" },
    ]);
    let text = m.render();
    expect(text).toContain('kpatch_agent_patch_phase{patch="p1",phase="Loaded"} 1');
    expect(text).toContain('kpatch_agent_patch_phase{patch="p3",phase="Staged"} 1');
    expect(text).toContain('kpatch_agent_patch_live{patch="p1",module="klp_a"} 1');
    expect(text).toContain('kpatch_agent_patch_live{patch="p2",module="klp_b"} 0');
    expect(text).not.toContain('kpatch_agent_patch_live{patch="p3"');
    m.patches([{ patch: "p1", phase: "Unloaded" }]);
    text = m.render();
    expect(text).toContain('kpatch_agent_patch_phase{patch="p1",phase="Unloaded"} 1');
    expect(text).not.toContain('phase="Loaded"');
    expect(text).not.toContain("p2");
    expect(text).not.toContain("kpatch_agent_patch_live{");
  });
});
