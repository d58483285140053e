/**
 * The agent's check, before it acts, that the API server keeps it to its own node. RBAC lets every
 * agent patch `kernellivepatchnodes/status`; only an admission policy (the chart's
 * ValidatingAdmissionPolicy) stops an agent, or whoever holds its token, from writing another
 * node's entries, which the operator would roll up as that node's. So the agent asks the API
 * server itself: a server-side dry run (`dryRun=All`: authorized and admitted like a real write,
 * never stored) of a status write to another node's KernelLivePatchNode. Refused: the policy holds.
 * Accepted: it does not, and the agent says so loudly and, unless told to run without it, does not
 * act until a later check is refused.
 *
 * The decision is pure (`decideNodeWritePolicy`); the probe is a SelfSubjectReview (the policy
 * governs agent ServiceAccounts only), one list and one dry-run patch.
 */
import { NODE_OBJECTS_PATH } from "../../crds/schema.ts";
import { KubeApiError, MERGE, type KubeHttp } from "../../kube/http-client.ts";

/** What the dry-run write of another node's status came to. */
export type PolicyProbe =
  /** The API server refused it: `by` says whether an admission policy or RBAC did. */
  | { readonly kind: "denied"; readonly target: string; readonly by: "admission" | "rbac"; readonly message: string }
  /** The API server would have written it. */
  | { readonly kind: "allowed"; readonly target: string }
  /** Nothing to tell: no other node's object to try, or the API server did not answer either way. */
  | { readonly kind: "unknown"; readonly detail: string };

export type PolicyState = "enforced" | "missing" | "unverified";

export interface PolicyVerdict {
  readonly state: PolicyState;
  /** Whether the agent may act on its host. */
  readonly act: boolean;
  /** Log level of the one line that reports the check. */
  readonly level: "info" | "warn" | "error";
  /** The reason of the Warning event on the agent's Node (none when the policy holds). */
  readonly eventReason?: "NodeWritePolicyMissing";
  /** kpatch_agent_node_write_policy: 1 enforced, 0 missing, -1 could not tell. */
  readonly metric: 1 | 0 | -1;
  readonly message: string;
}

/** What the agent does with a probe; `allowWithoutPolicy` is the chart's agent.allowWithoutNodeWritePolicy. */
export function decideNodeWritePolicy(probe: PolicyProbe, nodeName: string, allowWithoutPolicy: boolean): PolicyVerdict {
  switch (probe.kind) {
    case "denied":
      return {
        state: "enforced",
        act: true,
        level: "info",
        metric: 1,
        message: `the API server refuses this agent (node ${nodeName}) a write of kernellivepatchnodes/${probe.target}/status (${probe.by === "admission" ? "admission policy" : "RBAC"}): ${probe.message}`,
      };
    case "allowed": {
      const what =
        `the API server would let the agent of node ${nodeName} write the status of another node's KernelLivePatchNode ` +
        `(kernellivepatchnodes/${probe.target}, a server-side dry run): no admission policy keeps agents to their own node, ` +
        `so any agent's token can forge every node's entries (install the chart with admissionPolicy.enabled=true and validationActions [Deny])`;
      return allowWithoutPolicy
        ? { state: "missing", act: true, level: "error", eventReason: "NodeWritePolicyMissing", metric: 0, message: `${what}; acting anyway (agent.allowWithoutNodeWritePolicy=true)` }
        : { state: "missing", act: false, level: "error", eventReason: "NodeWritePolicyMissing", metric: 0, message: `${what}; not acting until it does (or agent.allowWithoutNodeWritePolicy=true)` };
    }
    case "unknown":
      return {
        state: "unverified",
        act: true,
        level: "warn",
        metric: -1,
        message: `could not check that the API server keeps the agent of node ${nodeName} to its own KernelLivePatchNode: ${probe.detail}`,
      };
  }
}

/** An admission denial names its policy or webhook; any other 403 is RBAC's. */
const ADMISSION = /ValidatingAdmissionPolicy|admission webhook/i;

/** How the API server's answer to the dry run reads. Pure. */
export function classifyDryRun(target: string, error: unknown): PolicyProbe {
  if (error === undefined) return { kind: "allowed", target };
  if (error instanceof KubeApiError) {
    if (error.code === 403) return { kind: "denied", target, by: ADMISSION.test(error.message) ? "admission" : "rbac", message: error.message };
    // A policy may answer Invalid instead of Forbidden; a schema error (also 422) says nothing.
    if (error.code === 422 && ADMISSION.test(error.message)) return { kind: "denied", target, by: "admission", message: error.message };
    return { kind: "unknown", detail: `the dry run of kernellivepatchnodes/${target}/status answered ${error.code} ${error.reason}: ${error.message}` };
  }
  return { kind: "unknown", detail: `the dry run of kernellivepatchnodes/${target}/status failed: ${error instanceof Error ? error.message : String(error)}` };
}

const SERVICE_ACCOUNT = "system:serviceaccount:";

/**
 * The policy keeps agent ServiceAccounts to their node; an agent run with other credentials (a
 * person's or a test's kubeconfig) is outside what it governs, so there is nothing to check. Pure.
 */
export function outsidePolicy(username: string): PolicyProbe | undefined {
  if (username.startsWith(SERVICE_ACCOUNT)) return undefined;
  return { kind: "unknown", detail: `the agent runs as ${username || "an anonymous user"}, not a ServiceAccount, which the node write policy does not govern` };
}

/** The first node object not this node's, from a list page. Pure. */
export function otherNodeObject(names: readonly string[], nodeName: string): string | undefined {
  return names.find((n) => n !== nodeName);
}

type Api = Pick<KubeHttp, "json" | "send">;

/**
 * Asks who the agent is (a ServiceAccount, or nothing to check), lists two node objects (one at
 * least is another node's when there are two), then dry-runs a
 * merge patch of that one's status. The patch changes something (status.summary), so that the
 * request is a real update to admit whatever the API server does with no-ops; dryRun=All stores
 * nothing.
 */
export async function probeNodeWritePolicy(http: Api, nodeName: string): Promise<PolicyProbe> {
  let names: string[];
  try {
    const review = await http.json<{ status?: { userInfo?: { username?: string } } }>("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
      body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
    });
    const outside = outsidePolicy(review.status?.userInfo?.username ?? "");
    if (outside) return outside;
  } catch (error) {
    return { kind: "unknown", detail: `asking the API server who this agent is failed: ${error instanceof Error ? error.message : String(error)}` };
  }
  try {
    const list = await http.json<{ items?: Array<{ metadata?: { name?: string } }> }>("GET", NODE_OBJECTS_PATH, { query: { limit: 2 } });
    names = (list.items ?? []).map((i) => i.metadata?.name ?? "").filter(Boolean);
  } catch (error) {
    return { kind: "unknown", detail: `listing KernelLivePatchNodes failed: ${error instanceof Error ? error.message : String(error)}` };
  }
  const target = otherNodeObject(names, nodeName);
  if (!target) return { kind: "unknown", detail: "there is no other node's KernelLivePatchNode to try the write on" };
  try {
    await http.send("PATCH", `${NODE_OBJECTS_PATH}/${encodeURIComponent(target)}/status`, {
      query: { dryRun: "All", fieldManager: `kpatch-agent/${nodeName}/policy-check` },
      contentType: MERGE,
      body: { status: { summary: `policy self-check by the agent of node ${nodeName} (dry run, never stored)` } },
    });
    return classifyDryRun(target, undefined);
  } catch (error) {
    return classifyDryRun(target, error);
  }
}

export interface PolicyGate {
  readonly probe: () => Promise<PolicyProbe>;
  /** Says the verdict: log line, event, metric. Called on every check. */
  readonly report: (verdict: PolicyVerdict) => void;
  readonly sleep: (ms: number) => Promise<void>;
  /** True once the agent is told to stop: the gate then gives up. */
  readonly stopping: () => boolean;
  readonly recheckMs: number;
}

/**
 * Checks until the agent may act: at once when the policy holds, cannot be checked, or the agent
 * is allowed without it; otherwise again every `recheckMs` (installing the policy lets a waiting
 * agent start, no restart needed). Undefined when the agent stopped while waiting.
 */
export async function awaitNodeWritePolicy(nodeName: string, allowWithoutPolicy: boolean, gate: PolicyGate): Promise<PolicyVerdict | undefined> {
  for (;;) {
    const verdict = decideNodeWritePolicy(await gate.probe(), nodeName, allowWithoutPolicy);
    gate.report(verdict);
    if (verdict.act) return verdict;
    await gate.sleep(gate.recheckMs);
    if (gate.stopping()) return undefined;
  }
}
