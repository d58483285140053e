import { existsSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildSimModule, type SimModuleOptions } from "../sim/build-module.ts";
import { configureSimHost, rebootSimHost } from "../sim/layout.ts";
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

async function stage(name: string, options: Partial<SimModuleOptions> = {}, kernelRelease = RELEASE) {
  return host.driver.install(buildSimModule({ name, vermagic: kernelRelease, ...options }), { kernelRelease });
}

async function failure(promise: Promise<unknown>): Promise<HostError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HostError);
  return error as HostError;
}

describe("unload", () => {
  it("disables, waits for the transition and removes the module", async () => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch_fix");
    const start = host.clock.now();
    expect(await host.driver.unload("livepatch_fix")).toEqual({ name: "livepatch_fix", disabled: true, removed: true });
    expect(host.clock.now() - start).toBeGreaterThanOrEqual(2_000);
    const state = await host.driver.inspect();
    expect(state.livepatches).toEqual([]);
    expect(state.modules).toEqual([]);
    expect(state.taintFlags).toBe("OEK"); // taint is sticky until reboot
    expect(existsSync(path.join(host.root, "/sys/module/livepatch_fix"))).toBe(false);
  });

  it("is idempotent when nothing is loaded", async () => {
    expect(await host.driver.unload("livepatch_fix")).toEqual({ name: "livepatch_fix", disabled: false, removed: false });
  });

  it("just removes a replaced module", async () => {
    await stage("fix_v1");
    await stage("fix_v2", { replace: true });
    await host.driver.load("fix_v1");
    await host.driver.load("fix_v2");
    expect(await host.driver.unload("fix_v1")).toEqual({ name: "fix_v1", disabled: false, removed: true });
  });

  it("reverses a stalled unpatching: the patch stays enabled and the tasks are reported", async () => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch_fix");
    await configureSimHost(host.root, { stall: true });
    const error = await failure(host.driver.unload("livepatch_fix"));
    expect(error.reason).toBe("TransitionStalled");
    expect(error.details).toMatchObject({ reversed: true });
    expect(error.details?.stalledTasks?.map((t) => t.tid)).toEqual([4242, 4243]);
    expect(error.details?.stalledTasks?.[0]?.patchState).toBe(1);
    const state = await host.driver.inspect();
    expect(state.livepatches).toMatchObject([{ name: "livepatch_fix", enabled: true, transition: false }]);
  });

  it("retries the disable write while another patch is in transition", async () => {
    await configureSimHost(host.root, { transitionMs: 5_000 });
    await stage("fix_a");
    const b = await stage("fix_b");
    await host.driver.load("fix_a");
    await host.sim.insmod(path.join(host.root, b.file)); // fix_b now in transition for 5 s
    expect(await host.driver.unload("fix_a")).toMatchObject({ disabled: true, removed: true });
  });

  it.each([
    { code: "EPERM", reason: "PermissionDenied" },
    { code: "EIO", reason: "HostIOError" },
  ] as const)("a failed disable write ($code) → $reason", async ({ code, reason }) => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch_fix");
    const loader: ModuleLoader = {
      ...host.sim,
      writeSysfs: async (p) => {
        throw new LoaderError(code, "write", p, `injected ${code}`);
      },
    };
    expect((await failure(host.driverWith(loader).unload("livepatch_fix"))).reason).toBe(reason);
  });

  it.each([
    { code: "EWOULDBLOCK", reason: "ModuleInUse" },
    { code: "EPERM", reason: "PermissionDenied" },
    { code: "EIO", reason: "UnloadFailed" },
  ] as const)("a failed rmmod ($code) → $reason", async ({ code, reason }) => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch_fix");
    const loader: ModuleLoader = {
      ...host.sim,
      rmmod: async (n) => {
        throw new LoaderError(code, "rmmod", n, `injected ${code}`);
      },
    };
    expect((await failure(host.driverWith(loader).unload("livepatch_fix"))).reason).toBe(reason);
  });

  it("kernel.modules_disabled=1 set while a patch is live: disabled, its module stays, ModulesDisabled", async () => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch_fix");
    await configureSimHost(host.root, { modulesDisabled: true });
    const error = await failure(host.driver.unload("livepatch_fix"));
    expect(error.reason).toBe("ModulesDisabled");
    expect(error.details).toMatchObject({ errno: "EPERM" });
    const state = await host.driver.inspect();
    expect(state.livepatches).toEqual([]);
    expect(state.modules.map((m) => m.name)).toEqual(["livepatch_fix"]);
  });

  it("an rmmod that finds the module gone is fine", async () => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch_fix");
    const loader: ModuleLoader = {
      ...host.sim,
      rmmod: async (n) => {
        throw new LoaderError("ENOENT", "rmmod", n, "not loaded");
      },
    };
    expect(await host.driverWith(loader).unload("livepatch_fix")).toMatchObject({ disabled: true, removed: false });
  });
});

describe("loadAll / unloadAll", () => {
  it("loads every module staged for the running release in file order, ignoring other releases", async () => {
    await stage("fix_b");
    await stage("fix_a");
    await stage("fix_old", {}, "6.1.0-55-amd64");
    const result = await host.driver.loadAll();
    expect(result.kernelRelease).toBe(RELEASE);
    expect(result.loaded.map((l) => l.name)).toEqual(["fix_a", "fix_b"]);
    expect(result.failed).toEqual([]);
  });

  it("collects failures and goes on", async () => {
    await stage("fix_a");
    await stage("fix_b", { signed: true });
    await configureSimHost(host.root, { signatureEnforce: true });
    const result = await host.driver.loadAll();
    expect(result.loaded.map((l) => l.name)).toEqual(["fix_b"]);
    expect(result.failed).toMatchObject([{ name: "fix_a", reason: "SignatureRejected" }]);
  });

  it("unloads every patch and leftover", async () => {
    await stage("fix_v1");
    await stage("fix_v2", { replace: true });
    await stage("fix_x");
    await host.driver.loadAll();
    const state = await host.driver.inspect();
    expect(state.modules.find((m) => m.name === "fix_v1")?.leftover).toBe(true);
    const result = await host.driver.unloadAll();
    expect(result.unloaded.sort()).toEqual(["fix_v1", "fix_v2", "fix_x"]);
    expect(result.failed).toEqual([]);
    const after = await host.driver.inspect();
    expect(after.livepatches).toEqual([]);
    expect(after.modules).toEqual([]);
  });

  it("reports what it could not unload", async () => {
    await stage("fix_a");
    await host.driver.load("fix_a");
    await configureSimHost(host.root, { stall: true });
    const result = await host.driver.unloadAll({ transitionTimeoutMs: 3_000 });
    expect(result.unloaded).toEqual([]);
    expect(result.failed).toMatchObject([{ name: "fix_a", reason: "TransitionStalled" }]);
  });
});

describe("inspect and reboots", () => {
  it("sees a reboot: new boot id, nothing loaded, taint cleared, staged modules kept", async () => {
    await stage("livepatch_fix");
    await host.driver.load("livepatch_fix");
    const before = await host.driver.inspect();
    await rebootSimHost(host.root);
    const after = await host.driver.inspect();
    expect(after.bootId).not.toBe(before.bootId);
    expect(after).toMatchObject({ tainted: 0, taintFlags: "", livepatches: [], modules: [] });
    expect(after.installed).toMatchObject([{ name: "livepatch_fix", kernelRelease: RELEASE, running: true }]);
  });

  it("after a kernel upgrade the staged module no longer applies", async () => {
    await stage("livepatch_fix");
    await rebootSimHost(host.root, { kernelRelease: "6.1.0-57-amd64" });
    const state = await host.driver.inspect();
    expect(state.kernelRelease).toBe("6.1.0-57-amd64");
    expect(state.installed).toMatchObject([{ name: "livepatch_fix", kernelRelease: RELEASE, running: false }]);
    expect((await failure(host.driver.load("livepatch_fix"))).reason).toBe("NotInstalled");
    expect((await host.driver.loadAll()).loaded).toEqual([]);
  });

  it("shows the replace attribute on kernels that have it", async () => {
    await configureSimHost(host.root, { replaceAttribute: true });
    await stage("fix_v2", { replace: true });
    await host.driver.load("fix_v2");
    expect((await host.driver.inspect()).livepatches).toMatchObject([{ name: "fix_v2", replace: true }]);
  });

  it("shows an enabling patch", async () => {
    const staged = await stage("livepatch_fix");
    await host.sim.insmod(path.join(host.root, staged.file));
    expect((await host.driver.inspect()).livepatches).toMatchObject([{ state: "enabling", transition: true, enabled: true }]);
  });
});
