/**
 * A stand-in for an enterprise artifact server (Artifactory, Nexus, GitLab): HTTPS on loopback with
 * a certificate from a private CA made for the run (openssl), files behind a bearer token the test
 * can rotate, and a stop/start that keeps the port (a server that goes down, then comes back).
 * Used by the sources unit tests, the integration tests and the VM-node scenario.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";

export interface PrivateCa {
  /** The CA certificate (PEM): what a client must trust. */
  readonly caPem: string;
  /** The server's certificate, signed by the CA, for 127.0.0.1, localhost and `hosts`. */
  readonly certPem: string;
  readonly keyPem: string;
}

/** A CA and a server certificate it signed, valid for a day. */
export async function makePrivateCa(cn = "kpatch test private CA", hosts: readonly string[] = []): Promise<PrivateCa> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "private-ca-"));
  const f = (n: string) => path.join(dir, n);
  const openssl = (args: string[]) => execFileSync("openssl", args, { stdio: "ignore" });
  try {
    openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${cn}`, "-days", "1", "-keyout", f("ca.key"), "-out", f("ca.crt"),
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", f("srv.key"), "-out", f("srv.csr")]);
    const san = ["IP:127.0.0.1", "DNS:localhost", ...hosts.map((h) => (/^[0-9.]+$/.test(h) ? `IP:${h}` : `DNS:${h}`))].join(",");
    await writeFile(f("ext.cnf"), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    openssl(["x509", "-req", "-in", f("srv.csr"), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "1", "-out", f("srv.crt"), "-extfile", f("ext.cnf")]);
    return { caPem: await readFile(f("ca.crt"), "utf8"), certPem: await readFile(f("srv.crt"), "utf8"), keyPem: await readFile(f("srv.key"), "utf8") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface ArtifactServerOptions {
  readonly tls: PrivateCa;
  /** Accepted as `Authorization: Bearer <token>`; undefined: no token needed. */
  token?: string | undefined;
  /** Address to listen on (default 127.0.0.1). */
  readonly host?: string;
}

export interface ArtifactServer {
  /** https://127.0.0.1:<port> */
  readonly base: string;
  readonly port: number;
  /** Files served at /<name>. */
  readonly files: Map<string, Uint8Array>;
  /** What each request carried, in order. */
  readonly requests: Array<{ path: string; headers: IncomingHttpHeaders }>;
  setToken(token: string | undefined): void;
  /** Closes the listener and every connection; start() listens again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startArtifactServer(o: ArtifactServerOptions): Promise<ArtifactServer> {
  let token = o.token;
  const files = new Map<string, Uint8Array>();
  const requests: ArtifactServer["requests"] = [];
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const p = new URL(req.url ?? "/", "https://x").pathname;
    requests.push({ path: p, headers: req.headers });
    if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
      res.writeHead(401, { "www-authenticate": "Bearer" });
      return void res.end();
    }
    const body = files.get(p.slice(1));
    if (!body) {
      res.writeHead(404);
      return void res.end();
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": body.length });
    res.end(body);
  };
  const host = o.host ?? "127.0.0.1";
  let server: Server = createServer({ key: o.tls.keyPem, cert: o.tls.certPem }, handle);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    base: `https://127.0.0.1:${port}`,
    port,
    files,
    requests,
    setToken(t) {
      token = t;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
    async start() {
      server = createServer({ key: o.tls.keyPem, cert: o.tls.certPem }, handle);
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, resolve);
      });
    },
  };
}
