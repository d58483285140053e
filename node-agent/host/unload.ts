import { checkedModuleName, removeModule, waitForPatchGone, type DriverContext } from "./driver-context.ts";
import { hostError } from "./host-error.ts";
import { livepatchPath } from "./kernel-state.ts";
import type { TransitionOptions } from "./load.ts";
import { sysfsWriteReason } from "./loader-reasons.ts";
import { isLoaderError } from "./ports.ts";
import { retryOnBusy } from "./retry.ts";
import { settleOrReverse, stallOutcome } from "./transition.ts";

export interface UnloadResult {
  name: string;
  /** The patch was enabled (or enabling) and has been disabled. */
  disabled: boolean;
  /** The module was removed from the kernel. */
  removed: boolean;
}

/**
 * kpatch unload: write 0 to `enabled` (retrying EBUSY), wait for the transition (a stall is
 * reversed, leaving the patch enabled, and reported), wait for refcnt 0, rmmod. A module that is
 * no longer a livepatch (replaced or disabled) is just removed. Nothing loaded: nothing to do.
 */
export async function unloadPatch(ctx: DriverContext, rawName: string, options: TransitionOptions = {}): Promise<UnloadResult> {
  const name = checkedModuleName(rawName);
  const timeoutMs = options.transitionTimeoutMs ?? ctx.timing.transitionTimeoutMs;
  const patch = await ctx.view.patch(name);
  let disabled = false;
  if (patch) {
    if (patch.enabled) {
      await disable(ctx, name);
      disabled = true;
    }
    const settled = await settleOrReverse(ctx, name, timeoutMs);
    if (!settled.ok) {
      throw hostError(
        "TransitionStalled",
        { name, timeoutMs, stalledCount: settled.stalledTasks.length, outcome: stallOutcome(settled.reversed) },
        { details: { stalledTasks: settled.stalledTasks, reversed: settled.reversed } },
      );
    }
    if (settled.patch?.enabled) {
      throw hostError("TransitionFailed", { name, detail: `still ${settled.patch.state} after disabling` });
    }
    if (!(await waitForPatchGone(ctx, name))) {
      throw hostError("TransitionFailed", { name, detail: "the disabled patch did not leave /sys/kernel/livepatch" });
    }
  }
  const removed = await removeModule(ctx, name);
  ctx.log.info({ patch: name, disabled, removed }, removed || disabled ? "patch module unloaded" : "patch module was not loaded");
  return { name, disabled, removed };
}

async function disable(ctx: DriverContext, name: string): Promise<void> {
  const retry = { tries: ctx.timing.busyTries, delayMs: ctx.timing.busyRetryDelayMs, clock: ctx.clock, log: ctx.log };
  ctx.log.info({ patch: name }, "disabling patch module");
  try {
    await retryOnBusy(`disable ${name}`, retry, () => ctx.loader.writeSysfs(livepatchPath(name, "enabled"), "0"));
  } catch (error) {
    if (!isLoaderError(error)) throw error;
    // EINVAL: it is already 0 (someone else disabled it meanwhile); ENOENT: it is already gone.
    if (error.code === "EINVAL" || error.code === "ENOENT") return;
    throw hostError(
      sysfsWriteReason(error.code),
      { name, detail: error.message, operation: "disable", path: livepatchPath(name, "enabled") },
      { details: { errno: error.code }, cause: error },
    );
  }
}

export interface RemoveLeftoverResult {
  name: string;
  removed: boolean;
}

/** Removes a module that is in /sys/module but no longer an active livepatch (replaced or disabled). */
export async function removeLeftover(ctx: DriverContext, rawName: string): Promise<RemoveLeftoverResult> {
  const name = checkedModuleName(rawName);
  const patch = await ctx.view.patch(name);
  if (patch && (patch.enabled || patch.transition || !(await waitForPatchGone(ctx, name)))) {
    const refcnt = (await ctx.view.module(name))?.refcnt ?? 1;
    throw hostError("ModuleInUse", { name, refcnt }, { details: { state: patch.state } });
  }
  return { name, removed: await removeModule(ctx, name) };
}
