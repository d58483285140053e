/**
 * Kubeconfig connections through KubeHttp against a real TLS server on loopback (a CA, a server
 * certificate for kube.internal only, client certificates, all made with the openssl CLI): the
 * server's path prefix on requests and watches, tls-server-name, an exec plugin's token refreshed on
 * a 401 (a real script), its client certificate presented and rotated, a token file re-read on a 401,
 * basic auth; the local address connections leave from.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { kubeconfigConnection, type KubeconfigOptions } from "../connection.ts";
import { KubeHttp, type KubeApiError, type KubeHttpOptions } from "../http-client.ts";
import type { PluginRunner } from "./exec-credential.ts";

const dir = mkdtempSync(join(tmpdir(), "kubeconfig-transport-"));
const pem = (name: string) => readFileSync(join(dir, name), "utf8");
const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });

/** A key and a certificate signed by the test CA. */
function issue(name: string, subject: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", subject, "-keyout", `${name}.key`, "-out", `${name}.csr`);
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", `${name}.ext`, "-out", `${name}.crt`);
}

interface Seen {
  url: string;
  authorization: string | undefined;
  /** The CN of the client certificate presented, if any. */
  cn: string | undefined;
  /** The address and port the connection came from. */
  from: string | undefined;
  fromPort: number | undefined;
  httpVersion: string;
}

let server: Http2SecureServer;
let port: number;
const seen: Seen[] = [];
/** Who the server lets in; everyone else gets a 401. */
let admits: (s: Seen) => boolean = () => true;

function handle(req: Http2ServerRequest, res: Http2ServerResponse): void {
  const peer = (req.socket as TLSSocket).getPeerCertificate();
  const s: Seen = {
    url: req.url,
    authorization: req.headers.authorization,
    cn: String(peer?.subject?.CN ?? "") || undefined,
    from: req.socket.remoteAddress,
    fromPort: req.socket.remotePort,
    httpVersion: req.httpVersion,
  };
  seen.push(s);
  if (!admits(s)) {
    res.writeHead(401, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Status", reason: "Unauthorized", message: "Unauthorized", code: 401 }));
    return;
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ kind: "NamespaceList", items: [{ metadata: { name: "default" } }] }));
}

beforeAll(async () => {
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=test-ca", "-days", "1", "-keyout", "ca.key", "-out", "ca.crt");
  // No IP in the server's names: reached at 127.0.0.1, it is only trusted with tls-server-name.
  issue("server", "/CN=kube.internal", "subjectAltName=DNS:kube.internal\nextendedKeyUsage=serverAuth\n");
  issue("alice", "/CN=alice", "extendedKeyUsage=clientAuth\n");
  issue("alice2", "/CN=alice-rotated", "extendedKeyUsage=clientAuth\n");
  // HTTP/2 and HTTP/1.1, as the API server speaks both: each suite below runs over each.
  server = createSecureServer({ key: pem("server.key"), cert: pem("server.crt"), ca: pem("ca.crt"), requestCert: true, rejectUnauthorized: false, allowHTTP1: true }, handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen.length = 0;
  admits = () => true;
});

let n = 0;
/** The protocol the clients of the suite running now ask for (HTTP/2 when true). */
let http2 = false;
/** A kubeconfig file for the loopback server; returns a client on it. */
function client(o: { cluster?: object; user?: object; prefix?: string }, opts: KubeconfigOptions = {}, httpOpts: KubeHttpOptions = {}): KubeHttp {
  const p = join(dir, `kubeconfig-${++n}`);
  const cluster = { server: `https://127.0.0.1:${port}${o.prefix ?? ""}`, "certificate-authority": "ca.crt", "tls-server-name": "kube.internal", ...o.cluster };
  writeFileSync(
    p,
    stringify({
      clusters: [{ name: "c", cluster }],
      users: [{ name: "u", user: o.user ?? {} }],
      contexts: [{ name: "main", context: { cluster: "c", user: "u" } }],
      "current-context": "main",
    }),
  );
  return new KubeHttp(kubeconfigConnection(p, opts), { http2, ...httpOpts });
}

const list = (http: KubeHttp) => http.json<{ items: unknown[] }>("GET", "/api/v1/namespaces", { query: { limit: 10 } });

describe.each([
  { protocol: "HTTP/1.1", http2: false, version: "1.1" },
  { protocol: "HTTP/2", http2: true, version: "2.0" },
])("over $protocol", ({ http2: over, version }) => {
  beforeAll(() => {
    http2 = over;
  });
  afterEach(() => {
    expect(seen.every((s) => s.httpVersion === version), JSON.stringify(seen.map((s) => s.httpVersion))).toBe(true);
  });

  describe("the local address", () => {
    it("requests and watches leave from the address given, the system's choice without one", async () => {
      const pinned = client({}, {}, { localAddress: "127.1.2.3" });
      await list(pinned);
      const watch = await pinned.stream("/apis/kpatch.io/v1alpha1/kernellivepatches", { query: { watch: true } });
      watch.destroy();
      pinned.close();
      const plain = client({});
      await list(plain);
      plain.close();
      expect(seen.map((s) => s.from)).toEqual(["127.1.2.3", "127.1.2.3", "127.0.0.1"]);
    });
  });

  /**
   * The kernel's timer on this host's TCP socket bound to 127.0.0.1:`localPort` (/proc/net/tcp):
   * its kind (2: keep-alive) and the seconds until it fires (the file counts in USER_HZ, 100 a second).
   */
  function tcpTimer(localPort: number): { kind: number; seconds: number } {
    const local = `0100007F:${localPort.toString(16).toUpperCase().padStart(4, "0")}`;
    const line = readFileSync("/proc/net/tcp", "utf8")
      .split("\n")
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[1] === local);
    if (!line) throw new Error(`no socket on ${local} in /proc/net/tcp`);
    const [kind, when] = line[5]!.split(":");
    return { kind: parseInt(kind!, 16), seconds: parseInt(when!, 16) / 100 };
  }

  describe("idle connections", () => {
    it("get their first TCP keep-alive probe after 30 s idle (as client-go's), not every second (Node's default)", async () => {
      const http = client({});
      await list(http);
      await new Promise((r) => setTimeout(r, 100)); // the connection back in the agent's pool
      const timer = tcpTimer(seen[0]!.fromPort!);
      http.close();
      expect(timer.kind, "a keep-alive timer").toBe(2);
      expect(timer.seconds).toBeGreaterThan(25);
    });
  });

  describe("the server URL", () => {
    it("its path prefix is kept on every request and on watches", async () => {
      const http = client({ prefix: "/k8s/clusters/c-x/" });
      await list(http);
      await http.send("PATCH", "/apis/kpatch.io/v1alpha1/kernellivepatches/p/status", { body: {} });
      const watch = await http.stream("/apis/kpatch.io/v1alpha1/kernellivepatches", { query: { watch: true, resourceVersion: "5" } });
      watch.destroy();
      http.close();
      expect(seen.map((s) => s.url)).toEqual([
        "/k8s/clusters/c-x/api/v1/namespaces?limit=10",
        "/k8s/clusters/c-x/apis/kpatch.io/v1alpha1/kernellivepatches/p/status",
        "/k8s/clusters/c-x/apis/kpatch.io/v1alpha1/kernellivepatches?watch=true&resourceVersion=5",
      ]);
    });

    it("tls-server-name is the name checked in the server's certificate", async () => {
      const named = client({});
      expect((await list(named)).items).toHaveLength(1);
      named.close();
      const unnamed = client({ cluster: { "tls-server-name": null } });
      await expect(list(unnamed)).rejects.toMatchObject({ code: "ERR_TLS_CERT_ALTNAME_INVALID" });
      unnamed.close();
    });
  });

  describe("credentials", () => {
    it("an exec plugin (a real script): its token is sent; answered 401, it runs again and the request is sent once more", async () => {
      const script = join(dir, "get-token.sh");
      // The plugin's record of its runs: fresh for each protocol's run of this test.
      const runs = mkdtempSync(join(dir, "plugin-runs-"));
      // The first run answers a stale token, the next ones a fresh one; every run's KUBERNETES_EXEC_INFO is kept.
      writeFileSync(
        script,
        `#!/bin/sh
  echo "$KUBERNETES_EXEC_INFO" >> "${runs}/exec-info"
  echo run >> "${runs}/runs"
  if [ "$(wc -l < "${runs}/runs")" -ge 2 ]; then t=fresh; else t=stale; fi
  printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s-%s"}}' "$t" "$PREFIX_FROM_ENV"
  `,
      );
      chmodSync(script, 0o755);
      admits = (s) => s.authorization === "Bearer fresh-x";
      const http = client({
        prefix: "/k8s/clusters/c-x",
        user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "./get-token.sh", env: [{ name: "PREFIX_FROM_ENV", value: "x" }], interactiveMode: "Never", provideClusterInfo: true } },
      });
      expect((await list(http)).items).toHaveLength(1);
      await list(http);
      http.close();
      expect(seen.map((s) => s.authorization)).toEqual(["Bearer stale-x", "Bearer fresh-x", "Bearer fresh-x"]);
      const infos = readFileSync(join(runs, "exec-info"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as unknown);
      expect(infos).toHaveLength(2);
      expect(infos[0]).toEqual({
        apiVersion: "client.authentication.k8s.io/v1",
        kind: "ExecCredential",
        spec: { interactive: false, cluster: { server: `https://127.0.0.1:${port}/k8s/clusters/c-x`, "tls-server-name": "kube.internal", "certificate-authority-data": Buffer.from(pem("ca.crt")).toString("base64") } },
      });
    });

    it("an exec plugin's client certificate is presented, and a new one replaces it once the first expires", async () => {
      const clock = { now: Date.parse("2026-12-03T12:00:00Z") };
      let runs = 0;
      const run: PluginRunner = () => {
        const who = ++runs === 1 ? "alice" : "alice2";
        const status = { clientCertificateData: pem(`${who}.crt`), clientKeyData: pem(`${who}.key`), expirationTimestamp: "2026-12-03T12:10:00Z" };
        return Promise.resolve({ kind: "exited", code: 0, stdout: JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential", status }), stderr: "" });
      };
      const http = client({ user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "unused", interactiveMode: "Never" } } }, { now: () => clock.now, runPlugin: run });
      await list(http);
      await list(http);
      clock.now += 10 * 60_000;
      await list(http);
      http.close();
      expect(seen.map((s) => s.cn)).toEqual(["alice", "alice", "alice-rotated"]);
      expect(seen.map((s) => s.authorization)).toEqual([undefined, undefined, undefined]);
      expect(runs).toBe(2);
    });

    it("a token file rotated after a 401 is read again at once, without waiting a minute", async () => {
      const tokenFile = join(dir, "token");
      writeFileSync(tokenFile, "old\n");
      admits = (s) => s.authorization === "Bearer new";
      const http = client({ user: { tokenFile: "token" } }, { now: () => 0 });
      const denied = await list(http).then(() => undefined, (e: KubeApiError) => e);
      expect(denied).toMatchObject({ code: 401 });
      writeFileSync(tokenFile, "new\n");
      expect((await list(http)).items).toHaveLength(1);
      http.close();
      expect(seen.map((s) => s.authorization)).toEqual(["Bearer old", "Bearer old", "Bearer new"]);
    });

    it("basic auth", async () => {
      const http = client({ user: { username: "admin", password: "s3cret" } });
      await list(http);
      http.close();
      expect(seen[0]?.authorization).toBe(`Basic ${Buffer.from("admin:s3cret").toString("base64")}`);
    });

    it("a client certificate from the kubeconfig, with a static token", async () => {
      const http = client({ user: { "client-certificate": "alice.crt", "client-key": "alice.key", token: "t" } });
      await list(http);
      http.close();
      expect(seen[0]).toMatchObject({ cn: "alice", authorization: "Bearer t" });
    });
  });
});
