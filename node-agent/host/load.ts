import { asHostError, checkedModuleName, removeModule, waitForPatchGone, type DriverContext } from "./driver-context.ts";
import { hostError, HostError } from "./host-error.ts";
import type { LivepatchStatus } from "./kernel-state.ts";
import { insmodReason } from "./loader-reasons.ts";
import { isLoaderError } from "./ports.ts";
import { readPreflight, type Preflight } from "./preflight.ts";
import { retryOnBusy } from "./retry.ts";
import { settleOrReverse, stallOutcome, waitForTransition, type SettleOutcome } from "./transition.ts";
import { verifyModule, type VerifiedModule } from "./verify.ts";

/** A staged module's name (for the running release), or a module file given directly. */
export type LoadTarget = string | { file: string; bytes: Uint8Array };

export interface TransitionOptions {
  /** Total time to wait for a transition before reversing it (default 75 s, like kpatch). */
  transitionTimeoutMs?: number;
}

export interface LoadResult {
  name: string;
  /** Patches that were enabled before and left /sys/kernel/livepatch by this load (atomic replace). */
  replaced: string[];
  /** Time from insmod to the end of the transition (0 when already loaded). */
  transitionMs: number;
  /** The patch was already enabled: nothing was done. */
  alreadyLoaded: boolean;
}

interface Resolved {
  /** Path for insmod, as this process sees it. */
  file: string;
  module: VerifiedModule;
}

async function resolveTarget(ctx: DriverContext, target: LoadTarget, kernelRelease: string): Promise<Resolved> {
  if (typeof target !== "string") {
    return { file: target.file, module: verifyModule(target.bytes, { kernelRelease, file: target.file }, ctx.maxModuleBytes) };
  }
  const name = checkedModuleName(target);
  const staged = await ctx.store.find(name, kernelRelease);
  if (!staged) throw hostError("NotInstalled", { name, kernelRelease });
  const module = verifyModule(staged.bytes, { kernelRelease, file: staged.file }, ctx.maxModuleBytes);
  return { file: ctx.fs.resolve(staged.file), module };
}

function blocked(preflight: Preflight): HostError | undefined {
  const first = preflight.blockers[0];
  if (!first) return undefined;
  return new HostError(first.reason, first.message, { details: { blockers: preflight.blockers } });
}

/**
 * kpatch load: already enabled → nothing to do; a leftover module of that name (disabled or
 * replaced) is removed first; insmod (retrying only EBUSY); wait for the transition; on a stall
 * reverse it, remove the module and fail with TransitionStalled.
 */
export async function loadPatch(ctx: DriverContext, target: LoadTarget, options: TransitionOptions = {}): Promise<LoadResult> {
  const timeoutMs = options.transitionTimeoutMs ?? ctx.timing.transitionTimeoutMs;
  const preflight = await readPreflight(ctx.fs);
  const { file, module } = await resolveTarget(ctx, target, preflight.kernelRelease);
  const name = module.name;
  const log = ctx.log.child({ patch: name });

  const current = await ctx.view.patch(name);
  if (current?.enabled) return resumeEnabled(ctx, name, current, timeoutMs);
  const refused = blocked(preflight);
  if (refused) throw refused;
  if (current) await waitForDisabling(ctx, name, timeoutMs);
  if (await removeModule(ctx, name)) log.info("removed the leftover module before loading");

  // Settled patches only: one in transition now can be reversed by another hand while the insmod
  // waits it out (EBUSY), and what leaves that way was not replaced by this patch.
  const before = (await ctx.view.patches()).filter((p) => p.enabled && !p.transition).map((p) => p.name);
  const started = ctx.clock.now();
  log.info({ file }, "loading patch module");
  await insmod(ctx, file, module, preflight);
  // While this patch's transition runs the kernel refuses every other enable or disable (EBUSY),
  // so a patch enabled beside it now and gone after it was replaced by it. When the transition had
  // ended already (no other patch enabled now), the settled patches of before are the candidates.
  const besideIt = (await ctx.view.patches()).filter((p) => p.enabled && p.name !== name).map((p) => p.name);

  if (!(await ctx.view.patch(name))) {
    await removeModule(ctx, name).catch(() => false);
    throw hostError("TransitionFailed", { name, detail: "the module loaded but registered no livepatch" });
  }
  const settled = await settleOrReverse(ctx, name, timeoutMs);
  if (!settled.ok) {
    throw await stalled(ctx, name, timeoutMs, settled);
  }
  if (!settled.patch?.enabled) {
    await removeAfterDisable(ctx, name);
    throw hostError("TransitionFailed", { name, detail: "the patch is not enabled after its transition" });
  }
  // Replaced patches are disabled at once and leave sysfs a moment later (freed asynchronously).
  const stillEnabled = new Set((await ctx.view.patches()).filter((p) => p.enabled).map((p) => p.name));
  const replaced = (besideIt.length ? besideIt : before).filter((n) => n !== name && !stillEnabled.has(n));
  const transitionMs = ctx.clock.now() - started;
  log.info({ replaced, transitionMs }, "patch module loaded");
  return { name, replaced, transitionMs, alreadyLoaded: false };
}

/** Already enabled: done, or (after an agent restart) still enabling, so wait for it like a fresh load. */
async function resumeEnabled(ctx: DriverContext, name: string, current: LivepatchStatus, timeoutMs: number): Promise<LoadResult> {
  if (!current.transition) return { name, replaced: [], transitionMs: 0, alreadyLoaded: true };
  const settled = await settleOrReverse(ctx, name, timeoutMs);
  if (!settled.ok) {
    throw await stalled(ctx, name, timeoutMs, settled);
  }
  return { name, replaced: [], transitionMs: settled.elapsedMs, alreadyLoaded: true };
}

/** A patch of that name is disabled or disabling: let it finish and leave sysfs (never reversed: not ours). */
async function waitForDisabling(ctx: DriverContext, name: string, timeoutMs: number): Promise<void> {
  const settled = await waitForTransition(ctx, name, timeoutMs);
  if (!settled.done || settled.patch?.enabled || !(await waitForPatchGone(ctx, name))) {
    throw hostError("Busy", { detail: `patch ${name} is still being disabled` });
  }
}

/** A stalled forward transition: once reversed, remove the module; report the blocking tasks. */
async function stalled(ctx: DriverContext, name: string, timeoutMs: number, settled: Extract<SettleOutcome, { ok: false }>) {
  const removed = settled.reversed && !settled.patch?.enabled ? await removeAfterDisable(ctx, name) : false;
  return hostError(
    "TransitionStalled",
    { name, timeoutMs, stalledCount: settled.stalledTasks.length, outcome: stallOutcome(settled.reversed) },
    { details: { stalledTasks: settled.stalledTasks, reversed: settled.reversed, removed } },
  );
}

/** After a patch ended disabled: wait for its directory to go, then remove the module. Never throws. */
async function removeAfterDisable(ctx: DriverContext, name: string): Promise<boolean> {
  if (!(await waitForPatchGone(ctx, name))) return false;
  return removeModule(ctx, name).catch(() => false);
}

async function insmod(ctx: DriverContext, file: string, module: VerifiedModule, preflight: Preflight): Promise<void> {
  const retry = { tries: ctx.timing.busyTries, delayMs: ctx.timing.busyRetryDelayMs, clock: ctx.clock, log: ctx.log };
  try {
    await retryOnBusy(`insmod ${module.name}`, retry, () => ctx.loader.insmod(file));
  } catch (error) {
    if (!isLoaderError(error)) throw asHostError(error, file);
    const reason = insmodReason(error.code, preflight);
    throw hostError(
      reason,
      {
        name: module.name,
        detail: error.message,
        operation: "load",
        sigEnforce: preflight.sigEnforce ? "on" : "off",
        lockdown: preflight.lockdown,
        signature: module.signed ? "it is signed, but not by a key this kernel trusts" : "it is unsigned",
      },
      { details: { errno: error.code }, cause: error },
    );
  }
}
