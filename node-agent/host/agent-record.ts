/**
 * The agent's own record, on the host, of the patch modules it put there and for which patch.
 * It outlives the agent's pod and the patch's API object: when a patch is deleted while its node
 * cannot answer (the operator stops waiting for it), the agent that runs there again finds the
 * patch's modules in this record, with no patch to keep them for, and takes them off the host.
 * Written atomically (temporary file, fsync, rename) beside /var/lib/kpatch's release directories,
 * which nothing loads at boot.
 */
import { z } from "zod";

export const RecordedModule = z.object({
  /** The KernelLivePatch that owns the module (name and uid: a patch re-created under the name is another). */
  patch: z.string(),
  uid: z.string(),
  sha256: z.string(),
});
export type RecordedModule = z.infer<typeof RecordedModule>;

const RecordFile = z.object({ version: z.literal(1), modules: z.record(z.string(), RecordedModule) });

/** Module name → owner. */
export type AgentRecord = ReadonlyMap<string, RecordedModule>;

/** The record in a file's text; a missing or unreadable file is an empty record (nothing is claimed). */
export function parseRecord(text: string | undefined): { record: AgentRecord; error?: string } {
  if (text === undefined) return { record: new Map() };
  try {
    const r = RecordFile.safeParse(JSON.parse(text));
    if (r.success) return { record: new Map(Object.entries(r.data.modules)) };
    return { record: new Map(), error: r.error.issues[0]?.message ?? "invalid" };
  } catch (err) {
    return { record: new Map(), error: (err as Error).message };
  }
}

export function formatRecord(record: AgentRecord): string {
  const modules = Object.fromEntries([...record.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return `${JSON.stringify({ version: 1, modules }, null, 1)}\n`;
}
