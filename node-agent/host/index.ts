/** Public API of the node agent's host layer. */
export { createHostDriver } from "./driver.ts";
export type {
  BatchFailure,
  HostDriver,
  HostDriverOptions,
  InstallOptions,
  InstallResult,
  LoadAllResult,
  UninstallResult,
  UnloadAllResult,
} from "./driver.ts";
export type { LoadResult, LoadTarget, TransitionOptions } from "./load.ts";
export type { ModuleInfo } from "./module-info.ts";
export type { RemoveLeftoverResult, UnloadResult } from "./unload.ts";
export type { HostState, PatchModule } from "./inspect.ts";
export type { LivepatchStatus, PatchState } from "./kernel-state.ts";
export { patchState } from "./kernel-state.ts";
export type { InstalledModule } from "./kpatch-store.ts";
export { KPATCH_DIR, sha256Hex } from "./kpatch-store.ts";
export type { Blocker, Lockdown, Preflight, PreflightFacts } from "./preflight.ts";
export { preflightBlockers } from "./preflight.ts";
export { DEFAULT_MAX_MODULE_BYTES, verifyModule } from "./verify.ts";
export type { VerifiedModule, VerifyExpectation } from "./verify.ts";
export { HostError, hostError, isHostError } from "./host-error.ts";
export type { HostErrorDetails, HostErrorOptions, StalledTask } from "./host-error.ts";
export { describeReason, isReason, REASON_CODES, REASONS, reasonAction } from "./reasons.ts";
export type { Reason, ReasonInfo, ReasonParams } from "./reasons.ts";
export { createLoader, isSimulatedHost } from "./create-loader.ts";
export type { CreateLoaderOptions, LoaderKind } from "./create-loader.ts";
export { createKmodLoader } from "./kmod-loader.ts";
export { createNodeHostFs } from "./node-host-fs.ts";
export { LoaderError, isLoaderError, systemClock } from "./ports.ts";
export type { Clock, FileStat, HostFs, HostReader, LoaderErrno, ModuleLoader, StoreWriter, WritableFile } from "./ports.ts";
export { KPATCH_TIMING } from "./timing.ts";
export type { HostTiming } from "./timing.ts";
export { decodeTaint, parseTaint, TAINT, TAINT_BITS } from "./taint.ts";
export type { DecodedTaint, TaintBit } from "./taint.ts";
export { parseModule } from "./parse-module.ts";
export type { ParsedModule, ParseResult } from "./parse-module.ts";
export { checkModule } from "./check-module.ts";
export type { CheckResult, ModuleExpectation } from "./check-module.ts";
export { isSafeName, isValidModuleName, moduleNameFromFile, normalizeModuleName } from "./names.ts";
