import type { Condition } from "../../crds/schema.ts";

export type ConditionInput = Omit<Condition, "lastTransitionTime">;

/**
 * Merges freshly computed conditions into the existing list: lastTransitionTime moves only when
 * the status value changes (the standard metav1.Condition contract).
 */
export function mergeConditions(existing: readonly Condition[] | undefined, next: readonly ConditionInput[], now: Date): Condition[] {
  return next.map((c) => {
    const before = existing?.find((e) => e.type === c.type);
    const lastTransitionTime = before && before.status === c.status ? before.lastTransitionTime : now.toISOString();
    return { ...c, lastTransitionTime };
  });
}
