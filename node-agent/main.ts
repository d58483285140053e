/**
 * Entry point of the node agent: configuration, the host driver, the API connection, then the
 * loop. On SIGTERM it finishes the host operation in progress and exits; it never unloads.
 */
import { pino, type Logger } from "pino";
import { loadAgentConfig, type CrashPoint } from "./config.ts";
import { createLoader } from "./host/create-loader.ts";
import { createHostDriver } from "./host/driver.ts";
import { watchOwnNode } from "./kube/agent-api.ts";
import { inClusterConnection, kubeconfigConnection } from "../kube/connection.ts";
import { KubeHttp } from "../kube/http-client.ts";
import { nodeChannel } from "./kube/node-channel.ts";
import { Agent } from "./loop/agent.ts";
import { agentMetrics } from "./loop/agent-metrics.ts";
import { serveEndpoints } from "./loop/endpoints.ts";
import { liveness, readiness } from "./loop/health.ts";
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

  const watch = { timeoutSeconds: cfg.WATCH_TIMEOUT_SECONDS, onRestart: metrics.watchRestart };
  const channel = nodeChannel(http, cfg.NODE_NAME, log, watch);
  const agent = new Agent({
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
  if (cfg.METRICS_PORT > 0) {
    await serveEndpoints(cfg.METRICS_PORT, "0.0.0.0", {
      live: () => liveness(agent.loopState(), Date.now()),
      ready: () => readiness(agent.loopState()),
      metrics: () => metrics.render(),
    });
  }
  const nodeWatch = watchOwnNode(http, cfg.NODE_NAME, (labels) => agent.updateNode(labels), log, watch);
  await Promise.all([nodeWatch.start(), channel.start((patches, fromObject) => agent.updatePatches(patches, fromObject))]);
  log.info("watching this node's KernelLivePatchNode");

  const shutdown = async (signal: string) => {
    log.info({ signal }, "stopping; loaded patches stay loaded");
    nodeWatch.stop();
    channel.stop();
    await agent.stop();
    http.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}

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
