/**
 * What the rollout decisions remember of one patch generation between reconciles, in memory only:
 * status.rollout has no room for it, and the status the operator writes is not read back (see
 * cachedPatch). Lost on a restart or a change of leader: then the progress deadline of a node that
 * has not reported yet starts again, and a health-gate failure whose evidence is gone (the Node is
 * Ready again) is forgotten. The admitted nodes are not lost: the node objects' projections record
 * them, and the next decision starts from those.
 */
import type { AdmitInput, AdmitResult } from "./admit.ts";
import type { DerivedFailure } from "./settled.ts";

export class RolloutMemory {
  /**
   * When this operator first saw each node admitted and needing a change, for this generation (a
   * node done drops out: should it need a change again, a loaded node that leaves the selector and
   * must unload, its clock starts again).
   */
  readonly admittedAt = new Map<string, Date>();
  /**
   * The nodes this operator's last decision admitted for this generation (undefined: none decided
   * yet). The projections follow it; until a node object shows a node admitted, this is the only
   * record of it, and the next decision keeps it.
   */
  admitted: ReadonlySet<string> | undefined = undefined;
  /** admit's `gateFailed`, fed back to the next decision. */
  gateFailed: ReadonlyMap<string, string> = new Map();
  /** Derived failures already announced, as node/reason. */
  private readonly announced = new Set<string>();

  constructor(
    readonly uid: string | undefined,
    readonly generation: number,
  ) {}

  /** What the next decision takes from here. */
  get input(): Pick<AdmitInput, "admittedAt" | "gateFailed"> & { readonly admitted: ReadonlySet<string> | undefined } {
    return { admittedAt: this.admittedAt, gateFailed: this.gateFailed, admitted: this.admitted };
  }

  /**
   * Takes in a decision made at `now`: the admitted nodes needing a change not seen so before were
   * admitted for it now, the health-gate failures stand. Returns the derived failures not announced
   * before.
   */
  remember(result: Pick<AdmitResult, "rollout" | "needing" | "derived" | "gateFailed">, now: Date): Array<[string, DerivedFailure]> {
    this.admitted = new Set(result.rollout.admitted);
    const needing = new Set(result.needing);
    for (const node of this.admittedAt.keys()) if (!needing.has(node)) this.admittedAt.delete(node);
    for (const node of needing) if (!this.admittedAt.has(node)) this.admittedAt.set(node, now);
    this.gateFailed = result.gateFailed;
    const fresh: Array<[string, DerivedFailure]> = [];
    for (const [node, f] of result.derived) {
      const key = `${node}/${f.reason}`;
      if (this.announced.has(key)) continue;
      this.announced.add(key);
      fresh.push([node, f]);
    }
    return fresh;
  }
}

/** One RolloutMemory per patch name, started afresh when the patch (its uid) or its generation changes. */
export class RolloutMemories {
  private readonly byName = new Map<string, RolloutMemory>();

  of(name: string, uid: string | undefined, generation: number): RolloutMemory {
    const known = this.byName.get(name);
    if (known && known.uid === uid && known.generation === generation) return known;
    const fresh = new RolloutMemory(uid, generation);
    this.byName.set(name, fresh);
    return fresh;
  }

  /** The patch generation's memory if there is one, without starting one. */
  peek(name: string, uid: string | undefined, generation: number): RolloutMemory | undefined {
    const known = this.byName.get(name);
    return known && known.uid === uid && known.generation === generation ? known : undefined;
  }

  forget(name: string): void {
    this.byName.delete(name);
  }
}
