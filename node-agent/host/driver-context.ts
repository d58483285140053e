import type { Logger } from "pino";
import { hostError, HostError } from "./host-error.ts";
import type { KernelView } from "./kernel-state.ts";
import type { KpatchStore } from "./kpatch-store.ts";
import { rmmodReason } from "./loader-reasons.ts";
import { isValidModuleName, normalizeModuleName } from "./names.ts";
import { isLoaderError, type Clock, type HostFs, type ModuleLoader } from "./ports.ts";
import { readPreflightFacts } from "./preflight.ts";
import type { HostTiming } from "./timing.ts";
import { pollDelay, type TransitionDeps } from "./transition.ts";

/** Everything a driver operation needs, built once by createHostDriver. */
export interface DriverContext extends TransitionDeps {
  fs: HostFs;
  loader: ModuleLoader;
  view: KernelView;
  store: KpatchStore;
  clock: Clock;
  log: Logger;
  timing: HostTiming;
  maxModuleBytes: number;
}

/** A module name from the caller, normalised (dashes → underscores) and checked before it becomes a path. */
export function checkedModuleName(name: string): string {
  if (name.includes("/")) throw hostError("InvalidModuleName", { name, detail: "a module name has no '/'" });
  const normalized = normalizeModuleName(name);
  if (!isValidModuleName(normalized)) throw hostError("InvalidModuleName", { name, detail: "not a valid module name" });
  return normalized;
}

/** Waits up to timing.refcntWaitMs for the module's refcnt to reach 0; returns the last refcnt (0 if gone). */
export async function waitForRefcntZero(ctx: DriverContext, name: string): Promise<number> {
  const start = ctx.clock.now();
  for (let poll = 0; ; poll++) {
    const refcnt = (await ctx.view.module(name))?.refcnt ?? 0;
    if (refcnt === 0 || ctx.clock.now() - start >= ctx.timing.refcntWaitMs) return refcnt;
    await ctx.clock.sleep(pollDelay(ctx.timing, poll));
  }
}

/**
 * Waits up to timing.refcntWaitMs for a disabled patch's directory to leave /sys/kernel/livepatch:
 * the kernel frees it asynchronously after the transition (or an atomic replace) finished.
 * Returns whether it is gone.
 */
export async function waitForPatchGone(ctx: DriverContext, name: string): Promise<boolean> {
  const start = ctx.clock.now();
  for (let poll = 0; ; poll++) {
    const patch = await ctx.view.patch(name);
    if (!patch) return true;
    if (patch.enabled || patch.transition || ctx.clock.now() - start >= ctx.timing.refcntWaitMs) return false;
    await ctx.clock.sleep(pollDelay(ctx.timing, poll));
  }
}

/**
 * Removes a module that is no longer an active livepatch: waits for refcnt 0, then rmmod.
 * Already gone is fine. Returns whether a module was removed.
 */
export async function removeModule(ctx: DriverContext, name: string): Promise<boolean> {
  if (!(await ctx.view.module(name))) return false;
  const refcnt = await waitForRefcntZero(ctx, name);
  if (refcnt !== 0) throw hostError("ModuleInUse", { name, refcnt });
  try {
    await ctx.loader.rmmod(name);
  } catch (error) {
    if (isLoaderError(error) && error.code === "ENOENT") return false;
    if (!isLoaderError(error)) throw asHostError(error, name);
    // Read only on failure: whether kernel.modules_disabled explains an EPERM.
    const { modulesDisabled } = await readPreflightFacts(ctx.fs);
    throw hostError(rmmodReason(error.code, { modulesDisabled }), { name, detail: error.message, refcnt, operation: "remove" }, {
      details: { errno: error.code },
      cause: error,
    });
  }
  ctx.log.info({ patch: name }, "removed module");
  return true;
}

export function asHostError(error: unknown, path: string): HostError {
  if (error instanceof HostError) return error;
  return hostError("HostIOError", { path, detail: error instanceof Error ? error.message : String(error) }, { cause: error });
}
