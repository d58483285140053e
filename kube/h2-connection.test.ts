/**
 * KubeHttp over HTTP/2 against real TLS servers on loopback: one connection carries a watch and the
 * requests beside it; a server that offers only HTTP/1.1 is spoken to in HTTP/1.1; a connection that
 * freezes (nothing forwarded, no FIN or RST) is found by a ping and replaced; an idle connection lets
 * the process exit.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer, type Server as HttpsServer } from "node:https";
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FreezableProxy } from "../test/support/freezable-proxy.ts";
import { KubeHttp } from "./http-client.ts";

const dir = mkdtempSync(join(tmpdir(), "h2-connection-"));
const pem = (name: string) => readFileSync(join(dir, name));
const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });

interface Seen {
  readonly path: string;
  readonly httpVersion: string;
  readonly remotePort: number | undefined;
}

/** What the handler uses of node:http's and node:http2's compatibility request and response. */
interface Req {
  readonly url?: string | undefined;
  readonly httpVersion: string;
  readonly socket: { readonly remotePort?: number | undefined };
}
interface Res {
  writeHead(code: number, headers: Record<string, string>): unknown;
  write(chunk: string): unknown;
  end(chunk: string): unknown;
}
const seen: Seen[] = [];
/** Every connection a server accepted. */
let connections = 0;
const handle = (req: Req, res: Res) => {
  seen.push({ path: req.url ?? "", httpVersion: req.httpVersion, remotePort: req.socket.remotePort });
  if (req.url?.includes("watch=1")) {
    res.writeHead(200, { "content-type": "application/json" });
    res.write(`${JSON.stringify({ type: "BOOKMARK", object: { metadata: { resourceVersion: "7" } } })}\n`);
    return; // held open, as a watch is
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ kind: "NamespaceList", items: [{ metadata: { name: "default" } }] }));
};

let h2: Http2SecureServer;
let h1: HttpsServer;
const portOf = (s: { address(): AddressInfo | string | null }) => (s.address() as AddressInfo).port;
const listen = async <S extends Http2SecureServer | HttpsServer>(s: S): Promise<S> => {
  await new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve));
  return s;
};

beforeAll(async () => {
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=kube.internal", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", "server.key", "-out", "server.crt");
  const tls = { key: pem("server.key"), cert: pem("server.crt") };
  h2 = await listen(createSecureServer({ ...tls, allowHTTP1: true }, (req: Http2ServerRequest, res: Http2ServerResponse) => handle(req, res)));
  h2.on("secureConnection", () => connections++);
  h1 = await listen(createHttpsServer(tls, (req: IncomingMessage, res: ServerResponse) => handle(req, res)));
  h1.on("secureConnection", () => connections++);
});

afterAll(async () => {
  for (const s of [h2, h1]) await new Promise<void>((resolve) => s.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

const client = (port: number, opts: { http2?: boolean; requestTimeoutMs?: number } = {}) =>
  new KubeHttp({ server: `https://127.0.0.1:${port}`, ca: pem("server.crt") }, opts);
const list = (http: KubeHttp) => http.json<{ items: unknown[] }>("GET", "/api/v1/namespaces");

describe("HTTP/2", () => {
  it("by default, a watch and the requests beside it share one HTTP/2 connection", async () => {
    seen.length = 0;
    connections = 0;
    const http = client(portOf(h2));
    const watch = await http.stream("/api/v1/namespaces", { query: { watch: "1" } });
    await Promise.all([list(http), list(http), http.send("PATCH", "/api/v1/namespaces/default", { body: {} }), list(http)]);
    watch.destroy();
    http.close();
    expect(seen.map((s) => s.httpVersion)).toEqual(["2.0", "2.0", "2.0", "2.0", "2.0"]);
    expect(connections).toBe(1);
  });

  it("a server that offers only HTTP/1.1 is spoken to in HTTP/1.1", async () => {
    seen.length = 0;
    const http = client(portOf(h1));
    await list(http);
    await list(http);
    http.close();
    expect(seen.map((s) => s.httpVersion)).toEqual(["1.1", "1.1"]);
  });

  it("http2: false speaks HTTP/1.1 even when the server offers h2", async () => {
    seen.length = 0;
    const http = client(portOf(h2), { http2: false });
    await list(http);
    http.close();
    expect(seen.map((s) => s.httpVersion)).toEqual(["1.1"]);
  });

  it("a GOAWAY (an API server shutting down): the next request goes on a new connection while the old one's watch runs to its end", async () => {
    seen.length = 0;
    connections = 0;
    const sessions: ServerHttp2Session[] = [];
    const onSession = (session: ServerHttp2Session) => sessions.push(session);
    h2.on("session", onSession);
    const http = client(portOf(h2));
    const watch = await http.stream("/api/v1/namespaces", { query: { watch: "1" } });
    const ended = new Promise<void>((resolve) => watch.on("close", resolve).on("error", () => undefined).resume());
    await list(http);
    sessions[0]!.goaway();
    await new Promise((r) => setTimeout(r, 100)); // the GOAWAY frame on its way
    expect((await list(http)).items).toHaveLength(1);
    expect(connections).toBe(2);
    expect(watch.destroyed, "the watch on the old connection is still open").toBe(false);
    sessions[0]!.destroy(); // the server ends what it still served on the old connection
    await ended;
    http.close();
    h2.off("session", onSession);
    const ports = seen.map((s) => s.remotePort);
    expect(ports[0]).toBe(ports[1]);
    expect(ports[2]).not.toBe(ports[0]);
  });

  it("a frozen connection: the request times out, the ping goes unanswered, the next request dials anew", async () => {
    const proxy = await FreezableProxy.start({ host: "127.0.0.1", port: portOf(h2) });
    seen.length = 0;
    connections = 0;
    const http = client(proxy.port, { requestTimeoutMs: 1000 });
    await list(http);
    proxy.freeze();
    const t0 = performance.now();
    await expect(list(http)).rejects.toThrow(/timed out/);
    // The ping (answered within the request timeout or not at all) closes the frozen connection.
    await new Promise((r) => setTimeout(r, 1200));
    expect((await list(http)).items).toHaveLength(1);
    const took = performance.now() - t0;
    http.close();
    await proxy.close();
    expect(connections).toBe(2);
    expect(took).toBeLessThan(5000);
  });

  it("an idle connection lets the process exit once its request is answered", async () => {
    const script = join(dir, "one-request.mts");
    writeFileSync(
      script,
      `import { KubeHttp } from ${JSON.stringify(fileURLToPath(new URL("./http-client.ts", import.meta.url)))};
const http = new KubeHttp({ server: "https://127.0.0.1:${portOf(h2)}", ca: ${JSON.stringify(pem("server.crt").toString())} });
const r = await http.json("GET", "/api/v1/namespaces");
console.log(r.items.length);
`,
    );
    // Not spawnSync: the server answering it runs in this process.
    const out = await new Promise<{ stdout: string; stderr: string; signal: string | null }>((resolve) => {
      const child = execFile(process.execPath, ["--import", "tsx", script], { timeout: 20_000 }, (_err, stdout, stderr) => resolve({ stdout, stderr, signal: child.signalCode }));
    });
    expect(out.stderr).toBe("");
    expect(out.stdout.trim()).toBe("1");
    expect(out.signal, "killed at the timeout: the idle connection held the process").toBeNull();
  });
});
