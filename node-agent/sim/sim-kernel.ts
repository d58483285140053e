import { z } from "zod";
import type { LoaderErrno } from "../host/ports.ts";
import type { ParseResult } from "../host/parse-module.ts";
import { modinfoFlag } from "../host/modinfo.ts";
import { TAINT } from "../host/taint.ts";
import type { SimConfig } from "./sim-config.ts";
import { SIM_REPLACE_MODINFO_KEY, type SimSignature } from "./build-module.ts";

/**
 * The simulated kernel as pure functions over a state record: module loading, livepatch
 * transitions, atomic replace and sysfs writes. Time comes in as `now`; transitions are
 * evaluated lazily by `advance`.
 */

const TransitionSchema = z.object({
  /** true: patching (enabling); false: unpatching. */
  target: z.boolean(),
  startedAt: z.number(),
  /** A reversal of a stalled transition: completes even in stall mode. */
  reversed: z.boolean(),
});

const SimModuleSchema = z.object({
  name: z.string(),
  livepatch: z.boolean(),
  replace: z.boolean(),
  signed: z.boolean(),
  intree: z.boolean(),
  srcversion: z.string().optional(),
  buildId: z.string().optional(),
  /** Present while the module is in /sys/kernel/livepatch. */
  patch: z
    .object({
      enabled: z.boolean(),
      transition: TransitionSchema.nullable(),
      /** A disabled patch whose directory the kernel frees asynchronously: it disappears at this time. */
      goneAt: z.number().optional(),
    })
    .nullable(),
});

export const SimStateSchema = z.object({
  version: z.literal(1),
  bootId: z.string(),
  tainted: z.number().int().nonnegative(),
  /** In load order. */
  modules: z.array(SimModuleSchema),
  /** Writes to the `signal` attribute (for tests). */
  signals: z.number().int().nonnegative().default(0),
  /** Successful insmods per module name since boot (for tests: "never loaded twice"). */
  insmods: z.record(z.string(), z.number().int().nonnegative()).default({}),
});

export type SimState = z.infer<typeof SimStateSchema>;
export type SimModule = z.infer<typeof SimModuleSchema>;

export class SimKernelError extends Error {
  override readonly name = "SimKernelError";
  constructor(
    readonly code: LoaderErrno,
    message: string,
  ) {
    super(message);
  }
}

const fail = (code: LoaderErrno, message: string): never => {
  throw new SimKernelError(code, message);
};

export function freshState(bootId: string, tainted: number): SimState {
  return { version: 1, bootId, tainted, modules: [], signals: 0, insmods: {} };
}

/** The module in transition, if any (the kernel allows one at a time). */
export function inTransition(state: SimState): SimModule | undefined {
  return state.modules.find((m) => m.patch?.transition);
}

/** An enabled patch holds a reference on its module. */
export function refcnt(module: SimModule): number {
  return module.patch ? 1 : 0;
}

/** Per-module taint letters, in bit order as /sys/module/<m>/taint shows them. */
export function moduleTaint(module: SimModule): string {
  return (module.intree ? "" : "O") + (module.signed ? "" : "E") + (module.livepatch ? "K" : "");
}

function taintBits(module: SimModule): number {
  return (module.intree ? 0 : TAINT.OOT_MODULE) | (module.signed ? 0 : TAINT.UNSIGNED_MODULE) | (module.livepatch ? TAINT.LIVEPATCH : 0);
}

/**
 * Completes the transition whose time has come (in stall mode only reversals complete), then
 * drops the directories of disabled patches whose asynchronous free is due.
 */
export function advance(state: SimState, config: SimConfig, now: number): SimState {
  return freeDisabled(completeTransition(state, config, now), now);
}

function completeTransition(state: SimState, config: SimConfig, now: number): SimState {
  const moving = inTransition(state);
  const t = moving?.patch?.transition;
  if (!moving || !t) return state;
  if (config.stall && !t.reversed) return state;
  if (now - t.startedAt < config.transitionMs) return state;
  // Like klp_free_patch_async: a patch that ends disabled leaves sysfs a moment later (or at once).
  const disabled = (): SimModule["patch"] =>
    config.freeDelayMs > 0 ? { enabled: false, transition: null, goneAt: now + config.freeDelayMs } : null;
  const modules = state.modules.map((m): SimModule => {
    if (m === moving) return { ...m, patch: t.target ? { enabled: true, transition: null } : disabled() };
    // Atomic replace: when a replace patch finishes enabling, every other patch is disabled and leaves sysfs.
    if (t.target && moving.replace && m.patch) return { ...m, patch: disabled() };
    return m;
  });
  return { ...state, modules };
}

function freeDisabled(state: SimState, now: number): SimState {
  const due = (m: SimModule) => m.patch?.goneAt !== undefined && now >= m.patch.goneAt;
  if (!state.modules.some(due)) return state;
  return { ...state, modules: state.modules.map((m) => (due(m) ? { ...m, patch: null } : m)) };
}

/**
 * finit_module() in the kernel's order: may_init_module() (modules_disabled), then
 * module_sig_check() before the ELF is even looked at (a module it cannot verify: EKEYREJECTED
 * under sig_enforce, else EPERM under lockdown), then the ELF, then the module's own init.
 */
export function insmod(
  state: SimState,
  config: SimConfig,
  parsed: ParseResult,
  now: number,
  signature: SimSignature = parsed.ok && parsed.module.signed ? "trusted" : "none",
): SimState {
  if (config.modulesDisabled) fail("EPERM", "Operation not permitted");
  if (signature !== "trusted" && config.signatureEnforce) fail("EKEYREJECTED", "Key was rejected by service");
  if (signature !== "trusted" && config.lockdown !== "none") fail("EPERM", "Operation not permitted");
  if (!parsed.ok) return fail("ENOEXEC", "Invalid module format");
  const m = parsed.module;
  if (state.modules.some((x) => x.name === m.name)) fail("EEXIST", "File exists");
  // Like Debian's modversions kernel, the release part of vermagic is not compared here.
  if (m.livepatch) {
    if (!config.livepatchSupported) fail("ENOEXEC", "Invalid module format");
    if (!config.ftraceEnabled) fail("EBUSY", "Device or resource busy");
    if (inTransition(state)) fail("EBUSY", "Device or resource busy");
  }
  const module: SimModule = {
    name: m.name,
    livepatch: m.livepatch,
    replace: modinfoFlag(m.modinfo, SIM_REPLACE_MODINFO_KEY),
    // The kernel taints E unless the signature verified (sig_ok), whatever the trailer says.
    signed: signature === "trusted",
    intree: m.intree,
    ...(m.srcversion === undefined ? {} : { srcversion: m.srcversion }),
    ...(m.buildId === undefined ? {} : { buildId: m.buildId }),
    patch: m.livepatch ? { enabled: true, transition: { target: true, startedAt: now, reversed: false } } : null,
  };
  const insmods = { ...state.insmods, [m.name]: (state.insmods[m.name] ?? 0) + 1 };
  return { ...state, tainted: state.tainted | taintBits(module), modules: [...state.modules, module], insmods };
}

export function rmmod(state: SimState, config: SimConfig, name: string): SimState {
  const module = state.modules.find((m) => m.name === name);
  if (!module) return fail("ENOENT", `Module ${name} is not currently loaded`);
  if (config.modulesDisabled) fail("EPERM", "Operation not permitted");
  if (refcnt(module) > 0) fail("EWOULDBLOCK", `Module ${name} is in use`);
  return { ...state, modules: state.modules.filter((m) => m !== module) };
}

function parseBool(value: string): boolean | undefined {
  const v = value.trim();
  if (v === "1" || v === "Y" || v === "y") return true;
  if (v === "0" || v === "N" || v === "n") return false;
  return undefined;
}

/** A write to /sys/kernel/livepatch/<name>/<attribute>. */
export function writeAttribute(state: SimState, name: string, attribute: string, value: string, now: number): SimState {
  const module = state.modules.find((m) => m.name === name && m.patch);
  const patch = module?.patch;
  if (!module || !patch) return fail("ENOENT", "No such file or directory");
  const moving = inTransition(state);
  switch (attribute) {
    case "enabled": {
      const wanted = parseBool(value);
      if (wanted === undefined || wanted === patch.enabled) return fail("EINVAL", "Invalid argument");
      const reversed = patch.transition !== null; // writing to the patch in transition reverses it
      if (!reversed && wanted) return fail("EINVAL", "Invalid argument"); // a disabled patch cannot be re-enabled
      if (moving && moving !== module) return fail("EBUSY", "Device or resource busy");
      const next: SimModule = { ...module, patch: { enabled: wanted, transition: { target: wanted, startedAt: now, reversed } } };
      return { ...state, modules: state.modules.map((m) => (m === module ? next : m)) };
    }
    case "signal":
      if (moving !== module) return fail("EINVAL", "Invalid argument");
      return { ...state, signals: state.signals + 1 };
    case "force": {
      // Supported for completeness; the driver never writes it.
      if (moving !== module || !patch.transition) return fail("EINVAL", "Invalid argument");
      const forced = { ...patch.transition, reversed: true, startedAt: 0 }; // completes at the next look
      const next: SimModule = { ...module, patch: { ...patch, transition: forced } };
      return { ...state, modules: state.modules.map((m) => (m === module ? next : m)) };
    }
    default:
      return fail("EPERM", "Permission denied");
  }
}

/** A fake task shown under /proc/<pid>/task/<tid>. */
export interface SimTask {
  pid: number;
  tid: number;
  comm: string;
  stack: string;
  patchState: number;
}

const STUCK_STACK = [
  "[<0>] klp_sim_wait_event+0x2e/0x60",
  "[<0>] do_sim_blocking_io+0x1a4/0x2b0",
  "[<0>] __x64_sys_read+0x19/0x20",
  "[<0>] do_syscall_64+0x55/0xb0",
  "[<0>] entry_SYSCALL_64_after_hwframe+0x63/0xcd",
].join("\n");

/**
 * Tasks to show: pid 1 always; in stall mode, while a forward transition runs, two threads of a
 * "stuck-worker" process still in the old state. patch_state is -1 outside transitions.
 */
export function simTasks(state: SimState, config: SimConfig): SimTask[] {
  const t = inTransition(state)?.patch?.transition;
  const target = t ? (t.target ? 1 : 0) : -1;
  const tasks: SimTask[] = [{ pid: 1, tid: 1, comm: "systemd", stack: "[<0>] ep_poll+0x2a8/0x2e0", patchState: target }];
  if (t && config.stall && !t.reversed) {
    const old = t.target ? 0 : 1;
    tasks.push(
      { pid: 4242, tid: 4242, comm: "stuck-worker", stack: STUCK_STACK, patchState: old },
      { pid: 4242, tid: 4243, comm: "stuck-worker", stack: STUCK_STACK, patchState: old },
    );
  }
  return tasks;
}
