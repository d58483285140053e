import { randomBytes } from "node:crypto";
import { promises as fs, readFileSync } from "node:fs";
import path from "node:path";
import { SIM_CONFIG_FILE, SIM_DIR, SIM_STATE_FILE, SimConfigSchema, type SimConfig } from "./sim-config.ts";
import { SimStateSchema, type SimState } from "./sim-kernel.ts";

/** File I/O of the simulated host: config, state (atomic rename) and a cross-process lock. */

const LOCK_STALE_MS = 10_000;
const LOCK_GIVE_UP_MS = 15_000;

export function simPath(root: string, hostPath: string): string {
  return path.join(root, hostPath);
}

// Config and state are read synchronously: small files on tmpfs, read on every loader call (a
// thousand simulated hosts in one benchmark process spent more CPU on the promise API's
// open/fstat/read/close round trips than on the simulation itself).
export async function readSimConfig(root: string): Promise<SimConfig> {
  return SimConfigSchema.parse(JSON.parse(readFileSync(simPath(root, SIM_CONFIG_FILE), "utf8")));
}

export async function readSimState(root: string): Promise<SimState> {
  return SimStateSchema.parse(JSON.parse(readFileSync(simPath(root, SIM_STATE_FILE), "utf8")));
}

/** Writes a file atomically (temp file + rename) so another process never reads half of it. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  await fs.writeFile(temp, text);
  await fs.rename(temp, file);
}

export async function writeSimConfig(root: string, config: SimConfig): Promise<void> {
  await writeFileAtomic(simPath(root, SIM_CONFIG_FILE), JSON.stringify(config, null, 2) + "\n");
}

export async function writeSimState(root: string, state: SimState): Promise<void> {
  await writeFileAtomic(simPath(root, SIM_STATE_FILE), JSON.stringify(state, null, 2) + "\n");
}

/**
 * Runs `fn` holding /.kpatch-sim/lock (a directory: mkdir is atomic). A lock older than 10 s is
 * taken over (its holder died); waiting gives up after 15 s.
 */
export async function withSimLock<T>(root: string, fn: () => Promise<T>): Promise<T> {
  const lock = simPath(root, `${SIM_DIR}/lock`);
  const start = Date.now();
  for (;;) {
    try {
      await fs.mkdir(lock);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const age = await fs.stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age > LOCK_STALE_MS) {
        await fs.rm(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() - start > LOCK_GIVE_UP_MS) throw new Error(`simulated host lock ${lock} is held`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 8));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}
