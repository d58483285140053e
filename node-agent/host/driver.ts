import type { Logger } from "pino";
import { formatRecord, parseRecord, type AgentRecord } from "./agent-record.ts";
import { checkedModuleName, type DriverContext } from "./driver-context.ts";
import { isHostError, type HostErrorDetails } from "./host-error.ts";
import { inspectHost, type HostState } from "./inspect.ts";
import { KernelView } from "./kernel-state.ts";
import { KpatchStore } from "./kpatch-store.ts";
import { loadPatch, type LoadResult, type LoadTarget, type TransitionOptions } from "./load.ts";
import { moduleInfo, type ModuleInfo } from "./module-info.ts";
import { createNodeHostFs } from "./node-host-fs.ts";
import { systemClock, type Clock, type HostFs, type ModuleLoader } from "./ports.ts";
import { readPreflight, type Preflight } from "./preflight.ts";
import type { Reason } from "./reasons.ts";
import { KPATCH_TIMING, type HostTiming } from "./timing.ts";
import { removeLeftover, unloadPatch, type RemoveLeftoverResult, type UnloadResult } from "./unload.ts";
import { DEFAULT_MAX_MODULE_BYTES, verifyModule, type VerifiedModule, type VerifyExpectation } from "./verify.ts";

export interface HostDriverOptions {
  /** Root of the host filesystem (default "/"; in a pod typically a hostPath mount). */
  hostRoot?: string;
  /** The kernel: createLoader(hostRoot, "auto" | "kmod" | "sim"). */
  loader: ModuleLoader;
  /** Host file access (default: node:fs under hostRoot). */
  fs?: HostFs;
  /** Time source and sleep (default: the system clock). */
  clock?: Clock;
  log: Logger;
  limits?: { maxModuleBytes?: number };
  /** kpatch's waits and retries (default KPATCH_TIMING). */
  timing?: Partial<HostTiming>;
}

export interface InstallOptions {
  /** Release directory to stage into; the module's vermagic must name it. */
  kernelRelease: string;
  /** File name stem and expected module name (default: the module's own name). */
  name?: string;
  /** Pinned digest; omitted: the bytes' own digest. */
  sha256?: string;
  /** Replace a different build already staged under the same name (default false: AlreadyInstalled). */
  overwrite?: boolean;
}

export interface InstallResult {
  name: string;
  kernelRelease: string;
  /** Host path of the staged file. */
  file: string;
  sha256: string;
  /** The same bytes were already staged: nothing was written. */
  alreadyInstalled: boolean;
  module: VerifiedModule;
}

export interface UninstallResult {
  name: string;
  kernelRelease: string;
  /** Host path removed; undefined when nothing was installed. */
  removed: string | undefined;
}

export type BatchFailure = { name: string; reason: Reason; message: string; details?: HostErrorDetails };

export interface LoadAllResult {
  kernelRelease: string;
  loaded: LoadResult[];
  failed: BatchFailure[];
}

export interface UnloadAllResult {
  unloaded: string[];
  failed: BatchFailure[];
}

export interface HostDriver {
  readonly hostRoot: string;
  preflight(): Promise<Preflight>;
  inspect(): Promise<HostState>;
  /** kpatch info: a staged module (by name, running release by default) or given bytes, parsed. */
  info(target: LoadTarget, kernelRelease?: string): Promise<ModuleInfo>;
  /** Pure checks of module bytes; throws HostError. */
  verify(bytes: Uint8Array, expect: VerifyExpectation): VerifiedModule;
  install(bytes: Uint8Array, options: InstallOptions): Promise<InstallResult>;
  uninstall(name: string, kernelRelease: string): Promise<UninstallResult>;
  load(target: LoadTarget, options?: TransitionOptions): Promise<LoadResult>;
  /**
   * Verifies `bytes` and loads them from /var/lib/kpatch/.loading, which nothing loads at boot;
   * the file goes once the load ends either way. Staging for boot is a separate `install`, which
   * the agent runs only after the module has been live through its soak.
   */
  loadVerified(
    bytes: Uint8Array,
    module: { kernelRelease: string; name: string; sha256: string },
    options?: TransitionOptions,
    /** Called once the file is in /var/lib/kpatch/.loading, before insmod (the tests' crash point). */
    onStaged?: () => void,
  ): Promise<LoadResult>;
  unload(name: string, options?: TransitionOptions): Promise<UnloadResult>;
  removeLeftover(name: string): Promise<RemoveLeftoverResult>;
  /**
   * Stages a module loaded by `loadVerified` for boot, moving its file out of
   * /var/lib/kpatch/.loading; false when that file is gone (the caller installs from bytes).
   */
  persistLoaded(name: string, kernelRelease: string, sha256: string): Promise<boolean>;
  /**
   * Removes temporary files of stagings a killed writer left in /var/lib/kpatch, and the files of
   * loads whose module is not live (an interrupted load, a boot that crashed); returns them.
   */
  sweepTemporaries(): Promise<string[]>;
  /** The agent's record of the modules it put on this host (agent-record.ts); empty when unreadable. */
  readRecord(): Promise<AgentRecord>;
  writeRecord(record: AgentRecord): Promise<void>;
  /** Loads every module staged for the running release, in file-name order; collects failures. */
  loadAll(options?: TransitionOptions): Promise<LoadAllResult>;
  /** Unloads every livepatch and leftover patch module, in passes until none makes progress. */
  unloadAll(options?: TransitionOptions): Promise<UnloadAllResult>;
}

function failure(name: string, error: unknown): BatchFailure {
  if (!isHostError(error)) throw error;
  return { name, reason: error.reason, message: error.message, ...(error.details ? { details: error.details } : {}) };
}

export function createHostDriver(options: HostDriverOptions): HostDriver {
  const hostRoot = options.hostRoot ?? "/";
  const fs = options.fs ?? createNodeHostFs(hostRoot);
  const ctx: DriverContext = {
    fs,
    loader: options.loader,
    view: new KernelView(fs, options.loader),
    store: new KpatchStore(fs, options.log),
    clock: options.clock ?? systemClock,
    log: options.log,
    timing: { ...KPATCH_TIMING, ...options.timing },
    maxModuleBytes: options.limits?.maxModuleBytes ?? DEFAULT_MAX_MODULE_BYTES,
  };

  const driver: HostDriver = {
    hostRoot,
    preflight: () => readPreflight(fs),
    inspect: () => inspectHost(ctx),
    info: (target, kernelRelease) => moduleInfo(ctx, target, kernelRelease),
    verify: (bytes, expect) => verifyModule(bytes, expect, ctx.maxModuleBytes),

    async install(bytes, opts) {
      const module = verifyModule(
        bytes,
        {
          kernelRelease: opts.kernelRelease,
          ...(opts.sha256 === undefined ? {} : { sha256: opts.sha256 }),
          ...(opts.name === undefined ? {} : { moduleName: opts.name }),
        },
        ctx.maxModuleBytes,
      );
      const stem = opts.name ?? module.name;
      const { file, alreadyInstalled } = await ctx.store.write(opts.kernelRelease, `${stem}.ko`, module.name, bytes, opts.overwrite);
      return { name: module.name, kernelRelease: opts.kernelRelease, file, sha256: module.sha256, alreadyInstalled, module };
    },

    async uninstall(name, kernelRelease) {
      const checked = checkedModuleName(name);
      return { name: checked, kernelRelease, removed: await ctx.store.remove(checked, kernelRelease) };
    },

    load: (target, opts) => loadPatch(ctx, target, opts),

    async loadVerified(bytes, m, opts, onStaged) {
      const verified = verifyModule(bytes, { kernelRelease: m.kernelRelease, sha256: m.sha256, moduleName: m.name }, ctx.maxModuleBytes);
      const fileName = `${verified.name}.ko`;
      const file = await ctx.store.writeLoading(fileName, bytes);
      onStaged?.();
      try {
        return await loadPatch(ctx, { file: fs.resolve(file), bytes }, opts);
      } catch (error) {
        await ctx.store.removeLoading(fileName).catch((err: unknown) => ctx.log.warn({ err, file }, "could not remove a failed load's file"));
        throw error;
      }
    },

    async readRecord() {
      const { record, error } = parseRecord(await ctx.store.readRecord());
      if (error) ctx.log.warn({ error }, "the agent's record on the host is unreadable; starting from an empty one");
      return record;
    },
    writeRecord: (record) => ctx.store.writeRecord(record.size > 0 ? formatRecord(record) : undefined),

    persistLoaded: (name, kernelRelease, sha256) => ctx.store.persistLoading(`${checkedModuleName(name)}.ko`, kernelRelease, sha256),
    async unload(name, opts) {
      const r = await unloadPatch(ctx, name, opts);
      await ctx.store.removeLoading(`${checkedModuleName(name)}.ko`);
      return r;
    },
    async removeLeftover(name) {
      const r = await removeLeftover(ctx, name);
      await ctx.store.removeLoading(`${checkedModuleName(name)}.ko`);
      return r;
    },
    async sweepTemporaries() {
      const live = new Set((await ctx.view.patches()).filter((p) => p.enabled).map((p) => p.name));
      return ctx.store.sweepTemporaries(live);
    },

    async loadAll(opts) {
      const { kernelRelease } = await readPreflight(fs);
      const result: LoadAllResult = { kernelRelease, loaded: [], failed: [] };
      for (const staged of await ctx.store.staged(kernelRelease)) {
        try {
          result.loaded.push(await loadPatch(ctx, { file: fs.resolve(staged.file), bytes: staged.bytes }, opts));
        } catch (error) {
          result.failed.push(failure(staged.name, error));
        }
      }
      return result;
    },

    async unloadAll(opts) {
      const result: UnloadAllResult = { unloaded: [], failed: [] };
      for (let progress = true; progress; ) {
        progress = false;
        const failed: BatchFailure[] = [];
        const state = await inspectHost(ctx);
        const names = [...new Set([...state.livepatches.map((p) => p.name), ...state.modules.map((m) => m.name)])];
        for (const name of names) {
          try {
            const unloaded = await unloadPatch(ctx, name, opts);
            if (unloaded.removed || unloaded.disabled) {
              result.unloaded.push(name);
              progress = true;
            }
          } catch (error) {
            failed.push(failure(name, error));
          }
        }
        result.failed = failed;
      }
      return result;
    },
  };
  return driver;
}
