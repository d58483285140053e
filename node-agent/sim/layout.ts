import { randomUUID } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { materializeConfig, materializeState } from "./materialize.ts";
import { SIM_DIR, SimConfigSchema, type SimConfig, type SimConfigInput } from "./sim-config.ts";
import { readSimConfig, readSimState, simPath, withSimLock, writeSimConfig, writeSimState } from "./sim-files.ts";
import { freshState, type SimState } from "./sim-kernel.ts";

export interface LayoutOptions extends SimConfigInput {
  /** Boot id (default: a random UUID). */
  bootId?: string;
}

function refuseRealRoot(root: string): void {
  if (path.resolve(root) === "/") throw new Error("refusing to lay out a simulated host on / (use a scratch directory)");
}

/**
 * Creates (or resets) a simulated host under `root`: fake /proc and /sys files, /var/lib/kpatch,
 * and /.kpatch-sim/{config,state}.json. Staged modules under /var/lib/kpatch are kept.
 */
export async function layoutSimHost(root: string, options: LayoutOptions): Promise<SimConfig> {
  refuseRealRoot(root);
  const { bootId, ...input } = options;
  const config = SimConfigSchema.parse(input);
  await fs.mkdir(simPath(root, SIM_DIR), { recursive: true });
  return withSimLock(root, async () => {
    const state = freshState(bootId ?? randomUUID(), config.tainted);
    await writeSimConfig(root, config);
    await writeSimState(root, state);
    await materializeConfig(root, config, state.bootId);
    await materializeState(root, config, state);
    return config;
  });
}

export interface RebootOptions {
  /** Boot into another kernel release (a kernel upgrade). */
  kernelRelease?: string;
  bootId?: string;
}

/** A reboot: new boot id, nothing loaded, taint back to the boot value; /var/lib/kpatch is kept. */
export async function rebootSimHost(root: string, options: RebootOptions = {}): Promise<SimState> {
  refuseRealRoot(root);
  return withSimLock(root, async () => {
    const current = await readSimConfig(root);
    const config = { ...current, ...(options.kernelRelease ? { kernelRelease: options.kernelRelease } : {}) };
    const state = freshState(options.bootId ?? randomUUID(), config.tainted);
    await writeSimConfig(root, config);
    await writeSimState(root, state);
    await materializeConfig(root, config, state.bootId);
    await materializeState(root, config, state);
    return state;
  });
}

/** Changes sim settings on a live simulated host (e.g. turn stall mode on); kernel state is kept. */
export async function configureSimHost(root: string, changes: Partial<SimConfigInput>): Promise<SimConfig> {
  refuseRealRoot(root);
  return withSimLock(root, async () => {
    const config = SimConfigSchema.parse({ ...(await readSimConfig(root)), ...changes });
    const state = await readSimState(root);
    await writeSimConfig(root, config);
    await materializeConfig(root, config, state.bootId);
    await materializeState(root, config, state);
    return config;
  });
}
