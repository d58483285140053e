/** The agent's configuration: the only module of the agent that reads the environment. */
import { z } from "zod";

/**
 * Where a test makes the agent kill itself (SIGKILL, as the kernel's OOM killer or a node crash
 * would), to prove that a restarted agent converges. Test-only: never set in a deployment.
 */
export const CRASH_POINTS = [
  /** After the `Staging`/`Loading` entry is written, before the module is staged. */
  "before-stage",
  /** After the module is written for loading (/var/lib/kpatch/.loading) or staged for boot, before insmod. */
  "after-stage",
  /** After the load finished in the kernel, before the `Loaded` entry is written. */
  "after-load",
  /** After the `Unloading` entry is written, before the patch is disabled. */
  "before-unload",
  /** After the patch left the kernel, before the module is uninstalled and `Unloaded` written. */
  "after-unload",
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

export const AgentConfig = z.object({
  NODE_NAME: z.string().min(1, "NODE_NAME must be set (the DaemonSet sets it from spec.nodeName)"),
  KPATCH_HOST_ROOT: z.string().default("/"),
  KPATCH_LOADER: z.enum(["auto", "kmod", "sim"]).default("auto"),
  KPATCH_IMAGE_MODULES_DIR: z.string().default("/var/run/kpatch-agent/modules"),
  KPATCH_MAX_MODULE_BYTES: z.coerce.number().int().positive().default(64 * 1024 * 1024),
  KUBECONFIG: z.string().optional(),
  /** The agent's (= the operator's) namespace, set by the DaemonSet: where urlAccess's Secrets and ConfigMaps are read. */
  POD_NAMESPACE: z.string().min(1).optional(),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  /** Port for /healthz, /readyz and /metrics; 0 disables. */
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  RESYNC_SECONDS: z.coerce.number().int().min(1).default(60),
  /**
   * Server-side timeout of each watch request; the agent re-watches after it. A watch that stays
   * silent (not even a bookmark or the server's close) somewhat longer is dropped and relisted.
   */
  WATCH_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(3600).default(300),
  /** Timeout of every other API request (list, get, status write, event). */
  REQUEST_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(600).default(30),
  /** Test-only fault injection: the agent SIGKILLs itself at this point of a load or unload. */
  KPATCH_TEST_CRASH_AT: z.enum(CRASH_POINTS).optional(),
  /**
   * The agent checks at start that the API server refuses it another node's KernelLivePatchNode
   * status (node-agent/kube/policy-check.ts). "true": when it does not, the agent says so loudly and
   * acts anyway; otherwise it acts only once the check passes.
   */
  KPATCH_ALLOW_WITHOUT_NODE_WRITE_POLICY: z.enum(["true", "false"]).default("false").transform((v) => v === "true"),
  /** How often an agent that is refusing to act checks the policy again. */
  POLICY_RECHECK_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
});

export type AgentConfig = z.output<typeof AgentConfig>;

export function loadAgentConfig(env: NodeJS.ProcessEnv): AgentConfig {
  const r = AgentConfig.safeParse(env);
  if (!r.success) throw new Error(`invalid agent configuration: ${z.prettifyError(r.error)}`);
  return r.data;
}
