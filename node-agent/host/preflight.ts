import { hostError } from "./host-error.ts";
import type { HostReader } from "./ports.ts";
import { describeReason, type Reason } from "./reasons.ts";

export type Lockdown = "none" | "integrity" | "confidentiality";

/** Host files preflight reads (relative to the host root). */
export const PREFLIGHT_PATHS = {
  osrelease: "/proc/sys/kernel/osrelease",
  bootId: "/proc/sys/kernel/random/boot_id",
  livepatch: "/sys/kernel/livepatch",
  modulesDisabled: "/proc/sys/kernel/modules_disabled",
  sigEnforce: "/sys/module/module/parameters/sig_enforce",
  lockdown: "/sys/kernel/security/lockdown",
  ftraceEnabled: "/proc/sys/kernel/ftrace_enabled",
} as const;

export interface PreflightFacts {
  kernelRelease: string;
  bootId: string;
  /** /sys/kernel/livepatch exists (CONFIG_LIVEPATCH). */
  livepatchSupported: boolean;
  /** kernel.modules_disabled=1: no module can be loaded until reboot. */
  modulesDisabled: boolean;
  /** module.sig_enforce=Y: unsigned or untrusted modules are rejected. */
  sigEnforce: boolean;
  /** Active lockdown mode; "none" when the file is absent. */
  lockdown: Lockdown;
  /** kernel.ftrace_enabled; true when the file is absent (then livepatch support decides). */
  ftraceEnabled: boolean;
}

export interface Blocker {
  reason: Reason;
  message: string;
}

export interface Preflight extends PreflightFacts {
  /** Conditions that keep any livepatch from loading on this host. */
  blockers: Blocker[];
}

/** "none [integrity] confidentiality" → "integrity"; missing or unrecognised → "none". */
export function parseLockdown(text: string | undefined): Lockdown {
  const active = /\[(\w+)\]/.exec(text ?? "")?.[1];
  return active === "integrity" || active === "confidentiality" ? active : "none";
}

/** Kernel booleans: sysctls write 1/0, module parameters Y/N. */
export function parseKernelBool(text: string | undefined, fallback: boolean): boolean {
  const value = text?.trim();
  if (value === undefined || value === "") return fallback;
  if (value === "1" || value === "Y" || value === "y") return true;
  if (value === "0" || value === "N" || value === "n") return false;
  return fallback;
}

/** Host conditions that block every livepatch load, most fundamental first. */
export function preflightBlockers(facts: PreflightFacts): Blocker[] {
  const reasons: Reason[] = [];
  if (!facts.livepatchSupported) reasons.push("LivepatchUnsupported");
  if (facts.modulesDisabled) reasons.push("ModulesDisabled");
  if (!facts.ftraceEnabled) reasons.push("FtraceDisabled");
  return reasons.map((reason) => ({ reason, message: describeReason(reason) }));
}

export async function readPreflightFacts(fs: HostReader): Promise<PreflightFacts> {
  const [osrelease, bootId, livepatch, modulesDisabled, sigEnforce, lockdown, ftrace] = await Promise.all([
    fs.readText(PREFLIGHT_PATHS.osrelease),
    fs.readText(PREFLIGHT_PATHS.bootId),
    fs.stat(PREFLIGHT_PATHS.livepatch),
    fs.readText(PREFLIGHT_PATHS.modulesDisabled),
    fs.readText(PREFLIGHT_PATHS.sigEnforce),
    fs.readText(PREFLIGHT_PATHS.lockdown),
    fs.readText(PREFLIGHT_PATHS.ftraceEnabled),
  ]);
  const kernelRelease = osrelease?.trim();
  if (!kernelRelease) {
    throw hostError("HostIOError", { path: PREFLIGHT_PATHS.osrelease, detail: "missing or empty (is the host root right?)" });
  }
  return {
    kernelRelease,
    bootId: bootId?.trim() ?? "",
    livepatchSupported: livepatch?.kind === "dir",
    modulesDisabled: parseKernelBool(modulesDisabled, false),
    sigEnforce: parseKernelBool(sigEnforce, false),
    lockdown: parseLockdown(lockdown),
    ftraceEnabled: parseKernelBool(ftrace, true),
  };
}

export async function readPreflight(fs: HostReader): Promise<Preflight> {
  const facts = await readPreflightFacts(fs);
  return { ...facts, blockers: preflightBlockers(facts) };
}
