/**
 * The operator's configuration: the only module that reads the environment. The Helm chart sets
 * these variables from its values.
 */
import { z } from "zod";
import { Toleration } from "../crds/schema.ts";

const bool = z.enum(["true", "false"]).transform((v) => v === "true");
const json = <T extends z.ZodType>(schema: T) =>
  z.string().transform((s, ctx) => {
    try {
      return JSON.parse(s) as unknown;
    } catch {
      ctx.addIssue({ code: "custom", message: "must be JSON" });
      return z.NEVER;
    }
  }).pipe(schema);

export const OperatorConfig = z.object({
  KLP_NAMESPACE: z.string().min(1).default("kpatch-system"),
  KLP_AGENT_IMAGE: z.string().min(1).default("kpatch-agent:dev"),
  KLP_AGENT_IMAGE_PULL_POLICY: z.enum(["Always", "IfNotPresent", "Never"]).default("IfNotPresent"),
  KLP_AGENT_SERVICE_ACCOUNT: z.string().min(1).default("kpatch-agent"),
  KLP_AGENT_DAEMONSET: z.string().min(1).default("kpatch-agent"),
  /** Host directory the agent sees as the node's root (its /var/lib/kpatch, /sys, /proc). "/" in production. */
  KLP_AGENT_HOST_ROOT: z.string().regex(/^\//).default("/"),
  /** "sim" only for tests and demos: the agent drives a simulated host tree instead of the kernel. */
  KLP_AGENT_LOADER: z.enum(["auto", "kmod", "sim"]).default("auto"),
  KLP_AGENT_TOLERATIONS: json(z.array(Toleration)).default([]),
  KLP_AGENT_NODE_SELECTOR: json(z.record(z.string(), z.string())).default({}),
  KLP_AGENT_PRIORITY_CLASS: z.string().default(""),
  KLP_AGENT_LOG_LEVEL: z.string().default("info"),
  KLP_AGENT_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  KLP_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  KLP_LEADER_ELECTION: bool.default(true),
  KLP_LEASE_NAME: z.string().default("kpatch-operator"),
  KLP_POD_NAME: z.string().default(""),
  KLP_METRICS_ADDR: z.string().default(":8080"),
  KLP_HEALTH_ADDR: z.string().default(":8081"),
  KLP_RESYNC_SECONDS: z.coerce.number().int().min(10).default(300),
});

export type OperatorConfig = z.output<typeof OperatorConfig>;

export function loadOperatorConfig(env: NodeJS.ProcessEnv): OperatorConfig {
  const r = OperatorConfig.safeParse(Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("KLP_"))));
  if (!r.success) throw new Error(`invalid operator configuration: ${z.prettifyError(r.error)}`);
  return r.data;
}
