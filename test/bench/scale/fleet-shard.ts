/**
 * One shard of the simulated fleet, in a process of its own (forked by ShardedFleet): its agents'
 * sockets and host files count against this process's open-file limit, not the benchmark's. Talks
 * to the benchmark over the fork's IPC channel (fleet-shards.ts). Action times are epoch ms.
 */
import { kubeconfigConnection } from "../../../kube/connection.ts";
import { Fleet } from "./fleet.ts";
import type { ShardReply, ShardRequest } from "./fleet-shards.ts";

let fleet: Fleet | undefined;
let lastPasses = -1;
const send = (m: ShardReply) => process.send?.(m);

process.on("message", (m: ShardRequest) => {
  void (async () => {
    switch (m.type) {
      case "start": {
        fleet = new Fleet({ conn: kubeconfigConnection(m.kubeconfig), hostsDir: m.hostsDir, kernelRelease: m.kernelRelease, transitionMs: m.transitionMs, resyncMs: m.resyncMs, clock: () => performance.timeOrigin + performance.now() });
        await fleet.start(m.names);
        setInterval(() => {
          const n = fleet?.passesDone ?? 0;
          if (n !== lastPasses) send({ type: "passes", n });
          lastPasses = n;
        }, 500).unref();
        send({ type: "started" });
        break;
      }
      case "totals":
        if (fleet) send({ type: "totals", stats: await fleet.totals() });
        break;
      case "stop":
        await fleet?.stop();
        send({ type: "stopped" });
        process.disconnect();
        break;
    }
  })().catch((err: unknown) => {
    send({ type: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  });
});
// The benchmark gone, so is its shard.
process.on("disconnect", () => process.exit(0));
