/**
 * Entry point of the node agent: configuration, the host driver, the API connection, then the
 * loop. On SIGTERM it finishes the host operation in progress and exits; it never unloads.
 */
import { createServer } from "node:http";
import { pino } from "pino";
import { loadAgentConfig } from "./config.ts";
import { createLoader } from "./host/create-loader.ts";
import { createHostDriver } from "./host/driver.ts";
import { agentApi, watchOwnNode, watchPatches } from "./kube/agent-api.ts";
import { inClusterConnection, kubeconfigConnection } from "./kube/connection.ts";
import { KubeHttp } from "./kube/http-client.ts";
import { Agent } from "./loop/agent.ts";
import { moduleSources } from "./loop/sources.ts";

async function main(): Promise<void> {
  const cfg = loadAgentConfig(process.env);
  const log = pino({ level: cfg.LOG_LEVEL, base: { component: "kpatch-agent", node: cfg.NODE_NAME } });
  const loader = createLoader(cfg.KPATCH_HOST_ROOT, cfg.KPATCH_LOADER);
  const driver = createHostDriver({ hostRoot: cfg.KPATCH_HOST_ROOT, loader, log, limits: { maxModuleBytes: cfg.KPATCH_MAX_MODULE_BYTES } });
  const http = new KubeHttp(cfg.KUBECONFIG ? kubeconfigConnection(cfg.KUBECONFIG) : inClusterConnection(process.env));

  // Read the host before acting on anything.
  const preflight = await driver.preflight();
  log.info({ kernelRelease: preflight.kernelRelease, bootId: preflight.bootId, loader: loader.kind, blockers: preflight.blockers }, "host read");

  const agent = new Agent({
    nodeName: cfg.NODE_NAME,
    driver,
    api: agentApi(http, cfg.NODE_NAME, log),
    sources: moduleSources({ http, imageModulesDir: cfg.KPATCH_IMAGE_MODULES_DIR, maxBytes: cfg.KPATCH_MAX_MODULE_BYTES }),
    log,
    resyncMs: cfg.RESYNC_SECONDS * 1000,
  });
  const nodeWatch = watchOwnNode(http, cfg.NODE_NAME, (labels) => agent.updateNode(labels), log);
  const patchWatch = watchPatches(http, (objects) => agent.updatePatches(objects), log);
  await Promise.all([nodeWatch.start(), patchWatch.start()]);
  log.info("watching KernelLivePatches");

  if (cfg.METRICS_PORT > 0) {
    createServer((req, res) => {
      const ok = req.url === "/healthz" || (req.url === "/readyz" && agent.lastPassAt > 0);
      res.writeHead(ok ? 200 : req.url === "/readyz" ? 503 : 404).end(ok ? "ok" : "");
    }).listen(cfg.METRICS_PORT);
  }

  const shutdown = async (signal: string) => {
    log.info({ signal }, "stopping; loaded patches stay loaded");
    nodeWatch.stop();
    patchWatch.stop();
    await agent.stop();
    http.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 60, msg: "agent failed to start", err: String(err) }));
  process.exit(1);
});
