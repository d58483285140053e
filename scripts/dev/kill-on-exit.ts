// Child processes a dev or test control plane must never leave behind (an API server, a QEMU
// guest): SIGKILLed when the owning process exits without stopping them, or gets SIGTERM/SIGHUP on
// its own (a CI timeout, a closed terminal) — then the signal is re-raised once no other handler is
// left. Ctrl-C reaches the whole process group, children included, so SIGINT is left alone.
import type { ChildProcess } from "node:child_process";

const live = new Set<ChildProcess>();
let hooked = false;

/** Kills `child` if this process ends first; forgets it once it exits or fails to spawn. */
export function killOnExit(child: ChildProcess): void {
  installHook();
  live.add(child);
  child.once("exit", () => live.delete(child));
  child.once("error", () => live.delete(child));
}

function installHook(): void {
  if (hooked) return;
  hooked = true;
  const killAll = () => {
    for (const c of live) {
      try {
        c.kill("SIGKILL");
      } catch {
        /* gone */
      }
    }
  };
  process.once("exit", killAll);
  for (const sig of ["SIGTERM", "SIGHUP"] as const) {
    const onSignal = () => {
      killAll();
      process.removeListener(sig, onSignal);
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}
