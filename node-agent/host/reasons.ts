/**
 * Catalog of every reason a host operation can fail, with an admin-facing message template and
 * what to do about it. Templates use `{param}` placeholders filled by `describeReason`.
 * This is the single source of truth for reason codes: the agent copies them into the patch
 * status, the CLI prints them, and nothing ever matches on the message text.
 */
export interface ReasonInfo {
  /** Message template; `{name}` placeholders are filled from the params given to `describeReason`. */
  readonly message: string;
  /** What an administrator should do about it. */
  readonly action: string;
}

export const REASONS = {
  ChecksumMismatch: {
    message: "module sha256 {actual} does not match the pinned digest {expected}",
    action: "Check that the artifact was not modified or replaced; republish it or pin the right digest.",
  },
  NotAnELFModule: {
    message: "{file} is not a kernel module: {detail}",
    action: "Point the patch at the .ko file produced by kpatch-build.",
  },
  WrongArchitecture: {
    message: "{file} is built for {arch}, the node needs x86-64 (ELF64 little-endian)",
    action: "Build the module for the node's architecture.",
  },
  Truncated: {
    message: "{file} is truncated or corrupt: {detail}",
    action: "Download the module again; verify its size and digest.",
  },
  NotALivepatch: {
    message: "{name} is a kernel module but not a livepatch (no livepatch=Y in .modinfo)",
    action: "Build the module with kpatch-build (livepatch mode); refusing to load arbitrary modules.",
  },
  VermagicMismatch: {
    message: "{name} was built for kernel {moduleRelease}, the target is {kernelRelease}",
    action: "Build the module against the target kernel release, or target the release it was built for.",
  },
  NoBuildId: {
    message: "{name} has no GNU build-id note (.note.gnu.build-id), so the agent cannot check from the kernel that this build is the one running",
    action: "Build the module with kbuild or kpatch-build, which link modules with --build-id; do not strip the note.",
  },
  InvalidModuleName: {
    message: "invalid module name {name}: {detail}",
    action: "Use the module's own name (letters, digits, '_' or '-', at most 55 characters).",
  },
  ModuleTooLarge: {
    message: "module is {size} bytes, more than the limit of {limit} bytes",
    action: "Check the artifact; raise the agent's module size limit if the module is really that large.",
  },
  UnsafePath: {
    message: "refusing unsafe path {path}: {detail}",
    action: "Remove the symlink or unexpected file under /var/lib/kpatch and check the node for tampering.",
  },
  AlreadyInstalled: {
    message: "{name} is already installed for {kernelRelease} with different contents ({path})",
    action: "Uninstall the existing module first, or install the new build under a new name.",
  },
  AlreadyLoaded: {
    message: "a module named {name} is already loaded",
    action: "Unload the loaded module first (kpatch-agent unload), then load again.",
  },
  LivepatchUnsupported: {
    message: "the kernel has no livepatch support (/sys/kernel/livepatch is missing)",
    action: "Use a kernel built with CONFIG_LIVEPATCH; this node cannot be live patched.",
  },
  ModulesDisabled: {
    message: "module loading is disabled on this node (kernel.modules_disabled=1)",
    action: "Module loading (and removal) stays disabled until reboot; reboot the node to apply the fix instead.",
  },
  SignatureRejected: {
    message: "the kernel rejected the signature of {name} (signature enforcement is {sigEnforce})",
    action: "Sign the module with a key the node's kernel trusts (MOK or built-in keyring).",
  },
  LockdownDenied: {
    message: "kernel lockdown ({lockdown}) refused to load {name}: {signature}",
    action: "Sign the module with a key the node's kernel trusts (MOK or built-in keyring); lockdown forbids modules it cannot verify.",
  },
  FtraceDisabled: {
    message: "ftrace is disabled (kernel.ftrace_enabled=0); livepatches cannot be applied",
    action: "Set kernel.ftrace_enabled=1 on the node, then retry.",
  },
  UnknownSymbol: {
    message: "{name} refers to a symbol this kernel does not have",
    action: "The module does not match this kernel build; rebuild it against the exact kernel package.",
  },
  InvalidParameters: {
    message: "the kernel refused {name} with invalid parameters (symbol version mismatch or incompatible livepatch state)",
    action: "Rebuild the module against the exact kernel package; check dmesg on the node.",
  },
  InvalidModuleFormat: {
    message: "the kernel refused {name}: invalid module format",
    action: "The module does not match this kernel (vermagic or module layout); rebuild it; check dmesg.",
  },
  PermissionDenied: {
    message: "not permitted to {operation} {name}",
    action: "Run the agent with CAP_SYS_MODULE (privileged) and check LoadPin or other security modules.",
  },
  Busy: {
    message: "the kernel is busy: {detail}",
    action: "Another livepatch transition is running; the operation is retried later.",
  },
  TransitionStalled: {
    message: "the livepatch transition of {name} did not finish within {timeoutMs} ms; {stalledCount} task(s) blocked it; {outcome}",
    action: "Look at the blocking tasks (details) and retry when they are idle; never force the transition.",
  },
  TransitionFailed: {
    message: "the livepatch transition of {name} ended unexpectedly: {detail}",
    action: "Check dmesg on the node and the patch state with kpatch-agent list.",
  },
  UnloadFailed: {
    message: "could not remove module {name}: {detail}",
    action: "Check dmesg; the module stays loaded until it can be removed.",
  },
  ModuleInUse: {
    message: "module {name} is still in use (refcnt {refcnt})",
    action: "Disable its livepatch first, or wait until nothing references the module.",
  },
  NotInstalled: {
    message: "no module {name} is installed for kernel {kernelRelease}",
    action: "Install the module first (kpatch-agent install).",
  },
  LoadFailed: {
    message: "loading {name} failed: {detail}",
    action: "Check dmesg on the node.",
  },
  HostIOError: {
    message: "host I/O failed on {path}: {detail}",
    action: "Check that the host root is mounted and writable, and the agent runs privileged.",
  },
} as const satisfies Record<string, ReasonInfo>;

/** Every reason code a host operation can fail with. */
export type Reason = keyof typeof REASONS;

export const REASON_CODES = Object.keys(REASONS) as Reason[];

export type ReasonParams = Readonly<Record<string, string | number | boolean | undefined>>;

export function isReason(value: unknown): value is Reason {
  return typeof value === "string" && Object.hasOwn(REASONS, value);
}

/** Fills the reason's template; a placeholder without a value reads "?". */
export function describeReason(reason: Reason, params: ReasonParams = {}): string {
  return REASONS[reason].message.replace(/\{(\w+)\}/g, (_, key: string) => {
    const value = params[key];
    return value === undefined ? "?" : String(value);
  });
}
