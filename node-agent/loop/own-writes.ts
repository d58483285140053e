/**
 * Read-your-writes for the agent's entries. A delivery of the node object can be older than the
 * agent's last write (the write's own event is still on its way): believing it, the agent would
 * see its previous entry and write the same entry again. resourceVersions are opaque (the API
 * promises no order), so the agent tells an older delivery from a newer one by content: it
 * remembers the entries it wrote (and the resourceVersion its last write returned). Pure apart
 * from the map it keeps.
 *
 * What a delivery's entry says, against the remembered writes:
 * - the last write (by content, or the object at exactly the version that write returned): the
 *   delivery includes the write; believed;
 * - one of the agent's earlier writes: it predates the last write; the last write stands (while
 *   that write is in flight, the one before it: the server may still refuse the last one);
 * - none, while no delivery has shown any of the agent's writes yet: it predates them; as above;
 * - anything else (the entry removed or changed by someone else after the watch had shown the
 *   agent's writes): believed, and the memory of this patch's writes goes.
 */
import type { NodeEntry } from "../../crds/schema.ts";

/** Earlier writes remembered per patch: a watch lagging by more writes than this is not expected. */
export const EARLIER_WRITES_KEPT = 8;

interface Written {
  readonly entry: NodeEntry;
  /** The node object's resourceVersion the write produced (undefined while in flight, or unsaid). */
  readonly resourceVersion: string | undefined;
  readonly earlier: readonly NodeEntry[];
  /** A delivery has shown one of these writes: an entry missing from a later one was removed. */
  readonly shown: boolean;
  /** The last write has not been answered yet. */
  readonly inFlight: boolean;
}

export type Verdict = "believed" | "stale" | "foreign";

/** How a delivered entry relates to the writes remembered for its patch (see the module comment). */
export function judgeDelivery(delivered: NodeEntry | undefined, resourceVersion: string | undefined, mine: Written): Verdict {
  if (resourceVersion !== undefined && resourceVersion === mine.resourceVersion) return "believed";
  if (delivered === undefined) return mine.shown ? "foreign" : "stale";
  if (sameEntry(delivered, mine.entry)) return "believed";
  return mine.earlier.some((e) => sameEntry(e, delivered)) ? "stale" : "foreign";
}

export class OwnWrites {
  private readonly byPatch = new Map<string, Written>();

  /** The entry the agent should believe for a patch, given what a delivery says. */
  entryFor(key: string, delivered: NodeEntry | undefined, resourceVersion: string | undefined): NodeEntry | undefined {
    const mine = this.byPatch.get(key);
    if (!mine) return delivered;
    const verdict = judgeDelivery(delivered, resourceVersion, mine);
    if (verdict === "stale") return mine.inFlight ? (mine.earlier[0] ?? delivered) : mine.entry;
    if (verdict === "foreign") this.byPatch.delete(key);
    else if (!mine.shown) this.byPatch.set(key, { ...mine, shown: true });
    return delivered;
  }

  /** A write starts: from now on a delivery holding the previous entry is older than this one. */
  writing(key: string, entry: NodeEntry): void {
    const prev = this.byPatch.get(key);
    const earlier = prev ? [prev.entry, ...prev.earlier].filter((e) => !sameEntry(e, entry)).slice(0, EARLIER_WRITES_KEPT) : [];
    this.byPatch.set(key, { entry, resourceVersion: undefined, earlier, shown: prev?.shown ?? false, inFlight: true });
  }

  /** The write of `entry` succeeded and produced this version of the node object. */
  written(key: string, entry: NodeEntry, resourceVersion: string | undefined): void {
    const mine = this.byPatch.get(key);
    if (mine?.entry === entry) this.byPatch.set(key, { ...mine, resourceVersion: resourceVersion || undefined, inFlight: false });
  }

  /** The write failed: what the server holds is unknown, so deliveries are believed again. */
  failed(key: string): void {
    this.byPatch.delete(key);
  }

  /** Forgets the patches for which `keep` is false (gone from the node's object). */
  retain(keep: (key: string) => boolean): void {
    for (const k of [...this.byPatch.keys()]) if (!keep(k)) this.byPatch.delete(k);
  }
}

/** The same entry apart from when its phase last changed. */
export function sameEntry(a: NodeEntry, b: NodeEntry): boolean {
  const strip = ({ lastTransitionTime: _a, ...rest }: NodeEntry) => rest;
  return JSON.stringify(sortKeys(strip(a))) === JSON.stringify(sortKeys(strip(b)));
}

function sortKeys<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) as T;
}
