/**
 * Entry point of the node agent: configuration, the host driver, the API connection, then the
 * loop. On SIGTERM it finishes the host operation in progress and exits; it never unloads.
 */
import { readFile } from "node:fs/promises";
import { pino, type Logger } from "pino";
import { loadAgentConfig, type CrashPoint } from "./config.ts";
import { createLoader } from "./create-loader.ts";
import { createHostDriver } from "./host/driver.ts";
import { createNodeHostFs } from "./host/node-host-fs.ts";
import { watchOwnNode } from "./kube/agent-api.ts";
import { awaitNodeWritePolicy, probeNodeWritePolicy, type PolicyVerdict } from "./kube/policy-check.ts";
import { nodeWritePolicyCondition } from "./kube/policy-condition.ts";
import { KubeEventRecorder } from "../kube/event-recorder.ts";
import { inClusterConnection, kubeconfigConnection } from "../kube/connection.ts";
import { KubeHttp } from "../kube/http-client.ts";
import { nodeChannel } from "./kube/node-channel.ts";
import { Agent } from "./loop/agent.ts";
import { agentMetrics } from "./loop/agent-metrics.ts";
import { serveEndpoints } from "./loop/endpoints.ts";
import { MetricSet } from "./loop/exposition.ts";
import { liveness, readiness, type Health } from "./loop/health.ts";
import { idleCollector, leanRuntime } from "../runtime/lean-runtime.ts";
import { moduleSources } from "./loop/sources.ts";

async function main(): Promise<void> {
  const collectGarbage = leanRuntime();
  const cfg = loadAgentConfig(process.env);
  const log = pino({ level: cfg.LOG_LEVEL, base: { component: "kpatch-agent", node: cfg.NODE_NAME } });
  const loader = createLoader(cfg.KPATCH_HOST_ROOT, cfg.KPATCH_LOADER);
  const driver = createHostDriver({ hostRoot: cfg.KPATCH_HOST_ROOT, loader, log, limits: { maxModuleBytes: cfg.KPATCH_MAX_MODULE_BYTES } });
  const connection = cfg.KUBECONFIG ? kubeconfigConnection(cfg.KUBECONFIG) : inClusterConnection(process.env);
  const http = new KubeHttp(connection, { requestTimeoutMs: cfg.REQUEST_TIMEOUT_SECONDS * 1000 });
  const metrics = agentMetrics(cfg.NODE_NAME);

  // Read the host before acting on anything.
  const preflight = await driver.preflight();
  log.info({ kernelRelease: preflight.kernelRelease, bootId: preflight.bootId, loader: loader.kind, blockers: preflight.blockers }, "host read");
  await noteHostProcessView(cfg.KPATCH_HOST_ROOT, loader.kind, log);

  // Until the loop runs, the endpoints say the agent is alive and not ready.
  let agent: Agent | undefined = undefined;
  let stopping = false;
  const policyMetrics = new MetricSet();
  const policyGauge = policyMetrics.gauge(
    "kpatch_agent_node_write_policy",
    "1: the API server refuses this agent other nodes' KernelLivePatchNode status; 0: it would allow it; -1: could not tell",
  );
  let waiting: Health = { ok: false, reason: "checking the node write policy" };
  if (cfg.METRICS_PORT > 0) {
    await serveEndpoints(cfg.METRICS_PORT, "0.0.0.0", {
      live: () => (agent ? liveness(agent.loopState(), Date.now()) : { ok: true, reason: waiting.reason }),
      ready: () => (agent ? readiness(agent.loopState()) : waiting),
      metrics: () => metrics.render() + policyMetrics.render(),
    });
  }
  // Before the loop runs there is nothing to finish: a signal ends the process at once.
  let stop = (signal: string): void => {
    stopping = true;
    log.info({ signal }, "stopping before acting on anything");
    http.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));

  // The node object is watched from the start, so that the verdict below is written on it as a
  // condition (with the entries already there) while the agent waits; patches reach the agent
  // only once it acts.
  const watch = { timeoutSeconds: cfg.WATCH_TIMEOUT_SECONDS, onRestart: metrics.watchRestart };
  const channel = nodeChannel(http, cfg.NODE_NAME, log, watch);
  await channel.watch();

  // The API server must keep this agent to its own node's object before it acts (policy-check.ts).
  const policyEvents = new KubeEventRecorder(http, { source: { component: "kpatch-agent", host: cfg.NODE_NAME }, log, failureLogLevel: "warn" });
  const verdict = await awaitNodeWritePolicy(cfg.NODE_NAME, cfg.KPATCH_ALLOW_WITHOUT_NODE_WRITE_POLICY, {
    probe: () => probeNodeWritePolicy(http, cfg.NODE_NAME),
    report: (v: PolicyVerdict) => {
      policyGauge.set({ node: cfg.NODE_NAME }, v.metric);
      log[v.level]({ nodeWritePolicy: v.state, acting: v.act }, v.message);
      if (!v.act) waiting = { ok: false, reason: v.message };
      if (v.eventReason) policyEvents.record({ apiVersion: "v1", kind: "Node", name: cfg.NODE_NAME, uid: cfg.NODE_NAME }, "Warning", v.eventReason, v.message);
      channel.reportCondition(nodeWritePolicyCondition(v));
    },
    sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
    stopping: () => stopping,
    recheckMs: cfg.POLICY_RECHECK_SECONDS * 1000,
  });
  if (!verdict) return;

  agent = new Agent({
    nodeName: cfg.NODE_NAME,
    driver,
    api: channel.api,
    sources: moduleSources({
      http,
      imageModulesDir: cfg.KPATCH_IMAGE_MODULES_DIR,
      maxBytes: cfg.KPATCH_MAX_MODULE_BYTES,
      ...(cfg.POD_NAMESPACE ? { accessNamespace: cfg.POD_NAMESPACE } : {}),
    }),
    log,
    resyncMs: cfg.RESYNC_SECONDS * 1000,
    metrics,
    onIdle: idleCollector(() => {
      collectGarbage();
      log.debug({ rss: process.memoryUsage.rss() }, "idle collection");
    }),
    ...(cfg.KPATCH_TEST_CRASH_AT ? { crashAt: crashHook(cfg.KPATCH_TEST_CRASH_AT, log) } : {}),
  });
  const running = agent;
  const nodeWatch = watchOwnNode(http, cfg.NODE_NAME, (labels) => running.updateNode(labels), log, watch);
  await Promise.all([nodeWatch.start(), channel.start((patches, fromObject) => running.updatePatches(patches, fromObject))]);
  log.info("watching this node's KernelLivePatchNode");

  stop = (signal) => void shutdown(signal);
  async function shutdown(signal: string): Promise<void> {
    log.info({ signal }, "stopping; loaded patches stay loaded");
    nodeWatch.stop();
    channel.stop();
    await running.stop();
    await policyEvents.flush();
    http.close();
    process.exit(0);
  }
}

/**
 * A stalled transition's report lists the tasks that hold it (/proc/<pid>/task/<tid>/patch_state
 * and comm of the host's /proc) with their kernel stacks (/proc/<pid>/stack). Says once at start
 * what of that this agent cannot read: the host's processes at all (no host /proc mounted), or the
 * stacks (CAP_SYS_ADMIN and ptrace access, which the unprivileged agent does not have).
 */
async function noteHostProcessView(hostRoot: string, loader: string, log: Logger): Promise<void> {
  if (loader === "sim") return;
  const entries = await createNodeHostFs(hostRoot).list("/proc").catch(() => undefined);
  if (!(entries ?? []).some((e) => /^\d+$/.test(e))) {
    log.warn("the host's processes are not visible to this agent (no host /proc): a stalled patch transition is still detected, reversed and reported, but without the tasks that held it");
    return;
  }
  const status = await readFile("/proc/self/status", "utf8").catch(() => "");
  const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(status)?.[1] ?? "0"}`);
  if (((capEff >> CAP_SYS_ADMIN) & 1n) === 0n) {
    log.info(
      "stalled patch transitions will name the tasks that hold them without their kernel stacks: /proc/<pid>/stack needs CAP_SYS_ADMIN " +
        "and ptrace access, which this agent does not have (agent.privileged=true has them); another user's task is not listed (its patch_state is its owner's)",
    );
  }
}

const CAP_SYS_ADMIN = 21n;

/** Test-only (KPATCH_TEST_CRASH_AT): dies at once, as a killed process does, at the named point. */
function crashHook(at: CrashPoint, log: Logger): (point: CrashPoint) => void {
  return (point) => {
    if (point !== at) return;
    log.warn({ crashAt: point }, "test fault injection: the agent kills itself");
    process.kill(process.pid, "SIGKILL");
  };
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 60, msg: "agent failed to start", err: String(err) }));
  process.exit(1);
});
