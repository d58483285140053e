/** Public API of the simulated host. */
export { buildSimModule, DEBIAN_VERMAGIC_SUFFIX, SIM_REPLACE_MODINFO_KEY } from "./build-module.ts";
export type { SimModuleOptions } from "./build-module.ts";
export { configureSimHost, layoutSimHost, rebootSimHost } from "./layout.ts";
export type { LayoutOptions, RebootOptions } from "./layout.ts";
export { createSimLoader } from "./sim-loader.ts";
export type { SimLoader, SimLoaderOptions } from "./sim-loader.ts";
export { SIM_CONFIG_FILE, SIM_DIR, SIM_STATE_FILE, SimConfigSchema } from "./sim-config.ts";
export type { SimConfig, SimConfigInput } from "./sim-config.ts";
export type { SimModule, SimState, SimTask } from "./sim-kernel.ts";
export { isSimHost, readSimConfig, readSimState } from "./sim-files.ts";
export { createTestHost } from "./test-host.ts";
export type { TestHost } from "./test-host.ts";
export { createVirtualClock } from "./virtual-clock.ts";
export type { VirtualClock } from "./virtual-clock.ts";
