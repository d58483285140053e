// The agent's own account of what it did, read from a VM node's pod logs (its JSON log lines).
import type { VmNode } from "../support/vm-node.ts";

/** The agent's log messages for what it does to the host (the kernel or /var/lib/kpatch). */
export const HOST_ACTIONS = ["loaded", "unloaded", "uninstalled", "removed leftover module"];

export interface AgentLogLine {
  /** <namespace>_<pod>_<uid>: the pod that wrote it. */
  pod: string;
  msg: Record<string, unknown>;
}

/** Agent log lines (JSON messages) of every agent container the guest ran, in order. */
export function agentLog(node: VmNode): AgentLogLine[] {
  const out: AgentLogLine[] = [];
  for (const line of node.podLog().split("\n")) {
    const m = /^(kpatch-system_kpatch-agent-[^/]+)\/agent \S+ std(?:out|err) [FP] (\{.*\})$/.exec(line);
    if (!m) continue;
    try {
      out.push({ pod: m[1]!, msg: JSON.parse(m[2]!) as Record<string, unknown> });
    } catch {
      /* partial line */
    }
  }
  return out;
}
