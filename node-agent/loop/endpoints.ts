/** /healthz, /readyz and /metrics on one port. */
import type { Server } from "node:http";
import type { Health } from "./health.ts";

export interface Endpoints {
  readonly live: () => Health;
  readonly ready: () => Health;
  readonly metrics: () => string;
}

export function serveEndpoints(port: number, host: string, endpoints: Endpoints): Promise<Server> {
  // Not `import ... from "node:http"`: the ESM facade of node:http reads every export, which
  // loads undici (its WebSocket and friends) into the agent for nothing.
  const { createServer } = process.getBuiltinModule("node:http");
  const server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path === "/metrics") {
      res.writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }).end(endpoints.metrics());
      return;
    }
    const probe = path === "/healthz" ? endpoints.live : path === "/readyz" ? endpoints.ready : undefined;
    if (!probe) {
      res.writeHead(404).end();
      return;
    }
    const h = probe();
    res.writeHead(h.ok ? 200 : 503, { "content-type": "text/plain" }).end(h.reason);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
