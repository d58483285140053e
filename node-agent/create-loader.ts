import { existsSync } from "node:fs";
import path from "node:path";
import { SIM_DIR } from "./sim/sim-config.ts";
import { createSimLoader } from "./sim/sim-loader.ts";
import { createKmodLoader } from "./host/kmod-loader.ts";
import type { Clock, ModuleLoader } from "./host/ports.ts";

export type LoaderKind = "auto" | "kmod" | "sim";

export interface CreateLoaderOptions {
  /** Clock for the simulated kernel's transitions (default the system clock). */
  clock?: Pick<Clock, "now">;
}

/** True when `hostRoot` holds a simulated host (/.kpatch-sim). */
export function isSimulatedHost(hostRoot: string): boolean {
  return existsSync(path.join(hostRoot, SIM_DIR));
}

/** The loader for a host root: "auto" picks the simulated host when <root>/.kpatch-sim exists, kmod otherwise. */
export function createLoader(hostRoot: string, kind: LoaderKind = "auto", options: CreateLoaderOptions = {}): ModuleLoader {
  const sim = kind === "sim" || (kind === "auto" && isSimulatedHost(hostRoot));
  if (sim) return createSimLoader({ hostRoot, ...(options.clock ? { clock: options.clock } : {}) });
  return createKmodLoader({ hostRoot });
}
