// Real kernel: proves the node agent's host operations on Debian's kernel under QEMU.
// Boot 1 runs scenarios 1-5 (plus a bare-insmod baseline and a timing comparison) as separate guest
// steps; boot 2 starts from the same persistent disk and runs scenarios 6 (reboot, kpatch.service's
// `load --all`), 7 (a real transition stall), 15 (a load while another patch's transition is in
// progress: EBUSY retried) and 8-11. Each scenario is its own test asserting on the facts
// its guest step reported. See test/kernel/README.md.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { KernelUnavailable, prepareGuest, CACHE, type PreparedGuest } from "./guest-image.ts";
import { arr, expectOk, expectRefused, findInstalled, findModule, findPatch, hostReport, obj, run, taintLetters, type Obj } from "./facts.ts";
import { describePerf, perfFigures, recordPerf } from "./perf-figures.ts";
import { boot, BootTimeout, chooseAccel, consoleTail, type BootOutcome, type StepResult } from "./qemu.ts";

// Under TCG each agent CLI call costs 3-10 s (Node loading the bundle), so boot 1 (~28 calls) can
// take several minutes on a loaded 2-core machine.
const BOOT_TIMEOUT_MS = Number(process.env.KLP_BOOT_TIMEOUT_S ?? 900) * 1000;
/** Any test may be the one that waits for a boot (and boot 2 waits for boot 1). */
const TEST_TIMEOUT_MS = 2 * BOOT_TIMEOUT_MS + 120_000;
const REQUIRED = process.env.KLP_KERNEL_REQUIRED === "1";
/** Each boot's full serial console is kept here for inspection. */
const LAST_RUN = join(CACHE, "last-run");

const V1 = "klp_test_v1";
const V2 = "klp_test_v2";
const TAINT_O = 1 << 12;
const TAINT_E = 1 << 13;
const TAINT_K = 1 << 15;

// ---- suite -----------------------------------------------------------------------------------------
let guest: PreparedGuest | undefined;
let skipReason: string | undefined;
let accel = "tcg";
let accelWhy = "";
let workDir = "";
let disk = "";
let boot1: Promise<BootOutcome> | undefined;
let boot2: Promise<BootOutcome> | undefined;
const finished = new Map<string, BootOutcome>();
const summary: string[] = [];
const suiteStart = performance.now();

function log(line: string): void {
  console.log(`[kernel] ${line}`);
  summary.push(line);
}

function startBoot(plan: string): Promise<BootOutcome> {
  if (!guest) throw new Error("guest not prepared");
  log(`boot ${plan}: starting QEMU (${accel}; ${accelWhy})`);
  return boot({
    vmlinuz: guest.vmlinuz, guestDir: guest.guestDir, disk, plan, accel, timeoutMs: BOOT_TIMEOUT_MS,
    onLine: (l) => {
      if (process.env.KLP_CONSOLE === "1") console.log(`  | ${l}`);
      else if (l.includes("@@RESULT ")) {
        const m = /"step":"([^"]+)","ok":(true|false),"ms":(\d+)/.exec(l);
        if (m) console.log(`[kernel] ${plan}: guest step ${m[1]} ${m[2] === "true" ? "reported" : "THREW"} after ${m[3]} ms`);
      }
    },
  }).then((b) => {
    const m = b.marks;
    log(`boot ${plan}: ${b.wallMs} ms wall, exit ${b.exitCode}; guest uptime at init ${m["init-start"]} s, ` +
      `disks ${m["disks-mounted"]} s, kpatch.service done ${m["service-done"]} s, runner exit ${m["runner-exit"]} s`);
    finished.set(plan, b);
    saveConsole(plan, b.console);
    return b;
  }, (e: unknown) => {
    log(`boot ${plan}: FAILED: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
    if (e instanceof BootTimeout) saveConsole(plan, e.console);
    throw e;
  });
}

function saveConsole(plan: string, text: string): void {
  mkdirSync(LAST_RUN, { recursive: true });
  writeFileSync(join(LAST_RUN, `${plan}.console.log`), text);
}

function getBoot1(): Promise<BootOutcome> {
  boot1 ??= startBoot("boot1");
  return boot1;
}
function getBoot2(): Promise<BootOutcome> {
  // Same disk: only after boot 1 powered off, whatever its outcome.
  boot2 ??= getBoot1().catch(() => undefined).then(() => startBoot("boot2"));
  return boot2;
}

/** Details of a step of a boot that already finished (tests run in order). */
function stepOf(plan: string, name: string): Obj {
  return obj(finished.get(plan)?.results.get(name)?.details);
}

async function step(ctx: TestContext, which: () => Promise<BootOutcome>, name: string): Promise<StepResult & { details: Obj }> {
  if (skipReason) ctx.skip(skipReason);
  const b = await which();
  const r = b.results.get(name);
  if (!r) {
    throw new Error(`guest reported no result for ${name} (plan ${b.plan}, done=${b.done}, exit ${b.exitCode}); console tail:\n${consoleTail(b.console, 40)}`);
  }
  if (!r.ok) throw new Error(`guest step ${name} threw: ${r.error}`);
  return { ...r, details: obj(r.details) };
}

/** Runs one scenario and prints one line with its result and timing. */
function scenario(title: string, which: () => Promise<BootOutcome>, stepName: string, check: (d: Obj, r: StepResult) => void): void {
  it(title, async (ctx) => {
    const r = await step(ctx, which, stepName);
    try {
      check(r.details, r);
      log(`PASS ${title} (guest step ${r.ms} ms)`);
    } catch (e) {
      log(`FAIL ${title} (guest step ${r.ms} ms)`);
      throw e;
    }
  }, TEST_TIMEOUT_MS);
}

describe("real kernel: the agent on Debian's kernel under QEMU", () => {
  beforeAll(async () => {
    try {
      guest = await prepareGuest();
    } catch (e) {
      if (e instanceof KernelUnavailable && !REQUIRED) {
        skipReason = `real-kernel suite skipped: ${e.message}`;
        console.warn(`[kernel] ${skipReason}`);
        return;
      }
      throw e;
    }
    log(`prepared ${guest.krel} (${guest.kversion}) in ${JSON.stringify(guest.timings)}; agent ${guest.agent ?? "MISSING"}`);
    ({ accel, why: accelWhy } = await chooseAccel({ vmlinuz: guest.vmlinuz, guestDir: guest.guestDir, cacheDir: CACHE }));
    workDir = mkdtempSync(join(tmpdir(), "klp-kernel-"));
    disk = join(workDir, "kpatch-disk.img");
    execFileSync("truncate", ["-s", "64M", disk]);
    execFileSync("mkfs.ext4", ["-q", "-F", "-L", "kpatch", disk]);
  });

  afterAll(async () => {
    await Promise.allSettled([boot1, boot2]);
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    if (!skipReason) {
      log(`total wall time ${Math.round(performance.now() - suiteStart)} ms`);
      console.log(`\n[kernel] summary\n${summary.map((l) => `  ${l}`).join("\n")}\n`);
    }
  });

  it("boot 1 reaches the guest runner and reports every step", async (ctx) => {
    if (skipReason) ctx.skip(skipReason);
    const b = await getBoot1();
    const env = b.results.get("env");
    expect(env?.ok, consoleTail(b.console)).toBe(true);
    expect(obj(env?.details).release).toBe(guest?.krel);
    expect(obj(env?.details).hasAgent, "dist/kpatch-agent.mjs is in the guest").toBe(true);
    expect(b.done, `runner did not finish; console tail:\n${consoleTail(b.console)}`).toBe(true);
  }, TEST_TIMEOUT_MS);

  scenario("bare insmod of klp_test_v1 (no agent) patches /proc/cmdline", getBoot1, "bare", (d) => {
    const load = obj(d.load);
    expect(load.rc).toBe(0);
    expect(load.settled).toBe(true);
    expect(obj(d.loaded).cmdline).toBe("klp_test_v1 patched");
    expect(obj(d.loaded).enabled).toBe("1");
    expect(obj(d.after).sysModule).toBe(false);
  });

  scenario("1. install + load v1: /proc/cmdline patched, enabled, taint K/O/E decoded, staged", getBoot1, "s1-install-load", (d) => {
    const release = guest?.krel;
    const install = run(d.install);
    expectOk(install);
    expect(d.stagedAfterInstall).toContain(`${V1}.ko`);
    expect(d.sysModuleAfterInstall, "install does not load").toBe(false);
    expect(d.stagedSha).toBe(d.sourceSha);
    const load = run(d.load);
    expectOk(load);
    expect(obj(load.json).name).toBe(V1);
    const f = obj(d.facts);
    expect(f.cmdline).toBe("klp_test_v1 patched");
    expect(f.enabled).toBe("1");
    expect(f.transition).toBe("0");
    const tainted = Number(f.tainted);
    expect(tainted & (TAINT_K | TAINT_O | TAINT_E)).toBe(TAINT_K | TAINT_O | TAINT_E);
    expect(String(f.moduleTaint)).toMatch(/O/);
    expect(String(f.moduleTaint)).toMatch(/E/);
    expect(String(f.moduleTaint)).toMatch(/K/);
    expect(f.staged).toContain(`${V1}.ko`);
    const status = run(d.status);
    expectOk(status);
    const s = hostReport(status.json);
    expect(s.kernelRelease).toBe(release);
    expect(s.bootId).toBe(f.bootId);
    expect(Number(s.tainted)).toBe(tainted);
    expect(taintLetters(s.taintFlags)).toEqual(expect.arrayContaining(["K", "O", "E"]));
    const p = findPatch(s, V1);
    expect(p, JSON.stringify(s)).toBeDefined();
    expect(p?.enabled).toBe(true);
    expect(p?.transition).toBe(false);
    const inst = findInstalled(s, V1);
    expect(inst, JSON.stringify(s)).toBeDefined();
    expect(inst?.kernelRelease).toBe(release);
    expect(inst?.sha256).toBe(d.sourceSha);
    expect(inst?.running).toBe(true);
    // The real kernel passes the agent's preflight.
    const pre = obj(obj(status.json).preflight);
    expect(pre.livepatchSupported).toBe(true);
    expect(pre.blockers).toEqual([]);
  });

  scenario("2. unload + uninstall: original /proc/cmdline back, gone from /sys/module and /var/lib/kpatch", getBoot1, "s2-unload-uninstall", (d) => {
    const original = String(stepOf("boot1", "env").originalCmdline);
    expectOk(run(d.unload));
    const afterUnload = obj(d.afterUnload);
    expect(afterUnload.cmdline).toBe(original);
    expect(afterUnload.livepatch).toBe(false);
    expect(afterUnload.sysModule).toBe(false);
    expect(afterUnload.staged, "unload does not uninstall").toContain(`${V1}.ko`);
    expectOk(run(d.uninstall));
    const after = obj(d.after);
    expect(after.staged ?? []).not.toContain(`${V1}.ko`);
    expect(after.sysModule).toBe(false);
    expect(after.cmdline).toBe(original);
    const s = hostReport(run(d.list).json);
    expect(findPatch(s, V1)).toBeUndefined();
    expect(findModule(s, V1)).toBeUndefined();
    expect(findInstalled(s, V1)).toBeUndefined();
  });

  scenario("3. v1 with another release's vermagic: VermagicMismatch, never reaches insmod", getBoot1, "s3-vermagic", (d) => {
    expectRefused(run(d.install), ["VermagicMismatch"]);
    expectRefused(run(d.load), ["VermagicMismatch"]);
    const after = obj(d.after);
    expect(after.sysModule).toBe(false);
    expect(after.staged ?? []).not.toContain(`${V1}.ko`);
    // The kernel would have accepted it (modversions skips the release): no load was even tried.
    expect(arr(d.kmsg).filter((l) => String(l).includes(V1))).toEqual([]);
  });

  scenario("4. plain module and truncated file: NotALivepatch / Truncated, never loaded", getBoot1, "s4-not-livepatch-truncated", (d) => {
    expectRefused(run(d.plainInstall), ["NotALivepatch"]);
    expectRefused(run(d.plainLoad), ["NotALivepatch"]);
    const truncReasons = ["Truncated", "NotAnELFModule", "InvalidModuleFormat"];
    expectRefused(run(d.truncInstall), truncReasons);
    expectRefused(run(d.truncLoad), truncReasons);
    expect(obj(d.plain).sysModule).toBe(false);
    expect(obj(d.v1).sysModule).toBe(false);
    expect(obj(d.after).staged ?? []).toEqual([]);
    expect(arr(d.kmsg).filter((l) => /plain_test|klp_test/.test(String(l)))).toEqual([]);
  });

  scenario("5. cumulative replace: v2 replaces v1, v1's leftover module removed by the agent", getBoot1, "s5-replace", (d) => {
    expectOk(run(d.loadV1));
    expect(obj(d.withV1).cmdline).toBe("klp_test_v1 patched");
    const loadV2 = run(d.loadV2);
    expectOk(loadV2);
    expect(obj(loadV2.json).name).toBe(V2);
    expect(arr(obj(loadV2.json).replaced).map((x) => (typeof x === "string" ? x : obj(x).name))).toContain(V1);
    // Right after the replace: v1's patch left sysfs, its module stays (kpatch semantics) as a leftover.
    const replaced = obj(d.afterReplace);
    expect(replaced.cmdline).toBe("klp_test_v2 patched");
    expect(obj(replaced.v1).livepatch).toBe(false);
    expect(replaced.livepatches).toEqual([V2]);
    const leftover = findModule(hostReport(run(d.listAfterReplace).json), V1);
    if (obj(replaced.v1).sysModule) expect(leftover?.leftover, "list reports v1 as a leftover module").toBe(true);
    // The agent removes the leftover (rmmod): gone from /sys/module, v2 untouched.
    expectOk(run(d.unloadV1));
    const after = obj(d.after);
    expect(obj(after.v1).sysModule, "v1's leftover module removed").toBe(false);
    expect(after.cmdline).toBe("klp_test_v2 patched");
    expect(obj(after.v2).enabled).toBe("1");
    expect(obj(after.v2).transition).toBe("0");
    expect(after.livepatches).toEqual([V2]);
  });

  it("agent load time next to bare insmod + transition wait (same module, same guest)", async (ctx) => {
    const r = await step(ctx, getBoot1, "perf");
    const figures = perfFigures(r.details, guest?.krel ?? "?", accel);
    log(describePerf(figures));
    recordPerf(LAST_RUN, figures);
    const first = arr(obj(arr(r.details.rounds)[0]).agentTimeline).map(obj);
    log(`agent load timeline, round 1 (ms after spawn): ${first.map((e) => `${String(e.atMs)} ${String(e.msg)}`).join("; ")}`);
  }, TEST_TIMEOUT_MS);

  scenario("6. reboot: kpatch.service's load --all loads the staged module, new boot id", getBoot2, "s6-reboot", (d) => {
    const b1 = stepOf("boot1", "env").bootId;
    const prep = stepOf("boot1", "prep-reboot");
    expect(finished.get("boot1")?.done, "boot 1 finished and left klp_test_v2 staged on the disk").toBe(true);
    expect(prep.staged).toEqual([`${V2}.ko`]);
    const env2 = stepOf("boot2", "env");
    const service = obj(env2.kpatchService);
    expect(service.rc, JSON.stringify(service)).toBe("0");
    expect(d.bootId).not.toBe(b1);
    expect(d.cmdline).toBe("klp_test_v2 patched");
    expect(obj(d.v2).enabled).toBe("1");
    expect(obj(d.v2).transition).toBe("0");
    expect(obj(d.v1).sysModule).toBe(false);
    const s = hostReport(run(d.list).json);
    expect(s.bootId).toBe(d.bootId);
    expect(findPatch(s, V2)?.enabled).toBe(true);
    const loaded = arr(obj(service.json).loaded).map((x) => (typeof x === "string" ? x : obj(x).name));
    expect(loaded, JSON.stringify(service)).toEqual([V2]);
    log(`kpatch.service (load --all at boot) took ${String(service.uptime)} (guest uptime start/end, s)`);
  });

  scenario("stall fixture without the agent: the transition stays in progress until reversed", getBoot2, "stall-bare", (d) => {
    expect(d.targetRc).toBe(0);
    expect(d.tid).toBeTruthy();
    expect(d.patchRc, String(d.patchStderr)).toBe(0);
    const stalled = obj(d.stalled);
    expect(stalled.enabled).toBe("1");
    expect(stalled.transition, "still in transition after 3 s").toBe("1");
    expect(stalled.threadPatchState, "klp_stall_thread still on the old code").toBe("0");
    expect(d.reversed).toBe(true);
    expect(d.rmPatch).toBe(0);
    expect(d.rmTarget).toBe(0);
    log(`stall fixture: transition still pending after 3 s; reversed in ${String(d.reverseMs)} ms`);
  });

  scenario("7. real transition stall: reversed, TransitionStalled names the blocking task", getBoot2, "s7-stall", (d) => {
    expect(obj(d.targetInsmod).rc).toBe(0);
    expect(d.tid, "klp_stall_thread is running").toBeTruthy();
    expect(String(d.stackBefore)).toContain("klp_stall_wait");
    const load = run(d.load);
    expectRefused(load, ["TransitionStalled"]);
    const details = obj(obj(load.json).details);
    const blocking = arr(details.stalledTasks).map(obj).find((t) => t.comm === "klp_stall_thread");
    expect(blocking, JSON.stringify(details)).toBeDefined();
    expect(String(blocking?.tid ?? blocking?.pid)).toBe(String(d.tid));
    expect(String(blocking?.stack)).toContain("klp_stall_wait");
    expect(details.reversed).toBe(true);
    log(`stall: agent gave up after --transition-timeout 5 and reversed; CLI took ${load.ms} ms; blocking task ` +
      `${String(blocking?.comm)} (tid ${String(blocking?.tid)}) at ${String(blocking?.stack).split("\n")[0]}`);
    const after = obj(d.after);
    expect(obj(after.stall).livepatch, "the agent reversed the transition").toBe(false);
    expect(obj(after.stall).sysModule, "the agent removed the stalled module").toBe(false);
    expect(after.cmdline, "the other patch is untouched").toBe("klp_test_v2 patched");
    expect(obj(after.v2).enabled).toBe("1");
  });
  scenario("15. another patch's transition in progress: the kernel answers EBUSY, the agent retries and loads once it is over", getBoot2, "busy-transition", (d) => {
    const holdMs = Number(d.holdMs);
    // The fixture: the other patch really is held in transition, and the kernel refuses a bare
    // insmod meanwhile with EBUSY (Device or resource busy), logging nothing for it.
    expect(d.targetRc).toBe(0);
    expect(d.stallRc, String(d.stallStderr)).toBe(0);
    expect(obj(d.held)).toMatchObject({ enabled: "1", transition: "1", threadPatchState: "0" });
    const control = obj(d.control);
    expect(control.rc).toBe(1);
    expect(String(control.stderr)).toMatch(/Device or resource busy/);
    expect(arr(control.kmsg).filter((l) => String(l).includes(V1)), "the kernel logs nothing for EBUSY").toEqual([]);
    expect(obj(control.v1After).sysModule).toBe(false);
    // The agent met EBUSY and kept retrying through the hold; the other patch stayed as it was.
    expect(d.sawBusy, "the agent logged an EBUSY retry").toBe(true);
    const before = obj(d.beforeReverse);
    expect(before.agentDone, "the agent was still retrying when the transition was reversed").toBe(false);
    expect(obj(before.stall), "the agent left the other patch's transition alone").toMatchObject({ enabled: "1", transition: "1" });
    expect(before.threadPatchState).toBe("0");
    expect(obj(before.v1).livepatch).toBe(false);
    expect(obj(before.v2)).toMatchObject({ enabled: "1", transition: "0" });
    expect(arr(before.kmsg).filter((l) => /klp_test_stall': unpatching|enabling patch 'klp_test_v1'/.test(String(l)))).toEqual([]);
    expect(d.reverseErr).toBeNull();
    expect(d.reversed).toBe(true);
    expect(d.rmStallRc).toBe(0);
    // The load succeeded, and only after the reversal: the kernel enabled v1 once, after it logged
    // the end of the other transition; the agent took at least the hold from its first EBUSY.
    const load = run(d.load);
    expectOk(load);
    expect(obj(load.json).name).toBe(V1);
    // v1 is no replace patch: it replaced nothing, neither the live v2 nor klp_test_stall, which
    // this step reversed while the agent waited out EBUSY.
    expect(obj(load.json).replaced).toEqual([]);
    const busy = load.stderr.split("\n").filter((l) => l.includes("device or resource busy, retrying"));
    expect(busy.length, load.stderr).toBeGreaterThanOrEqual(1);
    const timeline = arr(d.timeline).map(obj);
    const loadedAt = Number(timeline.find((e) => e.msg === "patch module loaded")?.atMs);
    expect(loadedAt, JSON.stringify(timeline)).toBeGreaterThanOrEqual(Number(d.reverseAtMs));
    expect(loadedAt - Number(d.firstBusyAtMs)).toBeGreaterThanOrEqual(holdMs);
    const kmsg = arr(d.kmsg).map(String);
    const unpatched = kmsg.findIndex((l) => l.includes("'klp_test_stall': unpatching complete"));
    const enabling = kmsg.map((l, i) => (l.includes("enabling patch 'klp_test_v1'") ? i : -1)).filter((i) => i >= 0);
    expect(unpatched, kmsg.join("\n")).toBeGreaterThanOrEqual(0);
    expect(enabling, kmsg.join("\n")).toHaveLength(1);
    expect(enabling[0]).toBeGreaterThan(unpatched);
    const after = obj(d.after);
    expect(obj(after.v1)).toMatchObject({ enabled: "1", transition: "0" });
    expect(obj(after.v2)).toMatchObject({ enabled: "1", transition: "0" });
    expect(obj(after.stall).livepatch).toBe(false);
    expect(after.cmdline).toBe("klp_test_v1 patched");
    expect(after.livepatches).toEqual([V1, V2]);
    // Cleaned up for the steps after it: v1 unloaded by the agent, v2 alone, nothing new on disk.
    expect(d.rmTarget).toBe(0);
    expectOk(run(d.unload));
    const restored = obj(d.restored);
    expect(restored.livepatches).toEqual([V2]);
    expect(obj(restored.v1).sysModule).toBe(false);
    expect(restored.cmdline).toBe("klp_test_v2 patched");
    expect(restored.kpatchTree).toEqual(d.treeBefore);
    const retries = busy.map((l) => String(obj(JSON.parse(l) as unknown).attempt)).join(",");
    log(`busy: bare insmod "${String(control.stderr)}"; agent load: first EBUSY at ${String(d.firstBusyAtMs)} ms after spawn, ` +
      `${busy.length} EBUSY retries (attempts ${retries}), transition reversed at +${holdMs} ms (done in ` +
      `${Number(d.reversedAtMs) - Number(d.reverseAtMs)} ms), loaded at ${loadedAt} ms, ${loadedAt - Number(d.firstBusyAtMs)} ms after the first EBUSY; CLI ${load.ms} ms; its replaced: ${JSON.stringify(obj(load.json).replaced)}`);
  });

  scenario("info: klp_test_v2 describes itself, its staged file and its live patch", getBoot2, "cli-info", (d) => {
    const release = guest?.krel;
    const info = run(d.info);
    expectOk(info);
    const j = obj(info.json);
    expect(j.file).toBe(`/var/lib/kpatch/${release}/${V2}.ko`);
    expect(j.sha256).toBe(d.stagedSha);
    const m = obj(j.module);
    expect(m.name).toBe(V2);
    expect(m.livepatch).toBe(true);
    expect(String(m.vermagic).split(" ")[0]).toBe(release);
    expect(m.signed).toBe(false);
    expect(String(m.buildId)).toMatch(/^[0-9a-f]{40}$/);
    expect(arr(j.installed).map((i) => obj(i).name)).toEqual([V2]);
    expect(obj(arr(j.installed)[0]).running).toBe(true);
    expect(obj(j.livepatch)).toMatchObject({ name: V2, enabled: true, transition: false, buildId: m.buildId });
    expect(obj(j.loaded).name).toBe(V2);
    expect(String(obj(j.loaded).taint)).toMatch(/K/);
    log(`info ${V2}: ${info.ms} ms (CLI)`);
  });

  scenario("unload --all: v2 and v1 stacked on it both disabled and removed, original /proc/cmdline back", getBoot2, "unload-all", (d) => {
    const original = String(stepOf("boot2", "env").originalCmdline);
    expect(obj(d.v1).rc).toBe(0);
    const before = obj(d.before);
    expect(before.livepatches).toEqual([V1, V2]);
    expect(before.cmdline).toBe("klp_test_v1 patched");
    const u = run(d.unloadAll);
    expectOk(u);
    expect(arr(obj(u.json).unloaded).map(String).sort()).toEqual([V1, V2]);
    expect(obj(u.json).failed).toEqual([]);
    const after = obj(d.after);
    expect(after.livepatches).toEqual([]);
    expect(obj(after.v1).sysModule).toBe(false);
    expect(obj(after.v2).sysModule).toBe(false);
    expect(after.cmdline).toBe(original);
    const s = hostReport(run(d.list).json);
    for (const name of [V1, V2]) {
      expect(findPatch(s, name)).toBeUndefined();
      expect(findModule(s, name)).toBeUndefined();
    }
    expect(findInstalled(s, V2), "unload does not uninstall").toBeDefined();
    log(`unload --all of two patches: ${u.ms} ms (CLI)`);
  });

  scenario("kernel.ftrace_enabled=0: the kernel refuses with EBUSY, the agent with FtraceDisabled, nothing left", getBoot2, "refuse-ftrace", (d) => {
    expect(d.livepatchesBefore, "the sysctl needs no live patch").toEqual([]);
    expect(d.setErr).toBeNull();
    expect(d.ftraceEnabled).toBe("0");
    const bare = obj(d.bare);
    expect(bare.rc).toBe(1);
    expect(String(bare.stderr)).toMatch(/Device or resource busy/);
    const kmsg = arr(bare.kmsg).join("\n");
    expect(kmsg).toMatch(/failed to register ftrace handler for function 'cmdline_proc_show' \(-16\)/);
    expect(kmsg).toMatch(/failed to enable patch 'klp_test_v1'/);
    const load = run(d.load);
    expectRefused(load, ["FtraceDisabled"]);
    const after = obj(d.after);
    expect(after.sysModule).toBe(false);
    expect(after.livepatch).toBe(false);
    expect(arr(after.kpatchTree).filter((f) => !String(f).endsWith(`/${V2}.ko`)), "nothing but boot 1's staged v2").toEqual([]);
    expect(d.restoreErr).toBeNull();
    expect(d.ftraceAfter).toBe("1");
    log(`ftrace_enabled=0: bare insmod "${String(bare.stderr)}"; agent ${load.stderr.trim()} (${load.ms} ms)`);
  });

  scenario("kernel.modules_disabled=1: loads refused with ModulesDisabled (EPERM); unload disables the live patch but its module stays, ModulesDisabled", getBoot2, "refuse-modules-disabled", (d) => {
    expect(obj(d.v1).rc).toBe(0);
    expect(d.setErr).toBeNull();
    expect(d.modulesDisabled).toBe("1");
    const bare = obj(d.bare);
    expect(bare.rc).toBe(1);
    expect(String(bare.stderr)).toMatch(/Operation not permitted/);
    const load = run(d.load);
    expectRefused(load, ["ModulesDisabled"]);
    const afterLoad = obj(d.afterLoad);
    expect(obj(afterLoad.v2).sysModule).toBe(false);
    expect(arr(afterLoad.kpatchTree).filter((f) => !String(f).endsWith(`/${V2}.ko`))).toEqual([]);
    const unload = run(d.unload);
    expectRefused(unload, ["ModulesDisabled"]);
    expect(obj(obj(unload.json).details).errno).toBe("EPERM");
    const afterUnload = obj(d.afterUnload);
    expect(obj(afterUnload.v1).livepatch, "the patch was disabled").toBe(false);
    expect(obj(afterUnload.v1).sysModule, "its module cannot be removed").toBe(true);
    expect(afterUnload.cmdline).toBe(String(stepOf("boot2", "env").originalCmdline));
    log(`modules_disabled=1: bare insmod "${String(bare.stderr)}"; agent load ${load.stderr.trim()}; unload ${unload.stderr.trim()}`);
  });
});
