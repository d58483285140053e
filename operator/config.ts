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

const MiB = 1024 * 1024;
const UNITS: Record<string, number> = { "": 1, k: 1e3, M: 1e6, G: 1e9, Ki: 1024, Mi: MiB, Gi: 1024 * MiB };
/** A Kubernetes memory quantity ("128Mi", "134217728", "1G"), kept as written and in bytes. */
const memory = z.string().transform((text, ctx) => {
  const m = /^([0-9]+)(|k|M|G|Ki|Mi|Gi)$/.exec(text);
  if (!m) {
    ctx.addIssue({ code: "custom", message: `${text} is not a memory quantity like 128Mi` });
    return z.NEVER;
  }
  return { text, bytes: Number(m[1]) * UNITS[m[2]!]! };
});

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
  /**
   * false: the agent runs unprivileged (CAP_SYS_MODULE, RuntimeDefault seccomp, narrow host mounts).
   * true: the former privileged pod with the host's whole /proc and /sys, for runtimes or kernels
   * where the unprivileged agent cannot load modules or write sysfs (charts/kpatch-operator/README.md).
   */
  KLP_AGENT_PRIVILEGED: bool.default(false),
  /** true: an agent that may write other nodes' KernelLivePatchNode status says so and acts anyway. */
  KLP_AGENT_ALLOW_WITHOUT_NODE_WRITE_POLICY: bool.default(false),
  KLP_AGENT_TOLERATIONS: json(z.array(Toleration)).default([]),
  KLP_AGENT_NODE_SELECTOR: json(z.record(z.string(), z.string())).default({}),
  KLP_AGENT_PRIORITY_CLASS: z.string().default(""),
  /** Secrets (in KLP_NAMESPACE) the kubelet pulls the agent and module images with: [{"name": ...}]. */
  KLP_AGENT_IMAGE_PULL_SECRETS: json(z.array(z.object({ name: z.string().min(1).max(253) }).strict())).default([]),
  /** The UID the containers that copy modules out of module images run as (never root). */
  KLP_AGENT_MODULE_COPY_UID: z.coerce.number().int().min(1).max(2_147_483_647).default(65532),
  KLP_AGENT_LOG_LEVEL: z.string().default("info"),
  /** The agents' /metrics, /healthz and /readyz (and so their probes); 0 turns all of it off. */
  KLP_AGENT_METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9090),
  /** Largest module file an agent accepts; the agent's memory limit must leave room for it. */
  KLP_AGENT_MAX_MODULE_BYTES: z.coerce.number().int().min(4096).max(256 * MiB).default(16 * MiB),
  KLP_AGENT_CPU_REQUEST: z.string().default("10m"),
  KLP_AGENT_MEMORY_REQUEST: memory.prefault("48Mi"),
  KLP_AGENT_MEMORY_LIMIT: memory.prefault("128Mi"),
  KLP_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  KLP_LEADER_ELECTION: bool.default(true),
  KLP_LEASE_NAME: z.string().default("kpatch-operator"),
  KLP_POD_NAME: z.string().default(""),
  KLP_METRICS_ADDR: z.string().default(":8080"),
  KLP_HEALTH_ADDR: z.string().default(":8081"),
  KLP_RESYNC_SECONDS: z.coerce.number().int().min(10).default(300),
  /** A deleted patch stops waiting for a node whose Node has been NotReady this long (default 15 min). */
  KLP_NOT_READY_GRACE_SECONDS: z.coerce.number().int().min(0).default(900),
});

export type OperatorConfig = z.output<typeof OperatorConfig>;

/**
 * What an agent needs besides the module it handles: its idle footprint (docs/benchmarks.md: about
 * 64 MiB as the chart runs it). A module costs it at most twice its size (the downloaded copy and
 * the one written for insmod), so the limit must hold both, or the agent is OOM-killed mid-load.
 */
export const AGENT_IDLE_BYTES = 64 * MiB;
export const agentMemoryNeeded = (maxModuleBytes: number) => AGENT_IDLE_BYTES + 2 * maxModuleBytes;

const Consistent = OperatorConfig.check((ctx) => {
  const c = ctx.value;
  const needed = agentMemoryNeeded(c.KLP_AGENT_MAX_MODULE_BYTES);
  if (c.KLP_AGENT_MEMORY_LIMIT.bytes < needed) {
    ctx.issues.push({
      code: "custom",
      input: c.KLP_AGENT_MEMORY_LIMIT.text,
      path: ["KLP_AGENT_MEMORY_LIMIT"],
      message: `the agent memory limit ${c.KLP_AGENT_MEMORY_LIMIT.text} cannot hold a module of ${c.KLP_AGENT_MAX_MODULE_BYTES} bytes: it needs at least ${Math.ceil(needed / MiB)}Mi (64Mi + 2 x the module size limit)`,
    });
  }
});

export function loadOperatorConfig(env: NodeJS.ProcessEnv): OperatorConfig {
  const r = Consistent.safeParse(Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("KLP_"))));
  if (!r.success) throw new Error(`invalid operator configuration: ${z.prettifyError(r.error)}`);
  return r.data;
}
