import type { DriverContext } from "./driver-context.ts";
import type { LivepatchStatus } from "./kernel-state.ts";
import type { InstalledModule } from "./kpatch-store.ts";
import { readPreflightFacts } from "./preflight.ts";
import { decodeTaint } from "./taint.ts";

export interface PatchModule {
  name: string;
  refcnt: number;
  /** Per-module taint letters ("OEK"). */
  taint: string;
  /** In /sys/module but not in /sys/kernel/livepatch: replaced or disabled, waiting for rmmod. */
  leftover: boolean;
}

export interface HostState {
  kernelRelease: string;
  bootId: string;
  /** /proc/sys/kernel/tainted (sticky until reboot). */
  tainted: number;
  /** Letters of the set taint bits, e.g. "OEK" (see decodeTaint). */
  taintFlags: string;
  livepatches: LivepatchStatus[];
  /** Loaded modules that are livepatch-related: in /sys/kernel/livepatch, tainted K, or staged. */
  modules: PatchModule[];
  /** Every module staged under /var/lib/kpatch, for every kernel release. */
  installed: InstalledModule[];
}

/** One read of everything the agent reports about the host. */
export async function inspectHost(ctx: DriverContext): Promise<HostState> {
  const facts = await readPreflightFacts(ctx.fs);
  const [tainted, livepatches, loaded, installed] = await Promise.all([
    ctx.view.tainted(),
    ctx.view.patches(),
    ctx.view.modules(),
    ctx.store.list(facts.kernelRelease),
  ]);
  const patchNames = new Set(livepatches.map((p) => p.name));
  const stagedNames = new Set(installed.map((i) => i.name));
  const modules = loaded
    .filter((m) => patchNames.has(m.name) || m.taint.includes("K") || stagedNames.has(m.name))
    .map((m) => ({ ...m, leftover: !patchNames.has(m.name) }));
  return {
    kernelRelease: facts.kernelRelease,
    bootId: facts.bootId,
    tainted,
    taintFlags: decodeTaint(tainted).letters,
    livepatches,
    modules,
    installed,
  };
}
