import { buildIdSysfsPath, parseBuildIdNote } from "./build-id.ts";
import type { HostReader, ModuleLoader } from "./ports.ts";
import { parseKernelBool } from "./preflight.ts";
import { parseTaint } from "./taint.ts";

export const LIVEPATCH_DIR = "/sys/kernel/livepatch";
export const MODULE_DIR = "/sys/module";
export const TAINTED_PATH = "/proc/sys/kernel/tainted";

export const livepatchPath = (name: string, attribute?: string) =>
  attribute ? `${LIVEPATCH_DIR}/${name}/${attribute}` : `${LIVEPATCH_DIR}/${name}`;

export type PatchState = "enabled" | "enabling" | "disabled" | "disabling";

/** What kpatch list shows for a patch: the target state, "-ing" while the transition runs. */
export function patchState(enabled: boolean, transition: boolean): PatchState {
  if (transition) return enabled ? "enabling" : "disabling";
  return enabled ? "enabled" : "disabled";
}

export interface LivepatchStatus {
  name: string;
  enabled: boolean;
  transition: boolean;
  /** The `replace` attribute; undefined on kernels without it (6.1). */
  replace: boolean | undefined;
  state: PatchState;
  /** The live module's GNU build-id (its notes in /sys/module); undefined when it shows none. */
  buildId: string | undefined;
}

export interface LoadedModule {
  name: string;
  refcnt: number;
  /** Letters from /sys/module/<m>/taint ("OEK"); "" when absent. */
  taint: string;
}

/** Reads the live kernel state through the ports; refreshes a simulated kernel before each read. */
export class KernelView {
  constructor(
    private readonly fs: HostReader,
    private readonly loader: ModuleLoader,
  ) {}

  async refresh(): Promise<void> {
    await this.loader.refresh?.();
  }

  async patch(name: string): Promise<LivepatchStatus | undefined> {
    await this.refresh();
    return this.readPatch(name);
  }

  async patches(): Promise<LivepatchStatus[]> {
    await this.refresh();
    const names = (await this.fs.list(LIVEPATCH_DIR)) ?? [];
    const all = await Promise.all(names.map((name) => this.readPatch(name)));
    return all.filter((p): p is LivepatchStatus => p !== undefined);
  }

  async module(name: string): Promise<LoadedModule | undefined> {
    await this.refresh();
    return this.readModule(name);
  }

  /** Loadable modules (those with a refcnt attribute) in /sys/module. */
  async modules(): Promise<LoadedModule[]> {
    await this.refresh();
    const names = (await this.fs.list(MODULE_DIR)) ?? [];
    const all = await Promise.all(names.map((name) => this.readModule(name, true)));
    return all.filter((m): m is LoadedModule => m !== undefined);
  }

  async tainted(): Promise<number> {
    await this.refresh();
    return parseTaint((await this.fs.readText(TAINTED_PATH)) ?? "0") ?? 0;
  }

  private async readPatch(name: string): Promise<LivepatchStatus | undefined> {
    const [enabledText, transitionText, replaceText, note] = await Promise.all([
      this.fs.readText(livepatchPath(name, "enabled")),
      this.fs.readText(livepatchPath(name, "transition")),
      this.fs.readText(livepatchPath(name, "replace")),
      this.fs.readBytes(buildIdSysfsPath(name)),
    ]);
    if (enabledText === undefined) return undefined; // gone (or vanishing while we read)
    const enabled = parseKernelBool(enabledText, false);
    const transition = parseKernelBool(transitionText, false);
    const replace = replaceText === undefined ? undefined : parseKernelBool(replaceText, false);
    const buildId = note ? parseBuildIdNote(note) : undefined;
    return { name, enabled, transition, replace, state: patchState(enabled, transition), buildId };
  }

  private async readModule(name: string, requireRefcnt = false): Promise<LoadedModule | undefined> {
    const [stat, refcntText, taintText] = await Promise.all([
      this.fs.stat(`${MODULE_DIR}/${name}`),
      this.fs.readText(`${MODULE_DIR}/${name}/refcnt`),
      this.fs.readText(`${MODULE_DIR}/${name}/taint`),
    ]);
    if (stat?.kind !== "dir") return undefined;
    if (requireRefcnt && refcntText === undefined) return undefined; // built-in module
    const refcnt = Number.parseInt(refcntText?.trim() ?? "0", 10);
    return { name, refcnt: Number.isNaN(refcnt) ? 0 : refcnt, taint: taintText?.trim() ?? "" };
  }
}
