/** Liveness, readiness and Prometheus metrics endpoints. */
import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

export interface Probes {
  readonly live: () => boolean;
  readonly ready: () => boolean;
}

export function parseAddr(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  return { host: addr.slice(0, i) || "0.0.0.0", port: Number(addr.slice(i + 1)) };
}

export function serveHealth(addr: string, probes: Probes): Promise<Server> {
  const server = createServer((req, res) => {
    const ok = req.url === "/healthz" ? probes.live() : req.url === "/readyz" ? probes.ready() : undefined;
    if (ok === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok" : "not ready");
  });
  return listen(server, addr);
}

export function serveMetrics(addr: string, registry: Registry): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end();
      return;
    }
    registry
      .metrics()
      .then((text) => res.writeHead(200, { "content-type": registry.contentType }).end(text))
      .catch(() => res.writeHead(500).end());
  });
  return listen(server, addr);
}

function listen(server: Server, addr: string): Promise<Server> {
  const { host, port } = parseAddr(addr);
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
