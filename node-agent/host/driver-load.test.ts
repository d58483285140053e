import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildSimModule, type SimModuleOptions } from "../sim/build-module.ts";
import { configureSimHost } from "../sim/layout.ts";
import { createTestHost, type TestHost } from "../sim/test-host.ts";
import { HostError } from "./host-error.ts";
import { LoaderError, type ModuleLoader } from "./ports.ts";

const RELEASE = "6.1.0-56-amd64";
let host: TestHost;

beforeEach(async () => {
  host = await createTestHost({ freeDelayMs: 150 }); // with the kernel's asynchronous free of disabled patches
});
afterEach(async () => {
  await host.cleanup();
});

function mod(name: string, options: Partial<SimModuleOptions> = {}): Buffer {
  return buildSimModule({ name, vermagic: RELEASE, ...options });
}

async function stage(name: string, options: Partial<SimModuleOptions> = {}) {
  return host.driver.install(mod(name, options), { kernelRelease: RELEASE });
}

async function failure(promise: Promise<unknown>): Promise<HostError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HostError);
  return error as HostError;
}

const read = (p: string) => readFile(path.join(host.root, p), "utf8").then((s) => s.trim());

/** A loader that fails the first `times` calls of `op` with `code`, then delegates. */
function failing(inner: ModuleLoader, op: "insmod" | "rmmod" | "write", code: LoaderError["code"], times = Infinity) {
  let calls = 0;
  const gate = async (target: string, then: () => Promise<void>) => {
    if (calls++ < times) throw new LoaderError(code, op, target, `injected ${code}`);
    return then();
  };
  const loader: ModuleLoader & { calls: () => number } = {
    kind: inner.kind,
    insmod: (f) => (op === "insmod" ? gate(f, () => inner.insmod(f)) : inner.insmod(f)),
    rmmod: (n) => (op === "rmmod" ? gate(n, () => inner.rmmod(n)) : inner.rmmod(n)),
    writeSysfs: (p, v) => (op === "write" ? gate(p, () => inner.writeSysfs(p, v)) : inner.writeSysfs(p, v)),
    refresh: () => inner.refresh?.() ?? Promise.resolve(),
    calls: () => calls,
  };
  return loader;
}

describe("load", () => {
  it("loads a staged patch, waits for the transition and taints OEK", async () => {
    await stage("livepatch_fix");
    const result = await host.driver.load("livepatch_fix");
    expect(result).toMatchObject({ name: "livepatch_fix", replaced: [], alreadyLoaded: false });
    expect(result.transitionMs).toBeGreaterThanOrEqual(2_000);
    expect(await read("/sys/kernel/livepatch/livepatch_fix/enabled")).toBe("1");
    expect(await read("/sys/kernel/livepatch/livepatch_fix/transition")).toBe("0");
    expect(await read("/sys/module/livepatch_fix/taint")).toBe("OEK");
    const state = await host.driver.inspect();
    expect(state).toMatchObject({ tainted: 45056, taintFlags: "OEK" });
    expect(state.livepatches).toEqual([
      expect.objectContaining({ name: "livepatch_fix", enabled: true, transition: false, replace: undefined, state: "enabled" }),
    ]);
    expect(state.modules).toEqual([{ name: "livepatch_fix", refcnt: 1, taint: "OEK", leftover: false }]);
  });

  it("a signed module taints only OK", async () => {
    await stage("signed_fix", { signed: true });
    await host.driver.load("signed_fix");
    expect(await host.driver.inspect()).toMatchObject({ tainted: 36864, taintFlags: "OK" });
  });

  it("accepts dashes in the name and reports an already loaded patch", async () => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch-fix");
    expect(await host.driver.load("livepatch_fix")).toEqual({
      name: "livepatch_fix",
      replaced: [],
      transitionMs: 0,
      alreadyLoaded: true,
    });
  });

  it("loads a module file given directly", async () => {
    const bytes = mod("direct_fix");
    const result = await host.driver.load({ file: "/nonexistent/direct_fix.ko", bytes }).catch((e: unknown) => e);
    // the sim reads the file for insmod: give it a real one
    expect(result).toBeInstanceOf(HostError);
    const { writeFile } = await import("node:fs/promises");
    const file = path.join(host.root, "direct_fix.ko");
    await writeFile(file, bytes);
    expect(await host.driver.load({ file, bytes })).toMatchObject({ name: "direct_fix", alreadyLoaded: false });
  });

  it("resumes waiting for a transition started before an agent restart", async () => {
    const { file } = await stage("livepatch_fix");
    await host.sim.insmod(path.join(host.root, file));
    expect(await read("/sys/kernel/livepatch/livepatch_fix/transition")).toBe("1");
    const result = await host.driver.load("livepatch_fix");
    expect(result).toMatchObject({ alreadyLoaded: true });
    expect(result.transitionMs).toBeGreaterThan(0);
    expect(await read("/sys/kernel/livepatch/livepatch_fix/transition")).toBe("0");
  });

  it.each([
    { case: "not staged", setup: async () => undefined, name: "missing", reason: "NotInstalled" },
    { case: "path traversal", setup: async () => undefined, name: "../../etc/passwd", reason: "InvalidModuleName" },
    { case: "over-long name", setup: async () => undefined, name: "x".repeat(60), reason: "InvalidModuleName" },
  ])("$case → $reason", async ({ setup, name, reason }) => {
    await setup();
    expect((await failure(host.driver.load(name))).reason).toBe(reason);
  });

  it("refuses a direct file built for another release or not a livepatch", async () => {
    const other = mod("old", { vermagic: "6.1.0-55-amd64" });
    expect((await failure(host.driver.load({ file: "/x/old.ko", bytes: other }))).reason).toBe("VermagicMismatch");
    const plain = mod("plain", { livepatch: false });
    expect((await failure(host.driver.load({ file: "/x/plain.ko", bytes: plain }))).reason).toBe("NotALivepatch");
  });

  it.each([
    { config: { signatureEnforce: true }, reason: "SignatureRejected" },
    { config: { lockdown: "integrity" as const }, reason: "LockdownDenied" },
    { config: { modulesDisabled: true }, reason: "ModulesDisabled" },
    { config: { livepatchSupported: false }, reason: "LivepatchUnsupported" },
    { config: { ftraceEnabled: false }, reason: "FtraceDisabled" },
  ])("host $config → $reason, nothing loaded", async ({ config, reason }) => {
    await stage("livepatch_fix");
    await configureSimHost(host.root, config);
    expect((await failure(host.driver.load("livepatch_fix"))).reason).toBe(reason);
    const state = await host.driver.inspect();
    expect(state.livepatches).toEqual([]);
    expect(state.modules).toEqual([]);
  });

  it.each([
    { config: { signatureEnforce: true }, reason: "SignatureRejected", message: "rejected the signature of livepatch_fix" },
    { config: { lockdown: "integrity" as const }, reason: "LockdownDenied", message: "livepatch_fix: it is signed, but not by a key this kernel trusts" },
  ])("a module signed by a key the kernel does not hold, host $config → $reason, nothing loaded", async ({ config, reason, message }) => {
    await stage("livepatch_fix", { signed: true, untrustedKey: true });
    await configureSimHost(host.root, config);
    const error = await failure(host.driver.load("livepatch_fix"));
    expect(error.reason).toBe(reason);
    expect(error.message).toContain(message);
    expect((await host.driver.inspect()).modules).toEqual([]);
  });

  it("loads a signed module under signature enforcement and lockdown", async () => {
    await stage("signed_fix", { signed: true });
    await configureSimHost(host.root, { signatureEnforce: true, lockdown: "confidentiality" });
    expect(await host.driver.load("signed_fix")).toMatchObject({ alreadyLoaded: false });
  });

  it.each([
    { code: "ENOEXEC", reason: "InvalidModuleFormat" },
    { code: "ENOENT", reason: "UnknownSymbol" },
    { code: "EINVAL", reason: "InvalidParameters" },
    { code: "ESRCH", reason: "InvalidParameters" },
    { code: "EEXIST", reason: "AlreadyLoaded" },
    { code: "EPERM", reason: "PermissionDenied" },
    { code: "EKEYREJECTED", reason: "SignatureRejected" },
    { code: "EIO", reason: "LoadFailed" },
  ] as const)("insmod $code → $reason with the errno in details", async ({ code, reason }) => {
    await stage("livepatch_fix");
    const error = await failure(host.driverWith(failing(host.sim, "insmod", code)).load("livepatch_fix"));
    expect(error.reason).toBe(reason);
    expect(error.details).toMatchObject({ errno: code });
    expect(error.cause).toBeInstanceOf(LoaderError);
  });

  it("retries insmod on EBUSY and succeeds once the kernel is free", async () => {
    await stage("livepatch_fix");
    const loader = failing(host.sim, "insmod", "EBUSY", 2);
    const start = host.clock.now();
    await host.driverWith(loader).load("livepatch_fix");
    expect(loader.calls()).toBe(3);
    expect(host.clock.now() - start).toBeGreaterThanOrEqual(4_000);
  });

  it("gives up after 5 EBUSY answers, 2 s apart", async () => {
    await stage("livepatch_fix");
    const loader = failing(host.sim, "insmod", "EBUSY");
    const start = host.clock.now();
    expect((await failure(host.driverWith(loader).load("livepatch_fix"))).reason).toBe("Busy");
    expect(loader.calls()).toBe(5);
    expect(host.clock.now() - start).toBe(8_000);
  });

  it("waits out another patch's transition (the kernel answers EBUSY)", async () => {
    await configureSimHost(host.root, { transitionMs: 5_000 });
    const first = await stage("first_fix");
    await stage("second_fix");
    await host.sim.insmod(path.join(host.root, first.file));
    const result = await host.driver.load("second_fix");
    expect(result.alreadyLoaded).toBe(false);
    expect((await host.driver.inspect()).livepatches.map((p) => p.state)).toEqual(["enabled", "enabled"]);
  });
});

describe("atomic replace", () => {
  it("reports the replaced patch and leaves its module for removal", async () => {
    await stage("fix_v1");
    await stage("fix_v2", { replace: true });
    await host.driver.load("fix_v1");
    const result = await host.driver.load("fix_v2");
    expect(result.replaced).toEqual(["fix_v1"]);
    // Right after the transition the kernel has disabled fix_v1 and frees its directory a moment later.
    const now = await host.driver.inspect();
    expect(now.livepatches.map((p) => [p.name, p.state])).toEqual([
      ["fix_v1", "disabled"],
      ["fix_v2", "enabled"],
    ]);
    host.clock.advance(150);
    const state = await host.driver.inspect();
    expect(state.livepatches.map((p) => p.name)).toEqual(["fix_v2"]);
    expect(state.modules).toContainEqual({ name: "fix_v1", refcnt: 0, taint: "OEK", leftover: true });
    expect(await host.driver.removeLeftover("fix_v1")).toEqual({ name: "fix_v1", removed: true });
    expect(await host.driver.removeLeftover("fix_v1")).toEqual({ name: "fix_v1", removed: false });
    expect((await host.driver.inspect()).modules.map((m) => m.name)).toEqual(["fix_v2"]);
  });

  it("a patch reversed by another hand while this load waits out its transition (EBUSY) is not reported replaced", async () => {
    await configureSimHost(host.root, { transitionMs: 3_000 });
    const first = await stage("first_fix");
    await stage("second_fix");
    await host.sim.insmod(path.join(host.root, first.file)); // its transition runs for 3 s
    let reversed = false;
    const loader: ModuleLoader = {
      ...host.sim,
      insmod: async (file) => {
        // As the agent's first insmod meets the running transition, an admin reverses that patch.
        if (!reversed) {
          reversed = true;
          await host.sim.writeSysfs("/sys/kernel/livepatch/first_fix/enabled", "0");
        }
        return host.sim.insmod(file);
      },
    };
    const result = await host.driverWith(loader).load("second_fix");
    expect(reversed).toBe(true);
    expect(result.replaced).toEqual([]);
    expect((await host.driver.inspect()).livepatches.map((p) => [p.name, p.state])).toEqual([["second_fix", "enabled"]]);
  });

  it("a non-replace patch stacks on top", async () => {
    await stage("fix_a");
    await stage("fix_b");
    await host.driver.load("fix_a");
    expect((await host.driver.load("fix_b")).replaced).toEqual([]);
  });

  it("removeLeftover waits for a replaced patch's directory to go", async () => {
    await stage("fix_v1");
    await stage("fix_v2", { replace: true });
    await host.driver.load("fix_v1");
    await host.driver.load("fix_v2");
    expect(await host.driver.removeLeftover("fix_v1")).toEqual({ name: "fix_v1", removed: true });
  });

  it("removeLeftover refuses an active patch", async () => {
    await stage("fix_a");
    await host.driver.load("fix_a");
    expect((await failure(host.driver.removeLeftover("fix_a"))).reason).toBe("ModuleInUse");
  });

  it("loading a replaced patch again removes its leftover module first", async () => {
    await stage("fix_v1");
    await stage("fix_v2", { replace: true });
    await host.driver.load("fix_v1");
    await host.driver.load("fix_v2");
    expect(await host.driver.load("fix_v1")).toMatchObject({ alreadyLoaded: false, replaced: [] });
    expect((await host.driver.inspect()).livepatches.map((p) => p.name).sort()).toEqual(["fix_v1", "fix_v2"]);
  });
});

describe("stalled transition", () => {
  it("reverses it, reports the blocking tasks and leaves nothing loaded", async () => {
    await stage("livepatch_fix");
    await configureSimHost(host.root, { stall: true });
    const writes: string[] = [];
    const recording: ModuleLoader = {
      ...host.sim,
      writeSysfs: (p, v) => {
        writes.push(`${p}=${v}`);
        return host.sim.writeSysfs(p, v);
      },
    };
    const start = host.clock.now();
    const error = await failure(host.driverWith(recording).load("livepatch_fix"));
    expect(error.reason).toBe("TransitionStalled");
    expect(host.clock.now() - start).toBeGreaterThanOrEqual(75_000);
    expect(error.details).toMatchObject({ reversed: true, removed: true });
    expect(error.message).toBe(
      "the livepatch transition of livepatch_fix did not finish within 75000 ms; 2 task(s) blocked it; it was reversed",
    );
    expect(error.details?.stalledTasks).toEqual([
      { pid: 4242, tid: 4242, comm: "stuck-worker", patchState: 0, stack: expect.stringContaining("klp_sim_wait_event") },
      { pid: 4242, tid: 4243, comm: "stuck-worker", patchState: 0, stack: expect.stringContaining("klp_sim_wait_event") },
    ]);
    expect(writes).toEqual(["/sys/kernel/livepatch/livepatch_fix/enabled=0"]);
    const state = await host.driver.inspect();
    expect(state.livepatches).toEqual([]);
    expect(state.modules).toEqual([]);
    expect(existsSync(path.join(host.root, "/proc/4242"))).toBe(false);
  });

  it("a stalled transition found after an agent restart is reversed and removed too", async () => {
    const { file } = await stage("livepatch_fix");
    await configureSimHost(host.root, { stall: true });
    await host.sim.insmod(path.join(host.root, file));
    const error = await failure(host.driver.load("livepatch_fix"));
    expect(error).toMatchObject({ reason: "TransitionStalled", details: { reversed: true, removed: true } });
    expect((await host.driver.inspect()).modules).toEqual([]);
  });

  it("honours a shorter timeout", async () => {
    await stage("livepatch_fix");
    await configureSimHost(host.root, { stall: true });
    const start = host.clock.now();
    await failure(host.driver.load("livepatch_fix", { transitionTimeoutMs: 5_000 }));
    expect(host.clock.now() - start).toBeLessThan(20_000);
  });

  it("writes signal after 15 s on kernels that have the attribute, never force", async () => {
    await stage("livepatch_fix");
    await configureSimHost(host.root, { stall: true, signalAttribute: true });
    const writes: string[] = [];
    const recording: ModuleLoader = {
      ...host.sim,
      writeSysfs: (p, v) => {
        writes.push(`${p}=${v}`);
        return host.sim.writeSysfs(p, v);
      },
    };
    await failure(host.driverWith(recording).load("livepatch_fix"));
    expect(writes).toEqual(["/sys/kernel/livepatch/livepatch_fix/signal=1", "/sys/kernel/livepatch/livepatch_fix/enabled=0"]);
    expect((await host.sim.state()).signals).toBe(1);
  });
});
