/** The agent's configuration: the only module of the agent that reads the environment. */
import { z } from "zod";

export const AgentConfig = z.object({
  NODE_NAME: z.string().min(1, "NODE_NAME must be set (the DaemonSet sets it from spec.nodeName)"),
  KPATCH_HOST_ROOT: z.string().default("/"),
  KPATCH_LOADER: z.enum(["auto", "kmod", "sim"]).default("auto"),
  KPATCH_IMAGE_MODULES_DIR: z.string().default("/var/run/kpatch-agent/modules"),
  KPATCH_MAX_MODULE_BYTES: z.coerce.number().int().positive().default(64 * 1024 * 1024),
  KUBECONFIG: z.string().optional(),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  /** Port for /healthz, /readyz and /metrics; 0 disables. */
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  RESYNC_SECONDS: z.coerce.number().int().min(1).default(60),
});

export type AgentConfig = z.output<typeof AgentConfig>;

export function loadAgentConfig(env: NodeJS.ProcessEnv): AgentConfig {
  const r = AgentConfig.safeParse(env);
  if (!r.success) throw new Error(`invalid agent configuration: ${z.prettifyError(r.error)}`);
  return r.data;
}
