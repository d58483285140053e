// Waiting on a VM-node suite's cluster: poll until something holds, failing at once on a kernel panic
// nobody announced in any of the suite's guests (they reboot with panic=1, so a wait would otherwise
// only time out).
import { expect } from "vitest";
import type { KernelLivePatch } from "../../crds/schema.ts";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import type { VmNode } from "../support/vm-node.ts";

export type Eventually = <T>(what: string, timeoutMs: number, f: () => Promise<T | undefined | false>, everyMs?: number) => Promise<T>;

/** `eventually` for the guests `nodes()` returns at each poll. */
export function eventuallyOn(nodes: () => readonly VmNode[]): Eventually {
  return async <T>(what: string, timeoutMs: number, f: () => Promise<T | undefined | false>, everyMs = 2000): Promise<T> => {
    const end = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      for (const node of nodes()) {
        const panic = node.unexpectedPanics()[0];
        if (panic) throw new Error(`kernel panic (not expected) in ${node.nodeName}, boot ${panic.boot}, while waiting for ${what}: ${panic.line}`);
      }
      try {
        const v = await f();
        if (v !== undefined && v !== false) return v;
      } catch (e) {
        last = e;
      }
      if (Date.now() > end) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}${last ? `: ${String(last)}` : ""}`);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  };
}

/** Ready=True for the patch's current generation, then `kubectl wait --for=condition=Ready` (which must return 0). */
export async function waitPatchReady(
  o: { cp: ControlPlaneClient; read: (name: string) => Promise<KernelLivePatch | undefined>; eventually: Eventually },
  name: string,
  timeoutMs = 300_000,
): Promise<KernelLivePatch> {
  const p = await o.eventually(`${name} Ready for its current generation`, timeoutMs, async () => {
    const p = await o.read(name);
    const c = p?.status?.conditions?.find((x) => x.type === "Ready");
    return c?.status === "True" && c.observedGeneration === p?.metadata.generation && p?.status?.observedGeneration === p?.metadata.generation ? p : undefined;
  });
  const r = await o.cp.kubectl(["wait", "--for=condition=Ready", `klp/${name}`, "--timeout=60s"]);
  expect(r.code, `kubectl wait: ${r.stderr}`).toBe(0);
  expect(r.stdout).toContain("condition met");
  return p;
}
