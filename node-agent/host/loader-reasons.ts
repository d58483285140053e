import type { Lockdown } from "./preflight.ts";
import type { LoaderErrno } from "./ports.ts";
import type { Reason } from "./reasons.ts";

/** What the driver knows about the host and the module when insmod fails. */
export interface InsmodContext {
  sigEnforce: boolean;
  lockdown: Lockdown;
  modulesDisabled: boolean;
  livepatchSupported: boolean;
  ftraceEnabled: boolean;
}

/** Interprets an insmod errno with host context (kpatch-host-semantics.md, "Load failures"). */
export function insmodReason(code: LoaderErrno, ctx: InsmodContext): Reason {
  switch (code) {
    case "ENOEXEC":
      return ctx.livepatchSupported ? "InvalidModuleFormat" : "LivepatchUnsupported";
    case "ENOENT":
      return "UnknownSymbol";
    case "ESRCH":
    case "EINVAL":
      return "InvalidParameters";
    case "EEXIST":
      return "AlreadyLoaded";
    case "EBUSY":
      return ctx.ftraceEnabled ? "Busy" : "FtraceDisabled";
    case "EPERM":
      // may_init_module() refuses every load while modules are disabled, before any other check.
      if (ctx.modulesDisabled) return "ModulesDisabled";
      // Under lockdown module_sig_check() answers EPERM for a module it cannot verify: unsigned,
      // or signed by a key no keyring of this kernel holds (a signed module is not proof of a
      // trusted one). Without lockdown, EPERM is a capability or another security module.
      if (ctx.lockdown !== "none") return "LockdownDenied";
      return "PermissionDenied";
    case "EKEYREJECTED":
      return "SignatureRejected";
    case "EWOULDBLOCK":
      return "Busy";
    case "EIO":
      return "LoadFailed";
  }
}

/** What the driver knows about the host when rmmod fails. */
export interface RmmodContext {
  modulesDisabled: boolean;
}

/** Interprets an rmmod errno. ENOENT (already gone) is not a failure and is handled by the caller. */
export function rmmodReason(code: LoaderErrno, ctx: RmmodContext): Reason {
  switch (code) {
    case "EWOULDBLOCK":
    case "EBUSY":
      return "ModuleInUse";
    case "EPERM":
      // delete_module() refuses every removal while modules are disabled, as init does every load.
      return ctx.modulesDisabled ? "ModulesDisabled" : "PermissionDenied";
    default:
      return "UnloadFailed";
  }
}

/** Interprets a failed write to a livepatch sysfs attribute. */
export function sysfsWriteReason(code: LoaderErrno): Reason {
  switch (code) {
    case "EBUSY":
      return "Busy";
    case "EPERM":
      return "PermissionDenied";
    case "ENOENT":
      return "NotInstalled";
    case "EINVAL":
      return "TransitionFailed";
    default:
      return "HostIOError";
  }
}
