import { z } from "zod";

/** Directory under the host root that marks a simulated host and holds its settings and state. */
export const SIM_DIR = "/.kpatch-sim";
export const SIM_CONFIG_FILE = `${SIM_DIR}/config.json`;
export const SIM_STATE_FILE = `${SIM_DIR}/state.json`;

/** Settings of a simulated host (/.kpatch-sim/config.json). Defaults describe Debian 12's 6.1 kernel. */
export const SimConfigSchema = z.object({
  /** /proc/sys/kernel/osrelease. */
  kernelRelease: z.string().min(1),
  /** module.sig_enforce=Y: unsigned modules fail with EKEYREJECTED. */
  signatureEnforce: z.boolean().default(false),
  /** Kernel lockdown: unsigned modules fail with EPERM unless "none". */
  lockdown: z.enum(["none", "integrity", "confidentiality"]).default("none"),
  /** /sys/kernel/livepatch exists; otherwise livepatch modules fail with ENOEXEC. */
  livepatchSupported: z.boolean().default(true),
  /** kernel.modules_disabled=1: every insmod and rmmod fails with EPERM. */
  modulesDisabled: z.boolean().default(false),
  /** kernel.ftrace_enabled; livepatch modules fail with EBUSY when false. */
  ftraceEnabled: z.boolean().default(true),
  /** How long a livepatch transition takes (ms). 0 completes at the next look. */
  transitionMs: z.number().int().nonnegative().default(500),
  /**
   * A patch that ends disabled (unpatched, replaced, reversed) stays in /sys/kernel/livepatch with
   * enabled=0 this long before its directory goes, like the kernel's asynchronous free (default 0).
   */
  freeDelayMs: z.number().int().nonnegative().default(0),
  /** Transitions never complete (except reversals) and stalled tasks appear under /proc. */
  stall: z.boolean().default(false),
  /** Taint at boot (kept in /proc/sys/kernel/tainted; module loads add to it). */
  tainted: z.number().int().nonnegative().default(0),
  /** Expose /sys/kernel/livepatch/<p>/replace (newer kernels; absent on 6.1). */
  replaceAttribute: z.boolean().default(false),
  /** Expose /sys/kernel/livepatch/<p>/signal (older kernels; absent on 6.1). */
  signalAttribute: z.boolean().default(false),
});

export type SimConfig = z.infer<typeof SimConfigSchema>;
export type SimConfigInput = z.input<typeof SimConfigSchema>;
