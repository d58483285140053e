import type { Logger } from "pino";
import type { StalledTask } from "./host-error.ts";
import { livepatchPath, type KernelView, type LivepatchStatus } from "./kernel-state.ts";
import type { Clock, HostReader, ModuleLoader } from "./ports.ts";
import { findStalledTasks } from "./stalled-tasks.ts";
import type { HostTiming } from "./timing.ts";

export interface TransitionDeps {
  fs: HostReader;
  loader: ModuleLoader;
  view: KernelView;
  clock: Clock;
  log: Logger;
  timing: HostTiming;
}

/** Delay before poll number `poll + 1`: firstPollMs doubling up to pollMs. */
export function pollDelay(timing: Pick<HostTiming, "pollMs" | "firstPollMs">, poll: number): number {
  return Math.min(timing.pollMs, timing.firstPollMs * 2 ** Math.min(poll, 20));
}

export type WaitOutcome =
  | { done: true; patch: LivepatchStatus | undefined; elapsedMs: number }
  | { done: false; patch: LivepatchStatus; elapsedMs: number };

/**
 * Waits for a patch's transition like kpatch: poll `transition` every pollMs; after signalAfterMs
 * write 1 to `signal` when the kernel has that file (newer kernels signal stragglers themselves);
 * give up at timeoutMs. A patch whose directory vanished has finished (unpatched or replaced).
 */
export async function waitForTransition(deps: TransitionDeps, name: string, timeoutMs: number): Promise<WaitOutcome> {
  const { clock, timing, log } = deps;
  const start = clock.now();
  let signalled = false;
  for (let poll = 0; ; poll++) {
    const patch = await deps.view.patch(name);
    const elapsedMs = clock.now() - start;
    if (!patch?.transition) return { done: true, patch, elapsedMs };
    if (elapsedMs >= timeoutMs) return { done: false, patch, elapsedMs };
    if (!signalled && elapsedMs >= timing.signalAfterMs) {
      signalled = true;
      await signalStragglers(deps, name);
    }
    if (poll === 0) log.debug({ patch: name }, "waiting for patch transition");
    await clock.sleep(Math.max(1, Math.min(pollDelay(timing, poll), timeoutMs - elapsedMs)));
  }
}

async function signalStragglers(deps: TransitionDeps, name: string): Promise<void> {
  const signal = livepatchPath(name, "signal");
  if ((await deps.fs.stat(signal)) === undefined) {
    deps.log.warn({ patch: name }, "patch transition has stalled; the kernel signals the blocking tasks itself");
    return;
  }
  deps.log.warn({ patch: name }, "patch transition has stalled; signalling the blocking tasks");
  try {
    await deps.loader.writeSysfs(signal, "1");
  } catch (error) {
    deps.log.warn({ patch: name, err: error }, "signalling stalled tasks failed");
  }
}

export type SettleOutcome =
  | { ok: true; patch: LivepatchStatus | undefined; elapsedMs: number }
  | {
      ok: false;
      /** Tasks that blocked the transition, collected before reversing it. */
      stalledTasks: StalledTask[];
      /** The target of the stalled transition (true: enabling). */
      target: boolean;
      /** The reversal finished (the patch is back where it started). */
      reversed: boolean;
      /** State after the reversal attempt (undefined: the patch left sysfs). */
      patch: LivepatchStatus | undefined;
      elapsedMs: number;
    };

/**
 * Waits for the transition; on a stall collects the blocking tasks, reverses the transition by
 * writing the opposite value to `enabled`, and waits for the reversal. Never writes `force`.
 */
export async function settleOrReverse(deps: TransitionDeps, name: string, timeoutMs: number): Promise<SettleOutcome> {
  const outcome = await waitForTransition(deps, name, timeoutMs);
  if (outcome.done) return { ok: true, patch: outcome.patch, elapsedMs: outcome.elapsedMs };

  const target = outcome.patch.enabled;
  const stalledTasks = await findStalledTasks(deps.fs, target);
  deps.log.warn({ patch: name, target, stalledTasks: stalledTasks.length }, "patch transition stalled; reversing it");
  try {
    await deps.loader.writeSysfs(livepatchPath(name, "enabled"), target ? "0" : "1");
  } catch (error) {
    deps.log.error({ patch: name, err: error }, "reversing the stalled transition failed");
    return { ok: false, stalledTasks, target, reversed: false, patch: outcome.patch, elapsedMs: outcome.elapsedMs };
  }
  const reversal = await waitForTransition(deps, name, timeoutMs);
  if (!reversal.done) deps.log.error({ patch: name }, "the reversal stalled too; leaving the patch in transition");
  return {
    ok: false,
    stalledTasks,
    target,
    reversed: reversal.done,
    patch: reversal.patch,
    elapsedMs: outcome.elapsedMs + reversal.elapsedMs,
  };
}

/** How a stall ended, for the TransitionStalled message. */
export function stallOutcome(reversed: boolean): string {
  return reversed ? "it was reversed" : "reversing it did not finish either: check the node";
}
