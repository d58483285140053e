/**
 * The node write policy as a condition on the agent's KernelLivePatchNode, where an admin reads it
 * (`kubectl get klpn <node> -o yaml`): the event on the Node ages out and the metric needs
 * Prometheus, the condition stays as long as the verdict does.
 */
import type { Condition } from "../../crds/schema.ts";
import type { PolicyVerdict } from "./policy-check.ts";

export const NODE_WRITE_POLICY = "NodeWritePolicy";

/** A condition as the agent decides it; the transition time is set when it is written. */
export type AgentCondition = Omit<Condition, "lastTransitionTime" | "observedGeneration">;

/** The verdict as the NodeWritePolicy condition. Pure. */
export function nodeWritePolicyCondition(verdict: PolicyVerdict): AgentCondition {
  switch (verdict.state) {
    case "enforced":
      return { type: NODE_WRITE_POLICY, status: "True", reason: "NodeWritePolicyEnforced", message: verdict.message };
    case "missing":
      return { type: NODE_WRITE_POLICY, status: "False", reason: "NodeWritePolicyMissing", message: verdict.message };
    case "unverified":
      return { type: NODE_WRITE_POLICY, status: "Unknown", reason: "NodeWritePolicyUnverified", message: verdict.message };
  }
}

/**
 * The conditions to write: each with the transition time of the one written before while its
 * status has not changed (the metav1.Condition contract), else `now`. Pure.
 */
export function withTransitionTimes(next: readonly AgentCondition[], written: readonly Condition[] | undefined, now: Date): Condition[] {
  return next.map((c) => {
    const before = written?.find((w) => w.type === c.type);
    return { ...c, lastTransitionTime: before && before.status === c.status ? before.lastTransitionTime : now.toISOString() };
  });
}

/** Whether the object already carries this condition as decided (no write needed). Pure. */
export function conditionWritten(c: AgentCondition, written: readonly Condition[] | undefined): boolean {
  const w = written?.find((x) => x.type === c.type);
  return w !== undefined && w.status === c.status && w.reason === c.reason && w.message === c.message;
}
