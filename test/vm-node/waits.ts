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

/** Ready=True, and the patch's status written for the generation it carries. */
function readyForItsGeneration(p: KernelLivePatch | undefined): boolean {
  const c = p?.status?.conditions?.find((x) => x.type === "Ready");
  return c?.status === "True" && c.observedGeneration === p?.metadata.generation && p?.status?.observedGeneration === p?.metadata.generation;
}

/**
 * Ready=True for the patch's current generation, then `kubectl wait --for=condition=Ready` (which
 * must return 0). `read` may be a watch's cache, which can still hold the generation before a spec
 * change the caller has just made (and that one is Ready): what it shows is confirmed by `get`, a
 * GET the API server serves from etcd, so the patch returned is the current generation's.
 */
export async function waitPatchReady(
  o: {
    cp: Pick<ControlPlaneClient, "kubectl">;
    /** The patch, perhaps from a watch's cache. */
    read: (name: string) => Promise<KernelLivePatch | undefined>;
    /** The patch by a GET. */
    get: (name: string) => Promise<KernelLivePatch | undefined>;
    eventually: Eventually;
  },
  name: string,
  timeoutMs = 300_000,
): Promise<KernelLivePatch> {
  const p = await o.eventually(`${name} Ready for its current generation`, timeoutMs, async () => {
    if (!readyForItsGeneration(await o.read(name))) return undefined;
    const fresh = await o.get(name);
    return readyForItsGeneration(fresh) ? fresh : undefined;
  });
  const r = await o.cp.kubectl(["wait", "--for=condition=Ready", `klp/${name}`, "--timeout=60s"]);
  expect(r.code, `kubectl wait: ${r.stderr}`).toBe(0);
  expect(r.stdout).toContain("condition met");
  return p;
}
