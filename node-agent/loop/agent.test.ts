/**
 * The agent loop end to end on a simulated host, with the API replaced by an in-memory copy of the
 * resources behind the agent's own narrow port (the real API server is exercised by the
 * integration suite).
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { API_VERSION, KIND, type KernelLivePatch as ApiPatch, type KernelLivePatchStatus, type NodeEntry } from "../../crds/schema.ts";
import { buildIdSysfsPath, parseBuildIdNote } from "../host/build-id.ts";
import { parseModule } from "../host/parse-module.ts";
import { buildSimModule } from "../sim/build-module.ts";
import { configureSimHost, rebootSimHost } from "../sim/layout.ts";
import { createTestHost, type TestHost } from "../sim/test-host.ts";
import { Agent, checkPhaseChange, type AgentApi, type AgentDeps } from "./agent.ts";
import { agentMetrics } from "./agent-metrics.ts";
import type { Action } from "./plan.ts";
import { HOST_RETRY } from "./retry-schedule.ts";
import type { ModuleSources } from "./sources.ts";

const RELEASE = "6.1.0-56-amd64";
const NODE = "node-a";
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const v1 = buildSimModule({ name: "klp_fix_v1", vermagic: RELEASE });
const v2 = buildSimModule({ name: "klp_fix_v2", vermagic: RELEASE, replace: true });
const wrongRelease = buildSimModule({ name: "klp_other", vermagic: "6.1.0-99-amd64" });
const signed = buildSimModule({ name: "klp_signed", vermagic: RELEASE, signed: true });
/** Another build under v1's module name (what a rebuilt fix looks like). */
const v1Rebuilt = buildSimModule({ name: "klp_fix_v1", vermagic: RELEASE, extraModinfo: [["description", "rebuilt"]] });
const files = new Map<string, Uint8Array>([v1, v2, wrongRelease, signed, v1Rebuilt].map((b) => [sha(b), b]));
/** A digest whose source fails with an unexpected error (not a SourceUnavailable). */
const THROWING_SOURCE = "e".repeat(64);

/**
 * The fake's patch: a KernelLivePatch whose status also keeps the rollout's admitted nodes and the
 * nodes' entries, the operator's decisions and the agent's writes in one object; projected() turns
 * it into what the operator writes onto the node's object.
 */
type KernelLivePatch = Omit<ApiPatch, "status"> & {
  status?: Omit<KernelLivePatchStatus, "rollout"> & { rollout?: { generation: number; admitted: string[]; halted: boolean } };
};

/**
 * What the operator projects of a patch onto the node's object, with the node's entry for it and
 * the version (node-channel.ts delivers these; the agent parses them as ProjectedPatch).
 */
function projected(p: KernelLivePatch) {
  const generation = p.metadata.generation ?? 0;
  const rollout = p.status?.rollout;
  const entry = p.status?.nodes?.find((e) => e.nodeName === NODE);
  return {
    patch: {
      name: p.metadata.name,
      uid: p.metadata.uid ?? "",
      generation,
      creationTimestamp: p.metadata.creationTimestamp ?? "",
      ...(p.metadata.deletionTimestamp ? { deletionTimestamp: p.metadata.deletionTimestamp } : {}),
      admitted: rollout?.generation === generation && rollout.admitted.includes(NODE),
      spec: p.spec,
    },
    ...(entry ? { entry } : {}),
    ...(p.metadata.resourceVersion !== undefined ? { resourceVersion: p.metadata.resourceVersion } : {}),
  };
}

/**
 * How the fake API server spells resourceVersions: the API says they are opaque (equal or not,
 * never older or newer), so the agent must work with any spelling.
 */
type VersionSpelling = (revision: number) => string;
const counter: VersionSpelling = (n) => String(n);

/** In-memory resources: entries applied by the agent are merged like server-side apply would. */
class FakeCluster implements AgentApi {
  readonly patches = new Map<string, KernelLivePatch>();
  readonly writes: Array<{ patch: string; phase: string; sha256?: string | undefined }> = [];
  readonly events: Array<{ patch: string; type: string; reason: string }> = [];
  agent: Agent | undefined;
  /** Every version of every patch, as a watch could deliver it late. */
  readonly history: KernelLivePatch[] = [];
  private created = 0;
  private revision = 0;

  constructor(private readonly version: VersionSpelling = counter) {}

  add(name: string, module: Uint8Array, extra: Partial<KernelLivePatch["spec"]> = {}, admitted = true): void {
    const p: KernelLivePatch = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name, generation: 1, creationTimestamp: `2026-01-01T00:00:0${this.created++}Z`, uid: name },
      spec: {
        state: "Loaded",
        modules: [{ kernelRelease: RELEASE, sha256: sha(module), url: `https://example.invalid/${name}.ko` }],
        rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 0 },
        transitionTimeoutSeconds: 75,
        ...extra,
      },
      status: { rollout: { generation: 1, admitted: admitted ? [NODE] : [], halted: false } },
    };
    this.patches.set(name, p);
    this.push();
  }

  change(name: string, f: (p: KernelLivePatch) => void): void {
    const p = structuredClone(this.patches.get(name)!);
    f(p);
    p.metadata.resourceVersion = this.version(++this.revision);
    this.patches.set(name, p);
    this.history.push(structuredClone(p));
    this.push();
  }

  entry(name: string): NodeEntry | undefined {
    return this.patches.get(name)?.status?.nodes?.find((e) => e.nodeName === NODE);
  }

  async applyEntry(patch: string, entry: NodeEntry): Promise<string | undefined> {
    this.writes.push({ patch, phase: entry.phase, sha256: entry.sha256 });
    this.change(patch, (p) => {
      p.status ??= {};
      p.status.nodes = [...(p.status.nodes ?? []).filter((e) => e.nodeName !== entry.nodeName), entry];
    });
    const version = this.patches.get(patch)?.metadata.resourceVersion;
    duringWrite?.(entry);
    return version;
  }

  /** Delivers an older version of a patch, as a lagging watch does. */
  replay(version: KernelLivePatch): void {
    this.agent?.updatePatches(structuredClone([...[...this.patches.values()].filter((p) => p.metadata.name !== version.metadata.name), version]).map(projected));
  }

  event(patch: { name: string }, type: string, reason: string): void {
    this.events.push({ patch: patch.name, type, reason });
  }

  push(): void {
    this.agent?.updatePatches(structuredClone([...this.patches.values()]).map(projected));
  }
}

/** Runs while a write is in flight, after the server applied it: a late delivery before the answer (the test unsets it). */
let duringWrite: ((entry: NodeEntry) => void) | undefined;
let fetches = 0;
/** Runs inside a fetch, before it answers: a delivery that lands while a pass awaits. */
let duringFetch: (() => void) | undefined;
const sources: ModuleSources = {
  async fetch(m) {
    fetches++;
    if (m.sha256 === THROWING_SOURCE) throw new TypeError("Invalid URL");
    const hook = duringFetch;
    duringFetch = undefined;
    hook?.();
    const bytes = files.get(m.sha256);
    // A digest nobody published stands for a source that serves other bytes.
    return bytes ?? v1;
  },
};

let host: TestHost;
afterEach(async () => host?.cleanup());

/** Phase changes the agents of these tests wrote that crds/phases.ts does not allow: none, in every test. */
const disallowed: string[] = [];
afterEach(() => {
  expect(disallowed.splice(0), "phase changes outside the allowed transitions (crds/phases.ts)").toEqual([]);
});

async function setup(options: Parameters<typeof createTestHost>[0] = {}, version?: VersionSpelling, agentOptions: Pick<AgentDeps, "now" | "random"> = {}) {
  host = await createTestHost(options);
  const cluster = new FakeCluster(version);
  const actions: Array<{ patch: string; action: Action; outcome: string }> = [];
  const crashes: string[] = [];
  const metrics = agentMetrics(NODE);
  const start = () => {
    const agent = new Agent({
      metrics: {
        ...metrics,
        disallowedTransition: (from, to) => {
          disallowed.push(`${from} → ${to}`);
          metrics.disallowedTransition(from, to);
        },
      },
      crashAt: (point) => crashes.push(point),
      nodeName: NODE,
      driver: host.driver,
      api: cluster,
      sources,
      log: host.log,
      onAction: (patch, action, outcome) => actions.push({ patch, action, outcome }),
      ...agentOptions,
    });
    cluster.agent = agent;
    agent.updateNode({ "kubernetes.io/hostname": NODE });
    cluster.push();
    return agent;
  };
  const settle = async (agent: Agent) => {
    for (let i = 0; i < 50; i++) {
      await agent.idle();
      await new Promise((r) => setTimeout(r, 5));
      if (!(agent as unknown as { running?: unknown }).running) break;
    }
    await agent.idle();
  };
  return { cluster, actions, crashes, start, settle };
}

const staged = (name: string) => existsSync(path.join(host.root, "var/lib/kpatch", RELEASE, `${name}.ko`));
const live = (name: string) => existsSync(path.join(host.root, "sys/kernel/livepatch", name));
const inKernel = (name: string) => existsSync(path.join(host.root, "sys/module", name));

describe("agent loop on a simulated host", () => {
  it("stages and loads an admitted patch in two status writes, reporting the kernel's taint", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", moduleName: "klp_fix_v1", enabled: true, transition: false, tainted: 45056, taintFlags: "OEK", kernelRelease: RELEASE });
    expect(cluster.writes.map((w) => w.phase)).toEqual(["Loading", "Loaded"]);
    expect(staged("klp_fix_v1") && live("klp_fix_v1")).toBe(true);
    await agent.stop();
  });

  it.each<[string, VersionSpelling]>([
    ["counted up (as the API server spells them today)", counter],
    ["opaque (not numbers)", (n) => createHash("sha256").update(String(n)).digest("base64url").slice(0, 12)],
    ["numbers that go down (the API promises no order)", (n) => String(1_000_000 - n)],
  ])("resourceVersions %s: a watch event older than its own write does not make it write the same entry again, a newer one is believed", async (_spelling, version) => {
    const { cluster, start, settle } = await setup({}, version);
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.writes.map((w) => w.phase)).toEqual(["Loading", "Loaded"]);
    // The version the Loading write produced arrives now, after the Loaded write.
    const loading = cluster.history.find((p) => p.status?.nodes?.some((e) => e.phase === "Loading"))!;
    cluster.replay(loading);
    await settle(agent);
    expect(cluster.writes.map((w) => w.phase)).toEqual(["Loading", "Loaded"]);
    // A newer version that no longer has the entry (someone removed it) is believed: written again.
    cluster.change("p1", (p) => (p.status!.nodes = []));
    await settle(agent);
    expect(cluster.writes.map((w) => w.phase)).toEqual(["Loading", "Loaded", "Loaded"]);
    await agent.stop();
  });

  it("its earlier write delivered late while the next write is in flight: the pass after it does not write that next entry again", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    // As on a saturated API server: the watch brings the Loading version while the Loaded write
    // has landed but not been answered yet, and nothing newer comes before the next pass.
    duringWrite = (entry) => {
      if (entry.phase !== "Loaded") return;
      duringWrite = undefined;
      cluster.replay(cluster.history.find((p) => p.status?.nodes?.some((e) => e.phase === "Loading"))!);
    };
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.writes.map((w) => w.phase)).toEqual(["Loading", "Loaded"]);
    await agent.stop();
  });

  it("a signed module taints 36864 (O and K, no E)", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", signed);
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", tainted: 36864, taintFlags: "OK" });
    await agent.stop();
  });

  it("does nothing before admission", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1, {}, false);
    await settle(agent);
    expect(cluster.writes).toEqual([]);
    expect(staged("klp_fix_v1")).toBe(false);
    await agent.stop();
  });

  it("refuses a module whose digest differs from the pinned one: Failed, nothing staged", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1, { modules: [{ kernelRelease: RELEASE, sha256: "f".repeat(64), url: "https://example.invalid/x.ko" }] });
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Failed", reason: "ChecksumMismatch" });
    expect(readdirSync(path.join(host.root, "var/lib/kpatch"))).toEqual([]);
    await agent.stop();
  });

  it("refuses a module built for another release before insmod", async () => {
    const { cluster, actions, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", wrongRelease);
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Failed", reason: "VermagicMismatch" });
    expect(inKernel("klp_other")).toBe(false);
    expect(actions).toEqual([]);
    await agent.stop();
  });

  it("a patch delivered while a pass awaits does not swap that pass's patches and views", async () => {
    const { cluster, actions, start, settle } = await setup();
    const agent = start();
    // While the pass fetches p-good's module, p-bad arrives and sorts first (older).
    duringFetch = () => {
      cluster.add("p-bad", wrongRelease);
      cluster.change("p-bad", (p) => void (p.metadata.creationTimestamp = "2025-01-01T00:00:00Z"));
    };
    cluster.add("p-good", v1);
    await settle(agent);
    expect(cluster.entry("p-good")).toMatchObject({ phase: "Loaded" });
    expect(cluster.entry("p-bad")).toMatchObject({ phase: "Failed", reason: "VermagicMismatch" });
    // The refusal came from the check before any host action, never from acting on p-bad.
    expect(actions.map((a) => `${a.patch} ${a.action.op} ${a.outcome}`)).toEqual(["p-good installAndLoad ok", "p-good install ok"]);
    await agent.stop();
  });

  it("reports NotApplicable when no module matches the node's kernel", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1, { modules: [{ kernelRelease: "5.10.0-1-amd64", sha256: sha(v1), url: "https://example.invalid/a.ko" }] });
    await settle(agent);
    expect(cluster.entry("p1")?.phase).toBe("NotApplicable");
    await agent.stop();
  });

  it("two patches, the second a cumulative replace: second Loaded, first Replaced, no flapping, one load each", async () => {
    const { cluster, actions, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    cluster.add("p2", v2);
    await settle(agent);
    expect(cluster.entry("p2")).toMatchObject({ phase: "Loaded", moduleName: "klp_fix_v2" });
    expect(cluster.entry("p1")).toMatchObject({ phase: "Replaced", replacedBy: "p2" });
    const loads = actions.filter((a) => a.action.op === "installAndLoad").map((a) => a.patch);
    expect(loads).toEqual(["p1", "p2"]);
    const p1Phases = cluster.writes.filter((w) => w.patch === "p1").map((w) => w.phase);
    expect(p1Phases).toEqual(["Loading", "Loaded", "Replaced"]);
    expect(inKernel("klp_fix_v1") || staged("klp_fix_v1")).toBe(false);
    // The replacing patch goes away: the replaced one, still desired Loaded, comes back.
    cluster.change("p2", (p) => (p.spec.state = "Unloaded"));
    await settle(agent);
    expect(cluster.entry("p2")?.phase).toBe("Unloaded");
    expect(cluster.entry("p1")?.phase).toBe("Loaded");
    expect(live("klp_fix_v1")).toBe(true);
    await agent.stop();
  });

  it("one patch whose spec moves from v1 to the cumulative v2: v2 live, v1 out of the kernel and off the disk, two writes", async () => {
    const { cluster, actions, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", moduleName: "klp_fix_v1" });
    const writesBefore = cluster.writes.length;
    cluster.change("p1", (p) => {
      p.metadata.generation = 2;
      p.spec.modules = [{ kernelRelease: RELEASE, sha256: sha(v2), url: "https://example.invalid/v2.ko" }];
      p.status!.rollout = { generation: 2, admitted: [NODE], halted: false };
    });
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", moduleName: "klp_fix_v2" });
    expect(cluster.entry("p1")?.previousModuleName).toBeUndefined();
    expect(live("klp_fix_v2")).toBe(true);
    expect(inKernel("klp_fix_v1") || staged("klp_fix_v1")).toBe(false);
    expect(cluster.writes.slice(writesBefore).map((w) => w.phase)).toEqual(["Loading", "Loaded"]);
    expect(actions.filter((a) => a.patch === "p1").map((a) => `${a.action.op} ${"module" in a.action ? a.action.module.name : a.action.name}`)).toEqual([
      "installAndLoad klp_fix_v1",
      "install klp_fix_v1", // staged for boot once live (no soak here)
      "installAndLoad klp_fix_v2",
      "install klp_fix_v2",
      "removeLeftover klp_fix_v1",
      "uninstall klp_fix_v1",
    ]);
    await agent.stop();
  });

  it("Staged installs without loading; Unloaded restores the host", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1, { state: "Staged" });
    await settle(agent);
    expect(cluster.entry("p1")?.phase).toBe("Staged");
    expect(staged("klp_fix_v1") && !inKernel("klp_fix_v1")).toBe(true);
    cluster.change("p1", (p) => ((p.spec.state = "Loaded"), (p.metadata.generation = 2), (p.status!.rollout = { generation: 2, admitted: [NODE], halted: false })));
    await settle(agent);
    expect(cluster.entry("p1")?.phase).toBe("Loaded");
    cluster.change("p1", (p) => ((p.spec.state = "Unloaded"), (p.metadata.generation = 3), (p.status!.rollout = { generation: 3, admitted: [NODE], halted: false })));
    await settle(agent);
    expect(cluster.entry("p1")?.phase).toBe("Unloaded");
    expect(inKernel("klp_fix_v1") || staged("klp_fix_v1")).toBe(false);
    expect(readdirSync(path.join(host.root, "var/lib/kpatch"))).toEqual([]);
    await agent.stop();
  });

  it("unloads and uninstalls when the patch is being deleted", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    cluster.change("p1", (p) => (p.metadata.deletionTimestamp = "2026-01-02T00:00:00Z"));
    await settle(agent);
    expect(cluster.entry("p1")?.phase).toBe("Unloaded");
    expect(live("klp_fix_v1") || staged("klp_fix_v1")).toBe(false);
    await agent.stop();
  });

  it("an agent restarted after the load but before its status write reports Loaded without loading twice", async () => {
    const { cluster, actions, start, settle } = await setup();
    // The first agent dies right after its host action: its status write never happens.
    cluster.add("p1", v1);
    const first = start();
    await settle(first);
    await first.stop();
    cluster.change("p1", (p) => (p.status!.nodes = [{ ...cluster.entry("p1")!, phase: "Loading" }]));
    const loadsBefore = actions.filter((a) => a.action.op === "installAndLoad").length;
    const second = start();
    await settle(second);
    expect(cluster.entry("p1")?.phase).toBe("Loaded");
    expect(actions.filter((a) => a.action.op === "installAndLoad").length).toBe(loadsBefore);
    await second.stop();
  });

  it("a stalled transition is reversed and reported with its tasks", async () => {
    const { cluster, start, settle } = await setup({ stall: true });
    const agent = start();
    cluster.add("p1", v1, { transitionTimeoutSeconds: 15 });
    await settle(agent);
    const e = cluster.entry("p1");
    expect(e).toMatchObject({ phase: "Stalled", reason: "TransitionStalled" });
    expect(e?.stalledTasks?.length).toBeGreaterThan(0);
    expect(live("klp_fix_v1")).toBe(false);
    await agent.stop();
  });

  it("a refused module is final: not fetched again and its entry not rewritten on later passes", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1, { modules: [{ kernelRelease: RELEASE, sha256: "f".repeat(64), url: "https://example.invalid/x.ko" }] });
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Failed", reason: "ChecksumMismatch" });
    const [writes, fetched] = [cluster.writes.length, fetches];
    for (let i = 0; i < 3; i++) {
      cluster.push();
      await settle(agent);
    }
    expect(cluster.writes.length).toBe(writes);
    expect(fetches).toBe(fetched);
    // Announced once, as a Warning.
    expect(cluster.events).toEqual([{ patch: "p1", type: "Warning", reason: "ChecksumMismatch" }]);
    await agent.stop();
  });

  it("holds still while its Node object is gone, and resumes when it is back", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    agent.updateNode(undefined);
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.writes).toEqual([]);
    expect(agent.loopState().nodeKnown).toBe(false);
    agent.updateNode({ "kubernetes.io/hostname": NODE });
    await settle(agent);
    expect(cluster.entry("p1")?.phase).toBe("Loaded");
    await agent.stop();
  });

  it("passes every crash point of a load and an unload, in order", async () => {
    const { cluster, crashes, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    cluster.change("p1", (p) => ((p.spec.state = "Unloaded"), (p.metadata.generation = 2), (p.status!.rollout = { generation: 2, admitted: [NODE], halted: false })));
    await settle(agent);
    expect(cluster.entry("p1")?.phase).toBe("Unloaded");
    // The second before-stage/after-stage pair: the live module staged for boot after its soak.
    expect(crashes).toEqual(["before-stage", "after-stage", "after-load", "before-stage", "after-stage", "before-unload", "after-unload"]);
    await agent.stop();
  });
});

describe("faults stay where they happen and the status never lies", () => {
  const liveBuildId = (name: string) => parseBuildIdNote(readFileSync(path.join(host.root, buildIdSysfsPath(name).slice(1))));
  const buildIdOf = (bytes: Uint8Array) => (parseModule(bytes) as { ok: true; module: { buildId: string } }).module.buildId;
  const nextGeneration = (p: KernelLivePatch) => {
    p.metadata.generation = (p.metadata.generation ?? 1) + 1;
    p.status!.rollout = { generation: p.metadata.generation, admitted: [NODE], halted: false };
  };

  it("a rebuild under the same module name is never reported Loaded while the old build runs: unload, then load", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(liveBuildId("klp_fix_v1")).toBe(buildIdOf(v1));
    const before = cluster.writes.length;
    cluster.change("p1", (p) => {
      p.spec.modules = [{ kernelRelease: RELEASE, sha256: sha(v1Rebuilt), url: "https://example.invalid/rebuilt.ko" }];
      nextGeneration(p);
    });
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", sha256: sha(v1Rebuilt) });
    expect(liveBuildId("klp_fix_v1")).toBe(buildIdOf(v1Rebuilt));
    expect(cluster.writes.slice(before).map((w) => `${w.phase} ${w.sha256 === sha(v1) ? "old" : "new"}`)).toEqual(["Unloading old", "Loading new", "Loaded new"]);
    await agent.stop();
  });

  it("a livepatch of the same name that the agent did not load is reported, never claimed, never unloaded", async () => {
    const { cluster, actions, start, settle } = await setup();
    const byHand = path.join(host.root, "by-hand.ko");
    writeFileSync(byHand, v1Rebuilt);
    await host.sim.insmod(byHand);
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Failed", reason: "ForeignLivepatch" });
    expect(liveBuildId("klp_fix_v1")).toBe(buildIdOf(v1Rebuilt));
    expect(actions).toEqual([]);
    await agent.stop();
  });

  it("a reboot during the soak (a crash) fails the patch on the node: not loaded again, nothing left in /var/lib/kpatch", async () => {
    const { cluster, actions, start, settle } = await setup();
    let agent = start();
    cluster.add("p1", v1, { rollout: { maxUnavailable: 1, paused: false, failureThreshold: 1, soakSeconds: 3600 } });
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded" });
    expect(staged("klp_fix_v1")).toBe(false); // not staged for boot before the soak is over
    await agent.stop();
    await rebootSimHost(host.root);
    agent = start();
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Failed", reason: "RebootDuringSoak" });
    expect(inKernel("klp_fix_v1")).toBe(false);
    expect(actions.filter((a) => a.action.op === "installAndLoad")).toHaveLength(1);
    expect(readdirSync(path.join(host.root, "var/lib/kpatch"))).toEqual([]);
    await agent.stop();
  });

  it("a reboot while Loading fails the patch on the node naming the reboot, and does not load it again", async () => {
    const { cluster, actions, start, settle } = await setup();
    cluster.add("p1", v1);
    cluster.change("p1", (p) => {
      p.status!.nodes = [{ nodeName: NODE, phase: "Loading", moduleName: "klp_fix_v1", sha256: sha(v1), bootID: "the-boot-that-crashed", observedGeneration: 1 }];
    });
    const agent = start();
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Failed", reason: "RebootDuringLoad" });
    expect(cluster.entry("p1")?.message).toContain("the-boot-that-crashed");
    expect(actions).toEqual([]);
    await agent.stop();
  });

  it("a source that throws fails only its own patch: another patch's Unloaded is still carried out", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p-live", v1);
    await settle(agent);
    cluster.add("p-bad", v1, { modules: [{ kernelRelease: RELEASE, sha256: THROWING_SOURCE, url: "https://example.invalid/bad.ko" }] });
    cluster.change("p-live", (p) => {
      p.spec.state = "Unloaded";
      nextGeneration(p);
    });
    await settle(agent);
    expect(cluster.entry("p-bad")).toMatchObject({ phase: "Failed", reason: "AgentError" });
    expect(cluster.entry("p-live")).toMatchObject({ phase: "Unloaded" });
    expect(inKernel("klp_fix_v1")).toBe(false);
    await agent.stop();
  });

  it("an unload that stalls is retried on a schedule, not back to back: one attempt, a stable Stalled entry", async () => {
    const { cluster, actions, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    await configureSimHost(host.root, { stall: true });
    cluster.change("p1", (p) => {
      p.spec.state = "Unloaded";
      nextGeneration(p);
    });
    await settle(agent);
    for (let i = 0; i < 5; i++) {
      cluster.push(); // watch events do not make it try again before its time
      await settle(agent);
    }
    expect(actions.filter((a) => a.action.op === "unload").map((a) => a.outcome)).toEqual(["TransitionStalled"]);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Stalled", reason: "TransitionStalled" });
    expect(cluster.writes.slice(-2).map((w) => w.phase)).toEqual(["Unloading", "Stalled"]);
    await agent.stop();
  });

  it("retries on the clock and jitter it is given: a stalled unload is tried again exactly when due (half the base delay at jitter 0)", async () => {
    let t = Date.parse("2026-12-03T08:00:00Z");
    const { cluster, actions, start, settle } = await setup({}, undefined, { now: () => new Date(t), random: () => 0 });
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.entry("p1")?.lastTransitionTime).toBe(new Date(t).toISOString());
    await configureSimHost(host.root, { stall: true });
    cluster.change("p1", (p) => {
      p.spec.state = "Unloaded";
      nextGeneration(p);
    });
    await settle(agent);
    const unloads = () => actions.filter((a) => a.action.op === "unload").length;
    expect(unloads()).toBe(1);
    t += HOST_RETRY.baseMs / 2 - 1;
    cluster.push();
    await settle(agent);
    expect(unloads()).toBe(1);
    t += 1;
    cluster.push();
    await settle(agent);
    expect(unloads()).toBe(2);
    await agent.stop();
  });

  it("a patch its node object no longer lists (deleted while the node could not answer): its module comes off the host", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(live("klp_fix_v1") && staged("klp_fix_v1")).toBe(true);
    // The node's object is missing for a while: that says nothing about patches, nothing moves.
    agent.updatePatches([], false);
    await settle(agent);
    expect(live("klp_fix_v1")).toBe(true);
    // The object is back without p1 (the operator stopped waiting for this node and dropped it).
    cluster.patches.delete("p1");
    cluster.push();
    await settle(agent);
    expect(inKernel("klp_fix_v1")).toBe(false);
    expect(readdirSync(path.join(host.root, "var/lib/kpatch"))).toEqual([]);
    await agent.stop();
  });

  it("a patch re-created under the same name is another patch: the old one's module is not kept for it", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1, {}, true);
    await settle(agent);
    // p1 deleted and re-created (new uid) before this node answered; the new one is not admitted yet.
    cluster.patches.delete("p1");
    cluster.add("p1", v2, {}, false);
    cluster.change("p1", (p) => void (p.metadata.uid = "p1-second"));
    await settle(agent);
    expect(inKernel("klp_fix_v1")).toBe(false);
    expect(inKernel("klp_fix_v2")).toBe(false);
    await agent.stop();
  });

  it("an unload waits for the node's turn (maxUnavailable paces unloads too), then goes", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    cluster.change("p1", (p) => {
      p.spec.state = "Unloaded";
      p.metadata.generation = 2;
      p.status!.rollout = { generation: 2, admitted: [], halted: false };
    });
    await settle(agent);
    expect(live("klp_fix_v1")).toBe(true);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", observedGeneration: 1 });
    cluster.change("p1", (p) => void (p.status!.rollout = { generation: 2, admitted: [NODE], halted: false }));
    await settle(agent);
    expect(inKernel("klp_fix_v1")).toBe(false);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Unloaded", observedGeneration: 2 });
    await agent.stop();
  });

  it("a Stalled load is final: a reboot does not retry it, a new spec.retry does", async () => {
    const { cluster, actions, start, settle } = await setup();
    await configureSimHost(host.root, { stall: true });
    let agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Stalled", reason: "TransitionStalled" });
    await agent.stop();
    await rebootSimHost(host.root);
    await configureSimHost(host.root, { stall: false });
    agent = start();
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Stalled" });
    expect(actions.filter((a) => a.action.op === "installAndLoad")).toHaveLength(1);
    cluster.change("p1", (p) => {
      p.spec.retry = "2026-12-03T08:00:00Z";
      p.metadata.generation = 2;
      p.status!.rollout = { generation: 2, admitted: [NODE], halted: false };
    });
    await settle(agent);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", observedGeneration: 2 });
    expect(actions.filter((a) => a.action.op === "installAndLoad")).toHaveLength(2);
    await agent.stop();
  });

  it("a patch that names its kernels by pattern: the agent loads the RE2 engine on demand and matches it", async () => {
    const { releasePatternEngineLoaded } = await import("../../crds/module-for-release.ts");
    expect(releasePatternEngineLoaded()).toBe(false); // no patch used a pattern yet in this file
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1, { modules: [{ kernelReleasePattern: "6\\.1\\.0-[0-9]+-amd64", sha256: sha(v1), url: "https://example.invalid/p1.ko" }] });
    await new Promise((r) => setTimeout(r, 50));
    await settle(agent);
    expect(releasePatternEngineLoaded()).toBe(true);
    expect(cluster.entry("p1")).toMatchObject({ phase: "Loaded", moduleName: "klp_fix_v1" });
    await agent.stop();
  });
});

describe("checkPhaseChange", () => {
  const recorder = () => {
    const logged: unknown[] = [];
    const counted: string[] = [];
    const m = agentMetrics(NODE);
    return {
      logged,
      counted,
      m,
      log: { error: (o: unknown) => void logged.push(o) } as unknown as Parameters<typeof checkPhaseChange>[3],
      metrics: { disallowedTransition: (from: string, to: string) => (counted.push(`${from} → ${to}`), m.disallowedTransition(from, to)) },
    };
  };

  it("lets an allowed change through silently", () => {
    const r = recorder();
    expect(checkPhaseChange("p1", "Loading", "Loaded", r.log, r.metrics)).toBe(true);
    expect(checkPhaseChange("p1", undefined, "Loading", r.log, r.metrics)).toBe(true);
    expect(r.logged).toEqual([]);
    expect(r.counted).toEqual([]);
  });

  it("logs and counts one that is not allowed, and only reports it", () => {
    const r = recorder();
    expect(checkPhaseChange("p1", "NotApplicable", "Stalled", r.log, r.metrics)).toBe(false);
    expect(checkPhaseChange("p1", undefined, "Unloaded", r.log, r.metrics)).toBe(false);
    expect(r.logged).toEqual([
      { patch: "p1", from: "NotApplicable", to: "Stalled" },
      { patch: "p1", from: "none", to: "Unloaded" },
    ]);
    expect(r.counted).toEqual(["NotApplicable → Stalled", "none → Unloaded"]);
    expect(r.m.render()).toContain('kpatch_agent_disallowed_phase_transitions_total{from="NotApplicable",to="Stalled"} 1');
  });

  it("a stopping agent starts no new host operation, even in a pass already running", async () => {
    const { cluster, actions, start, settle } = await setup();
    const agent = start();
    // The stop lands while the pass fetches the module, before it would act.
    duringFetch = () => void agent.stop();
    cluster.add("p1", v1);
    await settle(agent);
    expect(actions).toEqual([]);
    expect(inKernel("klp_fix_v1")).toBe(false);
  });

  it("a gone patch's module whose unload stalls is retried on its schedule, not on every watch event", async () => {
    const { cluster, start, settle } = await setup();
    const agent = start();
    cluster.add("p1", v1);
    await settle(agent);
    await configureSimHost(host.root, { stall: true });
    const unload = host.driver.unload;
    let unloads = 0;
    host.driver.unload = (...args) => ((unloads += 1), unload(...args));
    cluster.patches.delete("p1");
    cluster.push();
    await settle(agent);
    for (let i = 0; i < 5; i++) {
      cluster.push();
      await settle(agent);
    }
    expect(unloads).toBe(1);
    expect(live("klp_fix_v1")).toBe(true);
    await agent.stop();
  });
});
