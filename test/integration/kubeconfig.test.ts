/**
 * Kubeconfigs an admin's machine has, against the real API server: a user that is an exec
 * credential plugin (a script printing a ServiceAccount token minted through the TokenRequest API;
 * a Node script printing a client certificate the cluster CA signed), and a server reached through
 * a path-prefixing reverse proxy (Rancher's /k8s/clusters/c-x) whose certificate only
 * tls-server-name matches. Each client lists namespaces, watches them, and asks the API server who
 * it is (SelfSubjectReview): never anonymous.
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest, createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { kubeconfigConnection } from "../../kube/connection.ts";
import { KubeHttp } from "../../kube/http-client.ts";
import { lines } from "../../kube/list-watch.ts";
import { controlPlane } from "../support/klp.ts";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";

const suffix = Date.now().toString(36);
const NS = `klp-kc-${suffix}`;
const SA = "kubeconfig-reader";
const PREFIX = "/k8s/clusters/c-x";
const EXEC_V1 = "client.authentication.k8s.io/v1";

let cp: ControlPlaneClient;
let dir: string;
let proxy: Server;
let proxyPort: number;
/** Paths the proxy was asked for, as they arrived. */
const proxied: string[] = [];

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await cp.kubectl(args, input === undefined ? undefined : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

function kubeconfig(name: string, cluster: object, user: object): string {
  const p = join(dir, `${name}.kubeconfig`);
  writeFileSync(
    p,
    stringify({
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "c", cluster }],
      users: [{ name: name, user }],
      contexts: [{ name, context: { cluster: "c", user: name } }],
      "current-context": name,
    }),
  );
  return p;
}

function script(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  chmodSync(p, 0o755);
  return p;
}

async function whoami(http: KubeHttp): Promise<{ username: string; groups: string[] }> {
  const r = await http.json<{ status: { userInfo: { username: string; groups: string[] } } }>("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
    body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
  });
  return r.status.userInfo;
}

async function namespaceNames(http: KubeHttp): Promise<string[]> {
  const r = await http.json<{ items: Array<{ metadata: { name: string } }> }>("GET", "/api/v1/namespaces");
  return r.items.map((n) => n.metadata.name);
}

/** The first event of a watch on this namespace (ADDED, the object as it is). */
async function firstWatchEvent(http: KubeHttp): Promise<{ type: string; object: { metadata: { name: string } } }> {
  const res = await http.stream("/api/v1/namespaces", { query: { watch: true, fieldSelector: `metadata.name=${NS}` } });
  try {
    for await (const line of lines(res.setEncoding("utf8"))) return JSON.parse(line) as { type: string; object: { metadata: { name: string } } };
    throw new Error("watch ended without an event");
  } finally {
    res.destroy();
  }
}

beforeAll(async () => {
  cp = await controlPlane();
  dir = mkdtempSync(join(tmpdir(), "klp-kubeconfig-"));
  await kubectl(["create", "namespace", NS]);
  await kubectl(["create", "serviceaccount", SA, "-n", NS]);
  await kubectl(["create", "clusterrole", `${NS}-ns-reader`, "--verb=get,list,watch", "--resource=namespaces"]);
  await kubectl(["create", "clusterrolebinding", `${NS}-ns-reader`, `--clusterrole=${NS}-ns-reader`, `--serviceaccount=${NS}:${SA}`]);

  // The proxy: TLS with a certificate the cluster CA signs for kube-proxy.test only; strips PREFIX
  // and forwards to the API server (the Authorization header passes through); anything else is a 404.
  execFileSync("openssl", ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=kube-proxy.test", "-keyout", "proxy.key", "-out", "proxy.csr"], { cwd: dir, stdio: "ignore" });
  writeFileSync(join(dir, "proxy.ext"), "subjectAltName=DNS:kube-proxy.test\nextendedKeyUsage=serverAuth\n");
  execFileSync("openssl", ["x509", "-req", "-in", "proxy.csr", "-CA", cp.caCertPath, "-CAkey", cp.caKeyPath, "-CAcreateserial", "-CAserial", join(dir, "ca.srl"), "-days", "1", "-extfile", "proxy.ext", "-out", "proxy.crt"], { cwd: dir, stdio: "ignore" });
  const upstream = new URL(cp.server);
  const ca = readFileSync(cp.caCertPath);
  proxy = createServer({ key: readFileSync(join(dir, "proxy.key")), cert: readFileSync(join(dir, "proxy.crt")) }, (req, res) => {
    proxied.push(req.url ?? "");
    if (!req.url?.startsWith(`${PREFIX}/`)) {
      res.writeHead(404).end("no such cluster");
      return;
    }
    const up = httpsRequest(
      { host: upstream.hostname, port: upstream.port, path: req.url.slice(PREFIX.length), method: req.method, headers: { ...req.headers, host: upstream.host }, ca },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    res.on("close", () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  proxyPort = (proxy.address() as AddressInfo).port;
});

afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  await kubectl(["delete", "clusterrolebinding,clusterrole", `${NS}-ns-reader`, "--ignore-not-found"]).catch(() => undefined);
  await kubectl(["delete", "namespace", NS, "--wait=false", "--ignore-not-found"]).catch(() => undefined);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("kubeconfig users and servers an admin has", () => {
  it("an exec plugin printing a ServiceAccount token from the TokenRequest API: lists and watches namespaces as that ServiceAccount", async () => {
    writeFileSync(join(dir, "sa.token"), await kubectl(["create", "token", SA, "-n", NS, "--duration=1h"]));
    const plugin = script(
      "sa-token.sh",
      `#!/bin/sh\nprintf '{"apiVersion":"${EXEC_V1}","kind":"ExecCredential","status":{"token":"%s"}}' "$(cat "${dir}/sa.token")"\n`,
    );
    const http = new KubeHttp(
      kubeconfigConnection(kubeconfig("exec-token", { server: cp.server, "certificate-authority": cp.caCertPath }, { exec: { apiVersion: EXEC_V1, command: plugin, interactiveMode: "Never" } })),
    );
    try {
      expect(await whoami(http)).toMatchObject({ username: `system:serviceaccount:${NS}:${SA}` });
      expect(await namespaceNames(http)).toContain(NS);
      expect(await firstWatchEvent(http)).toMatchObject({ type: "ADDED", object: { metadata: { name: NS } } });
    } finally {
      http.close();
    }
  });

  it("an exec plugin printing a client certificate the cluster CA signed (v1beta1, a Node script, with a relative command path)", async () => {
    const id = await cp.issueClientCert(`kc-exec-${suffix}`, ["system:masters"]);
    script(
      "cert-plugin.mjs",
      `#!${process.execPath}
import { readFileSync } from "node:fs";
const info = JSON.parse(process.env.KUBERNETES_EXEC_INFO);
if (info.spec.interactive !== false || info.apiVersion !== "client.authentication.k8s.io/v1beta1") process.exit(7);
process.stdout.write(JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1beta1", kind: "ExecCredential",
  status: { clientCertificateData: readFileSync(${JSON.stringify(id.certPath)}, "utf8"), clientKeyData: readFileSync(${JSON.stringify(id.keyPath)}, "utf8") } }));
`,
    );
    const http = new KubeHttp(
      kubeconfigConnection(
        kubeconfig("exec-cert", { server: cp.server, "certificate-authority": cp.caCertPath }, { exec: { apiVersion: "client.authentication.k8s.io/v1beta1", command: "./cert-plugin.mjs" } }),
      ),
    );
    try {
      expect(await whoami(http)).toMatchObject({ username: `kc-exec-${suffix}`, groups: expect.arrayContaining(["system:masters"]) });
      expect(await namespaceNames(http)).toContain(NS);
    } finally {
      http.close();
    }
  });

  it("through a path-prefixing reverse proxy named only by tls-server-name: requests and watches keep the prefix", async () => {
    const token = await kubectl(["create", "token", SA, "-n", NS, "--duration=1h"]);
    const cluster = { server: `https://127.0.0.1:${proxyPort}${PREFIX}`, "certificate-authority": cp.caCertPath, "tls-server-name": "kube-proxy.test" };
    const http = new KubeHttp(kubeconfigConnection(kubeconfig("prefixed", cluster, { token })));
    proxied.length = 0;
    try {
      expect(await whoami(http)).toMatchObject({ username: `system:serviceaccount:${NS}:${SA}` });
      expect(await namespaceNames(http)).toContain(NS);
      expect(await firstWatchEvent(http)).toMatchObject({ type: "ADDED", object: { metadata: { name: NS } } });
    } finally {
      http.close();
    }
    expect(proxied).toHaveLength(3);
    for (const p of proxied) expect(p.startsWith(`${PREFIX}/api`)).toBe(true);
  });
});
