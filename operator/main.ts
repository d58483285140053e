/** Entry point of the operator: configuration, dependencies, leader election, then the controller. */
import { hostname } from "node:os";
import { pino } from "pino";
import { loadOperatorConfig } from "./config.ts";
import { Controller } from "./controller/controller.ts";
import { serveHealth, serveMetrics } from "./health.ts";
import { fullCollection, idleCollector } from "../runtime/lean-runtime.ts";
import { defaultConnection, operatorHttp } from "./kube/api-client.ts";
import { LeaderElector } from "./leader/elector.ts";
import { operatorMetrics } from "./metrics.ts";
import { uninstallCheck } from "./uninstall-check.ts";

async function main(): Promise<void> {
  const cfg = loadOperatorConfig(process.env);
  if (process.argv[2] === "uninstall-check") {
    // The chart's pre-delete hook, not the operator: one check, then exit.
    const r = await uninstallCheck(operatorHttp(defaultConnection(process.env), 30_000), cfg);
    console.log(r.message);
    process.exit(r.ok ? 0 : 1);
  }
  const log = pino({ level: cfg.KLP_LOG_LEVEL, base: { component: "kpatch-operator" } });
  const connection = defaultConnection(process.env);
  const metrics = operatorMetrics();
  // After each burst of work (a rollout's roll-ups, a relist), once quiet for 5 s: a full
  // collection, so the RSS between bursts is what the caches hold, not what the burst left.
  const controller = new Controller({ connection, cfg, log, metrics, onIdle: idleCollector(fullCollection()) });
  const identity = cfg.KLP_POD_NAME || `${hostname()}-${process.pid}`;
  // Lease calls time out well within the renew deadline (2/3 of the 15 s lease).
  const elector = new LeaderElector(
    operatorHttp(connection, 5_000),
    {
      namespace: cfg.KLP_NAMESPACE,
      name: cfg.KLP_LEASE_NAME,
      identity,
      onLost: () => process.exit(1),
      onLeading: (l) => metrics.leader.set({ name: cfg.KLP_LEASE_NAME }, l ? 1 : 0),
    },
    log,
  );
  if (cfg.KLP_LEADER_ELECTION) metrics.leader.set({ name: cfg.KLP_LEASE_NAME }, 0);
  // Ready means "can serve": a standby replica is ready too, it just waits for the lease.
  // Live unless a reconcile has been running for minutes (every API call times out within one).
  await serveHealth(cfg.KLP_HEALTH_ADDR, { live: () => controller.live, ready: () => !cfg.KLP_LEADER_ELECTION || !elector.isLeader || controller.ready });
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
