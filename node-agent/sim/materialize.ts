import { promises as fs, readFileSync } from "node:fs";
import type { SimConfig } from "./sim-config.ts";
import { moduleTaint, refcnt, simTasks, type SimState } from "./sim-kernel.ts";
import { BUILD_ID_SECTION, encodeBuildIdNote } from "../host/build-id.ts";
import { simPath } from "./sim-files.ts";

/**
 * Writes the simulated kernel's state into the fake /sys and /proc under the root, so the
 * driver (and any outside observer: cat, the QEMU test's scripts) reads it like the real files.
 */

async function put(root: string, hostPath: string, text: string): Promise<void> {
  const file = simPath(root, hostPath);
  let current: string | undefined;
  try {
    current = readFileSync(file, "utf8"); // small tmpfs file, as in sim-files.ts
  } catch {
    current = undefined;
  }
  if (current === text) return;
  await fs.mkdir(simPath(root, hostPath.slice(0, hostPath.lastIndexOf("/"))), { recursive: true });
  await fs.writeFile(file, text);
}

async function putBytes(root: string, hostPath: string, bytes: Buffer): Promise<void> {
  const file = simPath(root, hostPath);
  const current = await fs.readFile(file).catch(() => undefined);
  if (current?.equals(bytes)) return;
  await fs.mkdir(simPath(root, hostPath.slice(0, hostPath.lastIndexOf("/"))), { recursive: true });
  await fs.writeFile(file, bytes);
}

async function entries(root: string, hostPath: string): Promise<string[]> {
  return fs.readdir(simPath(root, hostPath)).catch(() => []);
}

async function remove(root: string, hostPath: string): Promise<void> {
  await fs.rm(simPath(root, hostPath), { recursive: true, force: true });
}

const bool = (b: boolean) => (b ? "1\n" : "0\n");

export function lockdownText(mode: SimConfig["lockdown"]): string {
  return ["none", "integrity", "confidentiality"].map((m) => (m === mode ? `[${m}]` : m)).join(" ") + "\n";
}

/** Static files that only change with the configuration or a reboot. */
export async function materializeConfig(root: string, config: SimConfig, bootId: string): Promise<void> {
  await put(root, "/proc/sys/kernel/osrelease", `${config.kernelRelease}\n`);
  await put(root, "/proc/sys/kernel/random/boot_id", `${bootId}\n`);
  await put(root, "/proc/sys/kernel/modules_disabled", bool(config.modulesDisabled));
  await put(root, "/proc/sys/kernel/ftrace_enabled", bool(config.ftraceEnabled));
  await put(root, "/sys/module/module/parameters/sig_enforce", config.signatureEnforce ? "Y\n" : "N\n");
  await put(root, "/sys/kernel/security/lockdown", lockdownText(config.lockdown));
  if (config.livepatchSupported) await fs.mkdir(simPath(root, "/sys/kernel/livepatch"), { recursive: true });
  else await remove(root, "/sys/kernel/livepatch");
  await fs.mkdir(simPath(root, "/var/lib/kpatch"), { recursive: true });
}

/** Kernel state: tainted, /sys/module/<m>, /sys/kernel/livepatch/<p>, /proc/<pid>/task/<tid>. */
export async function materializeState(root: string, config: SimConfig, state: SimState): Promise<void> {
  await put(root, "/proc/sys/kernel/tainted", `${state.tainted}\n`);

  const loaded = new Set(state.modules.map((m) => m.name));
  for (const name of await entries(root, "/sys/module")) {
    const simulated = await fs.stat(simPath(root, `/sys/module/${name}/refcnt`)).then(() => true, () => false);
    if (simulated && !loaded.has(name)) await remove(root, `/sys/module/${name}`);
  }
  const patched = new Set(state.modules.filter((m) => m.patch).map((m) => m.name));
  for (const name of await entries(root, "/sys/kernel/livepatch")) {
    if (!patched.has(name)) await remove(root, `/sys/kernel/livepatch/${name}`);
  }

  for (const m of state.modules) {
    const dir = `/sys/module/${m.name}`;
    await put(root, `${dir}/refcnt`, `${refcnt(m)}\n`);
    await put(root, `${dir}/taint`, `${moduleTaint(m)}\n`);
    await put(root, `${dir}/initstate`, "live\n");
    if (m.srcversion) await put(root, `${dir}/srcversion`, `${m.srcversion}\n`);
    if (m.buildId) await putBytes(root, `${dir}/notes/${BUILD_ID_SECTION}`, encodeBuildIdNote(m.buildId));
    if (!m.patch || !config.livepatchSupported) continue;
    const lp = `/sys/kernel/livepatch/${m.name}`;
    await put(root, `${lp}/enabled`, bool(m.patch.enabled));
    await put(root, `${lp}/transition`, bool(m.patch.transition !== null));
    await put(root, `${lp}/force`, "");
    if (config.replaceAttribute) await put(root, `${lp}/replace`, bool(m.replace));
    if (config.signalAttribute) await put(root, `${lp}/signal`, "");
  }

  const tasks = simTasks(state, config);
  const pids = new Set(tasks.map((t) => String(t.pid)));
  for (const name of await entries(root, "/proc")) {
    if (/^\d+$/.test(name) && !pids.has(name)) await remove(root, `/proc/${name}`);
  }
  for (const t of tasks) {
    const base = `/proc/${t.pid}/task/${t.tid}`;
    await put(root, `/proc/${t.pid}/comm`, `${t.comm}\n`);
    await put(root, `${base}/comm`, `${t.comm}\n`);
    await put(root, `${base}/stack`, `${t.stack}\n`);
    await put(root, `${base}/patch_state`, `${t.patchState}\n`);
  }
  for (const pid of pids) {
    const tids = new Set(tasks.filter((t) => String(t.pid) === pid).map((t) => String(t.tid)));
    for (const tid of await entries(root, `/proc/${pid}/task`)) {
      if (!tids.has(tid)) await remove(root, `/proc/${pid}/task/${tid}`);
    }
  }
}
