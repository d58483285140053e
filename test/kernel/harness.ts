// A small harness for real-kernel suites whose boots are independent of each other (each its own
// fresh persistent disk and kernel command line): prepares the guest once, boots on demand, and
// turns each guest step's result into one vitest test. See test/kernel/README.md.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, it, type TestContext } from "vitest";
import { obj, type Obj } from "./facts.ts";
import { CACHE, KernelUnavailable, prepareGuest, type GuestOptions, type PreparedGuest } from "./guest-image.ts";
import { boot, BootTimeout, chooseAccel, consoleTail, type BootOutcome, type StepResult } from "./qemu.ts";

const BOOT_TIMEOUT_MS = Number(process.env.KLP_BOOT_TIMEOUT_S ?? 900) * 1000;
export const TEST_TIMEOUT_MS = BOOT_TIMEOUT_MS + 120_000;
const REQUIRED = process.env.KLP_KERNEL_REQUIRED === "1";
const LAST_RUN = join(CACHE, "last-run");

/** One boot: a plan of the guest runner and the kernel command line it needs. */
export interface BootSpec {
  plan: string;
  cmdline: string[];
}

export interface KernelSuite {
  /** The prepared guest (after beforeAll; undefined when skipped). */
  guest(): PreparedGuest | undefined;
  /** Skips the test when the machine cannot run the suite (see README, KLP_KERNEL_REQUIRED). */
  skipIfUnavailable(ctx: TestContext): void;
  /** The boot's outcome, started on first use; boots of one suite run side by side. */
  boot(spec: BootSpec): Promise<BootOutcome>;
  /** One test per guest step, asserting on the facts the step reported. */
  scenario(title: string, spec: BootSpec, step: string, check: (d: Obj, r: StepResult) => void): void;
  log(line: string): void;
  /** The accelerator the boots use ("kvm" or "tcg"), after beforeAll. */
  accel(): string;
  /** Where each boot's console (and any figures a test records) is kept. */
  lastRunDir: string;
}

export function kernelSuite(name: string, options: GuestOptions = {}): KernelSuite {
  let guest: PreparedGuest | undefined;
  let skipReason: string | undefined;
  let accel = "tcg";
  let accelWhy = "";
  let workDir = "";
  const boots = new Map<string, Promise<BootOutcome>>();
  const summary: string[] = [];
  const start = performance.now();

  const log = (line: string): void => {
    console.log(`[kernel:${name}] ${line}`);
    summary.push(line);
  };

  beforeAll(async () => {
    try {
      guest = await prepareGuest(options);
    } catch (e) {
      if (e instanceof KernelUnavailable && !REQUIRED) {
        skipReason = `real-kernel suite ${name} skipped: ${e.message}`;
        console.warn(`[kernel:${name}] ${skipReason}`);
        return;
      }
      throw e;
    }
    log(`prepared ${guest.krel} (${guest.kversion}) in ${JSON.stringify(guest.timings)}`);
    ({ accel, why: accelWhy } = await chooseAccel({ vmlinuz: guest.vmlinuz, guestDir: guest.guestDir, cacheDir: CACHE }));
    workDir = mkdtempSync(join(tmpdir(), `klp-kernel-${name}-`));
  });

  afterAll(async () => {
    await Promise.allSettled(boots.values());
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    if (!skipReason) {
      log(`total wall time ${Math.round(performance.now() - start)} ms`);
      console.log(`\n[kernel:${name}] summary\n${summary.map((l) => `  ${l}`).join("\n")}\n`);
    }
  });

  function startBoot(spec: BootSpec): Promise<BootOutcome> {
    if (!guest) throw new Error("guest not prepared");
    const disk = join(workDir, `${spec.plan}.img`);
    execFileSync("truncate", ["-s", "64M", disk]);
    execFileSync("mkfs.ext4", ["-q", "-F", "-L", "kpatch", disk]);
    log(`boot ${spec.plan} (${spec.cmdline.join(" ")}): starting QEMU (${accel}; ${accelWhy})`);
    return boot({
      vmlinuz: guest.vmlinuz, guestDir: guest.guestDir, disk, plan: spec.plan, accel, timeoutMs: BOOT_TIMEOUT_MS,
      extraCmdline: spec.cmdline,
      onLine: (l) => {
        if (process.env.KLP_CONSOLE === "1") console.log(`  ${spec.plan} | ${l}`);
      },
    }).then((b) => {
      log(`boot ${spec.plan}: ${b.wallMs} ms wall, exit ${b.exitCode}; guest uptime at init ${b.marks["init-start"]} s, ` +
        `runner exit ${b.marks["runner-exit"]} s`);
      saveConsole(spec.plan, b.console);
      return b;
    }, (e: unknown) => {
      log(`boot ${spec.plan}: FAILED: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`);
      if (e instanceof BootTimeout) saveConsole(spec.plan, e.console);
      throw e;
    });
  }

  function bootOf(spec: BootSpec): Promise<BootOutcome> {
    let b = boots.get(spec.plan);
    if (!b) {
      b = startBoot(spec);
      boots.set(spec.plan, b);
    }
    return b;
  }

  async function step(ctx: TestContext, spec: BootSpec, stepName: string): Promise<StepResult & { details: Obj }> {
    if (skipReason) ctx.skip(skipReason);
    const b = await bootOf(spec);
    const r = b.results.get(stepName);
    if (!r) {
      throw new Error(`guest reported no result for ${stepName} (plan ${b.plan}, done=${b.done}, exit ${b.exitCode}); console tail:\n${consoleTail(b.console, 40)}`);
    }
    if (!r.ok) throw new Error(`guest step ${stepName} threw: ${r.error}`);
    return { ...r, details: obj(r.details) };
  }

  return {
    guest: () => guest,
    skipIfUnavailable: (ctx) => {
      if (skipReason) ctx.skip(skipReason);
    },
    boot: bootOf,
    log,
    accel: () => accel,
    lastRunDir: LAST_RUN,
    scenario(title, spec, stepName, check) {
      it(title, async (ctx) => {
        const r = await step(ctx, spec, stepName);
        try {
          check(r.details, r);
          log(`PASS ${title} (guest step ${r.ms} ms)`);
        } catch (e) {
          log(`FAIL ${title} (guest step ${r.ms} ms)`);
          throw e;
        }
      }, TEST_TIMEOUT_MS);
    },
  };
}

function saveConsole(plan: string, text: string): void {
  mkdirSync(LAST_RUN, { recursive: true });
  writeFileSync(join(LAST_RUN, `${plan}.console.log`), text);
}
