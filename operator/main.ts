/** Entry point of the operator: configuration, dependencies, leader election, then the controller. */
import { hostname } from "node:os";
import { CoordinationV1Api, CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { loadOperatorConfig } from "./config.ts";
import { Controller } from "./controller/controller.ts";
import { serveHealth, serveMetrics } from "./health.ts";
import { eventRecorder } from "./kube/events.ts";
import { LeaderElector } from "./leader/elector.ts";
import { operatorMetrics } from "./metrics.ts";

async function main(): Promise<void> {
  const cfg = loadOperatorConfig(process.env);
  const log = pino({ level: cfg.KLP_LOG_LEVEL, base: { component: "kpatch-operator" } });
  const kc = new KubeConfig();
  kc.loadFromDefault();
  const metrics = operatorMetrics();
  const events = eventRecorder(kc.makeApiClient(CoreV1Api), "kpatch-operator", log);
  const controller = new Controller({ kc, cfg, log, metrics, events });
  const identity = cfg.KLP_POD_NAME || `${hostname()}-${process.pid}`;
  const elector = new LeaderElector(
    kc.makeApiClient(CoordinationV1Api),
    {
      namespace: cfg.KLP_NAMESPACE,
      name: cfg.KLP_LEASE_NAME,
      identity,
      onLost: () => process.exit(1),
      onLeading: (l) => metrics.leader.set({ name: cfg.KLP_LEASE_NAME }, l ? 1 : 0),
    },
    log,
  );
  // Ready means "can serve": a standby replica is ready too, it just waits for the lease.
  await serveHealth(cfg.KLP_HEALTH_ADDR, { live: () => true, ready: () => !cfg.KLP_LEADER_ELECTION || !elector.isLeader || controller.ready });
  await serveMetrics(cfg.KLP_METRICS_ADDR, metrics.registry);

  const shutdown = async (signal: string) => {
    log.info({ signal }, "shutting down");
    await controller.stop();
    await elector.release();
    process.exit(0);
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));

  if (cfg.KLP_LEADER_ELECTION) {
    log.info({ identity }, "waiting for the leader lease");
    await elector.acquire();
  }
  await controller.start();
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 60, msg: "operator failed to start", err: String(err) }));
  process.exit(1);
});
