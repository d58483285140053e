// One GET with optional TLS client credentials: the health probes of the components.
import http from "node:http";
import https from "node:https";

export interface TlsCreds {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export function httpGet(url: string, tls: TlsCreds | undefined, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? https : http;
    const req = mod.request(
      u,
      {
        method: "GET",
        timeout: timeoutMs,
        ...(u.protocol === "https:"
          ? { ca: tls?.ca, cert: tls?.cert, key: tls?.key, rejectUnauthorized: tls?.ca !== undefined, agent: false }
          : { agent: false }),
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}
