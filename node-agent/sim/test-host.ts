import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino, type Logger } from "pino";
import { createHostDriver, type HostDriver } from "../host/driver.ts";
import type { ModuleLoader } from "../host/ports.ts";
import type { HostTiming } from "../host/timing.ts";
import { layoutSimHost, type LayoutOptions } from "./layout.ts";
import { createSimLoader, type SimLoader } from "./sim-loader.ts";
import { createVirtualClock, type VirtualClock } from "./virtual-clock.ts";

export interface TestHost {
  root: string;
  clock: VirtualClock;
  /** The simulated kernel (on the virtual clock). */
  sim: SimLoader;
  driver: HostDriver;
  log: Logger;
  /** A driver over the same host with another loader (e.g. one that injects failures). */
  driverWith(loader: ModuleLoader, timing?: Partial<HostTiming>): HostDriver;
  cleanup(): Promise<void>;
}

/**
 * A simulated host in a temporary directory with a driver on a virtual clock: transitions and
 * kpatch's waits cost no real time. For tests (this package's and other engineers').
 */
export async function createTestHost(options: Partial<LayoutOptions> = {}): Promise<TestHost> {
  const root = await mkdtemp(path.join(tmpdir(), "kpatch-sim-"));
  await layoutSimHost(root, { kernelRelease: "6.1.0-56-amd64", transitionMs: 2_000, ...options });
  const clock = createVirtualClock();
  const log = pino({ level: "silent" });
  const sim = createSimLoader({ hostRoot: root, clock });
  const driverWith = (loader: ModuleLoader, timing?: Partial<HostTiming>) =>
    createHostDriver({ hostRoot: root, loader, clock, log, ...(timing ? { timing } : {}) });
  return {
    root,
    clock,
    sim,
    log,
    driver: driverWith(sim),
    driverWith,
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
}
