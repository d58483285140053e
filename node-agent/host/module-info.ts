import { checkedModuleName, type DriverContext } from "./driver-context.ts";
import { hostError } from "./host-error.ts";
import type { LivepatchStatus, LoadedModule } from "./kernel-state.ts";
import { sha256Hex, type InstalledModule } from "./kpatch-store.ts";
import type { LoadTarget } from "./load.ts";
import { parseModule, type ParsedModule } from "./parse-module.ts";
import { readPreflightFacts } from "./preflight.ts";

export interface ModuleInfo {
  /** The file described: a host path for a staged module, the given path otherwise. */
  file: string;
  sha256: string;
  module: ParsedModule;
  /** Where a module of this name is staged (every release). */
  installed: InstalledModule[];
  /** Its livepatch state, when one of that name is in /sys/kernel/livepatch. */
  livepatch: LivepatchStatus | undefined;
  /** Its /sys/module entry, when loaded. */
  loaded: LoadedModule | undefined;
}

/** kpatch info: what a module file says about itself, plus where it is staged and loaded. */
export async function moduleInfo(ctx: DriverContext, target: LoadTarget, kernelRelease?: string): Promise<ModuleInfo> {
  const { file, bytes } = await read(ctx, target, kernelRelease);
  const parsed = parseModule(bytes, file);
  if (!parsed.ok) throw hostError(parsed.reason, { file, detail: parsed.detail, arch: parsed.arch });
  const name = parsed.module.name;
  const running = (await readPreflightFacts(ctx.fs)).kernelRelease;
  const [installed, livepatch, loaded] = await Promise.all([
    ctx.store.list(running),
    ctx.view.patch(name),
    ctx.view.module(name),
  ]);
  return {
    file,
    sha256: sha256Hex(bytes),
    module: parsed.module,
    installed: installed.filter((i) => i.name === name),
    livepatch,
    loaded,
  };
}

async function read(ctx: DriverContext, target: LoadTarget, kernelRelease?: string): Promise<{ file: string; bytes: Uint8Array }> {
  if (typeof target !== "string") return target;
  const name = checkedModuleName(target);
  const release = kernelRelease ?? (await readPreflightFacts(ctx.fs)).kernelRelease;
  const staged = await ctx.store.find(name, release);
  if (!staged) throw hostError("NotInstalled", { name, kernelRelease: release });
  return { file: staged.file, bytes: staged.bytes };
}
