import type { StalledTask } from "./host-error.ts";
import type { HostReader } from "./ports.ts";

/** Most tasks listed in a report, so a stall on a busy node does not produce a huge status. */
export const MAX_STALLED_TASKS = 50;

/** A task blocks the transition when its patch_state is set (not -1) and differs from the target. */
export function isStalled(patchState: number, target: boolean): boolean {
  return patchState !== -1 && patchState !== (target ? 1 : 0);
}

function isNumeric(name: string): boolean {
  return /^\d+$/.test(name);
}

/**
 * Tasks whose /proc/<pid>/task/<tid>/patch_state shows they have not reached the transition's
 * target, with their comm and (when readable) kernel stack, like kpatch's stalled-task report.
 */
export async function findStalledTasks(fs: HostReader, target: boolean, limit = MAX_STALLED_TASKS): Promise<StalledTask[]> {
  const found: StalledTask[] = [];
  const pids = ((await fs.list("/proc")) ?? []).filter(isNumeric).sort((a, b) => Number(a) - Number(b));
  for (const pid of pids) {
    const tids = ((await fs.list(`/proc/${pid}/task`).catch(() => undefined)) ?? []).filter(isNumeric);
    for (const tid of tids) {
      const base = `/proc/${pid}/task/${tid}`;
      const stateText = await readOptional(fs, `${base}/patch_state`);
      const patchState = Number.parseInt(stateText?.trim() ?? "-1", 10);
      if (Number.isNaN(patchState) || !isStalled(patchState, target)) continue;
      const [comm, stack] = await Promise.all([readOptional(fs, `${base}/comm`), readOptional(fs, `${base}/stack`)]);
      found.push({
        pid: Number(pid),
        tid: Number(tid),
        comm: comm?.trim() ?? "",
        patchState,
        ...(stack === undefined ? {} : { stack: stack.trimEnd() }),
      });
      if (found.length >= limit) return found;
    }
  }
  return found;
}

/** Reads a file that may be unreadable (a stack needs root, a task may exit): never throws. */
async function readOptional(fs: HostReader, path: string): Promise<string | undefined> {
  try {
    return await fs.readText(path);
  } catch {
    return undefined;
  }
}
