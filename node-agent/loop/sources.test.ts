// URL module sources against a real local HTTPS server (a self-signed certificate made for the
// run, trusted through the `ca` option): every failure is a SourceUnavailable naming the URL, one
// deadline covers the whole download, the body streams to a temporary file that never outlives a
// failure.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { PatchModule } from "../../crds/schema.ts";
import { KubeApiError } from "../../kube/http-client.ts";
import { makePrivateCa, startArtifactServer, type ArtifactServer, type PrivateCa } from "../../test/support/artifact-server.ts";
import { HostError } from "../host/host-error.ts";
import { moduleSources, SourceUnavailable, type SourceOptions } from "./sources.ts";
import type { ObjectReader } from "./url-access.ts";

const BODY = randomBytes(200_000);
const BODY_SHA = createHash("sha256").update(BODY).digest("hex");

let certDir: string;
let ca: string;
let server: Server;
let base: string;
let tmpDir: string;
const drips = new Set<NodeJS.Timeout>();

function route(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? "/", base);
  const redirect = (location: string) => {
    res.writeHead(302, { location });
    res.end();
  };
  const chain = /^\/r\/(\d+)$/.exec(url.pathname);
  if (chain) {
    const n = Number(chain[1]);
    return redirect(n <= 1 ? "/good.ko" : `/r/${n - 1}`);
  }
  switch (url.pathname) {
    case "/good.ko":
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": BODY.length });
      return void res.end(BODY);
    case "/drip.ko": {
      // Never idle long enough for a socket inactivity timeout, never done.
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const t = setInterval(() => res.write("x"), 200);
      drips.add(t);
      res.on("close", () => clearInterval(t));
      return;
    }
    case "/endless.ko": {
      // Chunked, no Content-Length: only counting while streaming can stop it.
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const chunk = Buffer.alloc(16 * 1024, 1);
      const pump = () => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once("drain", pump);
      };
      res.on("error", () => {});
      return pump();
    }
    case "/hang.ko":
      return; // never answers
    case "/bad-location":
      return redirect("http://[bad");
    case "/to-http":
      return redirect(`http://127.0.0.1:${(server.address() as AddressInfo).port}/good.ko`);
    case "/loop":
      return redirect("/loop");
    case "/auth-to-localhost":
      // An artifact server handing off to another origin (object storage): the token stays behind.
      if (req.headers.authorization !== "Bearer s3cret") return void res.writeHead(401).end();
      return redirect(`https://localhost:${(server.address() as AddressInfo).port}/no-credentials.ko`);
    case "/auth-same-origin":
      if (req.headers.authorization !== "Bearer s3cret") return void res.writeHead(401).end();
      return redirect("/auth-good.ko");
    case "/auth-good.ko":
      if (req.headers.authorization !== "Bearer s3cret") return void res.writeHead(401).end();
      res.writeHead(200, { "content-length": BODY.length });
      return void res.end(BODY);
    case "/no-credentials.ko":
      if (req.headers.authorization !== undefined) return void res.writeHead(400).end("credentials leaked to another origin");
      res.writeHead(200, { "content-length": BODY.length });
      return void res.end(BODY);
    case "/missing.ko":
      res.writeHead(404);
      return void res.end("not here");
    default:
      res.writeHead(500);
      res.end();
  }
}

beforeAll(async () => {
  certDir = await mkdtemp(path.join(os.tmpdir(), "sources-test-cert-"));
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-days", "1",
      "-keyout", path.join(certDir, "key.pem"), "-out", path.join(certDir, "cert.pem")],
    { stdio: "ignore" },
  );
  ca = await readFile(path.join(certDir, "cert.pem"), "utf8");
  const key = await readFile(path.join(certDir, "key.pem"), "utf8");
  server = createServer({ key, cert: ca }, route);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const t of drips) clearInterval(t);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(certDir, { recursive: true, force: true });
});

beforeEach(async () => {
  tmpDir = await mkdtemp(path.join(os.tmpdir(), "sources-test-tmp-"));
});

afterEach(async () => {
  await rm(tmpDir, { recursive: true, force: true });
});

/** For sources that never read the API (URLs without urlAccess, image copies). */
const noKube: ObjectReader = {
  json: () => Promise.reject(new Error("these sources read nothing from the API")),
};

function sources(extra: Partial<SourceOptions> = {}) {
  return moduleSources({ http: noKube, imageModulesDir: "/nonexistent", maxBytes: 1 << 20, tmpDir, ca, timeoutMs: 5000, ...extra });
}

function fromUrl(url: string, sha256 = BODY_SHA): PatchModule {
  return { kernelRelease: "6.1.0-56-amd64", sha256, url };
}

/** The promise's rejection (fails the test if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected the fetch to fail, it succeeded");
}

async function expectUnavailable(p: Promise<unknown>, url: string, cause: RegExp): Promise<SourceUnavailable> {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(SourceUnavailable);
  expect(err.message).toContain(url);
  expect(err.message).toMatch(cause);
  return err as SourceUnavailable;
}

async function expectNoTempFiles(): Promise<void> {
  expect(await readdir(tmpDir)).toEqual([]);
}

describe("URL sources", () => {
  it("a URL the CRD accepts but Node's URL parser rejects (https://a:b:c/x.ko) is a SourceUnavailable, not a synchronous throw", async () => {
    const url = "https://a:b:c/x.ko";
    let p: Promise<unknown> | undefined;
    expect(() => {
      p = sources().fetch(fromUrl(url));
    }).not.toThrow();
    await expectUnavailable(p!, url, /not a valid URL/);
  });

  it("an invalid redirect Location (http://[bad) rejects instead of crashing the process", { timeout: 8000 }, async () => {
    const url = `${base}/bad-location`;
    const uncaught: unknown[] = [];
    const spy = (err: unknown) => uncaught.push(err);
    process.on("uncaughtException", spy);
    let err: Error;
    try {
      err = await rejection(sources().fetch(fromUrl(url)));
    } finally {
      process.off("uncaughtException", spy);
    }
    expect(uncaught).toEqual([]);
    await expectUnavailable(Promise.reject(err), url, /redirects to an invalid address "http:\/\/\[bad"/);
    await expectNoTempFiles();
  });

  it("a slow-drip server (one byte every 200 ms) cannot hold a download past its one deadline (timeoutMs)", { timeout: 8000 }, async () => {
    const url = `${base}/drip.ko`;
    const started = Date.now();
    await expectUnavailable(sources({ timeoutMs: 1000 }).fetch(fromUrl(url)), url, /not downloaded within 1000 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
    await expectNoTempFiles();
  });

  it("a server that never sends response headers is given up on after headersTimeoutMs", { timeout: 8000 }, async () => {
    const url = `${base}/hang.ko`;
    const started = Date.now();
    await expectUnavailable(sources({ headersTimeoutMs: 300 }).fetch(fromUrl(url)), url, /no response headers within 300 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("a body larger than maxBytes is aborted while streaming and leaves no temporary file", { timeout: 8000 }, async () => {
    const url = `${base}/endless.ko`;
    await expectUnavailable(sources({ maxBytes: 100_000 }).fetch(fromUrl(url)), url, /larger than the limit of 100000 bytes/);
    await expectNoTempFiles();
  });

  it("a declared Content-Length over maxBytes is refused before the body is read", async () => {
    const url = `${base}/good.ko`;
    await expectUnavailable(sources({ maxBytes: 1000 }).fetch(fromUrl(url)), url, /200000 bytes \(Content-Length\), more than the limit of 1000 bytes/);
    await expectNoTempFiles();
  });

  it("a body whose digest is not the pinned sha256 is refused (ChecksumMismatch) and leaves no temporary file", async () => {
    const url = `${base}/good.ko`;
    const wrong = "0".repeat(64);
    const err = await rejection(sources().fetch(fromUrl(url, wrong)));
    // The same final failure the host driver's own check gives: re-downloading changes nothing.
    expect(err).toBeInstanceOf(HostError);
    expect((err as HostError).reason).toBe("ChecksumMismatch");
    expect(err.message).toContain(url);
    expect(err.message).toContain(BODY_SHA);
    expect(err.message).toContain(wrong);
    await expectNoTempFiles();
  });

  it("a good download returns the bytes and leaves no temporary file", async () => {
    const bytes = await sources().fetch(fromUrl(`${base}/good.ko`));
    expect(Buffer.from(bytes).equals(BODY)).toBe(true);
    await expectNoTempFiles();
  });

  it("fetchToFile hands over a checked temporary file that remove() deletes", async () => {
    const file = await sources().fetchToFile(fromUrl(`${base}/good.ko`));
    expect(path.dirname(file.path)).toBe(tmpDir);
    expect(file.size).toBe(BODY.length);
    expect(file.sha256).toBe(BODY_SHA);
    expect((await readFile(file.path)).equals(BODY)).toBe(true);
    await file.remove();
    await expectNoTempFiles();
  });

  it("three redirects are followed", async () => {
    const bytes = await sources().fetch(fromUrl(`${base}/r/3`));
    expect(Buffer.from(bytes).equals(BODY)).toBe(true);
    await expectNoTempFiles();
  });

  it("a redirect chain of 4 is refused", async () => {
    const url = `${base}/r/4`;
    await expectUnavailable(sources().fetch(fromUrl(url)), url, /more than 3 redirects/);
    await expectNoTempFiles();
  });

  it("a redirect loop is refused", async () => {
    const url = `${base}/loop`;
    await expectUnavailable(sources().fetch(fromUrl(url)), url, /redirect loop/);
  });

  it("a redirect to http:// is refused", async () => {
    const url = `${base}/to-http`;
    await expectUnavailable(sources().fetch(fromUrl(url)), url, /redirects to http:\/\/127\.0\.0\.1:\d+\/good\.ko, which is not HTTPS/);
    await expectNoTempFiles();
  });

  it("a non-https URL is refused", async () => {
    const url = `http://127.0.0.1:1/x.ko`;
    await expectUnavailable(sources().fetch(fromUrl(url)), url, /not an HTTPS URL/);
  });

  it("an HTTP error status is a SourceUnavailable naming the status", async () => {
    const url = `${base}/missing.ko`;
    await expectUnavailable(sources().fetch(fromUrl(url)), url, /HTTP 404/);
    await expectNoTempFiles();
  });

  it("a server certificate not signed by a trusted CA is a SourceUnavailable", async () => {
    const url = `${base}/good.ko`;
    // Without `ca`, Node's bundled CAs do not trust the test's self-signed certificate.
    const s = moduleSources({ http: noKube, imageModulesDir: "/nonexistent", maxBytes: 1 << 20, tmpDir, timeoutMs: 5000 });
    await expectUnavailable(s.fetch(fromUrl(url)), url, /self-signed certificate|SELF_SIGNED/);
    await expectNoTempFiles();
  });
});

// ---------------------------------------------------------------------------------------------
// urlAccess: a private CA and credentials read from the operator's namespace at each download.

const NS = "kpatch-system";
const TOKEN = "tok-3f9a1c";

/** The agent's reads of its own namespace: the objects the operator let it read, by name. */
class FakeNamespace implements ObjectReader {
  readonly objects = new Map<string, { data: Record<string, string> }>();
  forbidden = new Set<string>();
  reads = 0;

  json<T>(method: string, p: string): Promise<T> {
    this.reads++;
    const m = /^\/api\/v1\/namespaces\/([^/]+)\/(secrets|configmaps)\/([^/]+)$/.exec(p);
    if (method !== "GET" || !m || m[1] !== NS) return Promise.reject(new Error(`unexpected request ${method} ${p}`));
    const key = `${m[2]}/${m[3]}`;
    if (this.forbidden.has(key)) return Promise.reject(new KubeApiError(403, "Forbidden", `${m[2]} "${m[3]}" is forbidden`));
    const o = this.objects.get(key);
    if (!o) return Promise.reject(new KubeApiError(404, "NotFound", `${m[2]} "${m[3]}" not found`));
    return Promise.resolve(o as T);
  }

  secret(name: string, data: Record<string, string>): void {
    this.objects.set(`secrets/${name}`, { data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString("base64")])) });
  }

  configMap(name: string, data: Record<string, string>): void {
    this.objects.set(`configmaps/${name}`, { data });
  }
}

describe("URL sources behind a private CA and credentials (urlAccess)", () => {
  let corp: PrivateCa;
  let artifacts: ArtifactServer;
  let ns: FakeNamespace;

  beforeAll(async () => {
    corp = await makePrivateCa("corp test CA");
    artifacts = await startArtifactServer({ tls: corp, token: TOKEN });
    artifacts.files.set("fix.ko", BODY);
  });

  afterAll(async () => {
    await artifacts.stop();
  });

  beforeEach(() => {
    ns = new FakeNamespace();
    ns.configMap("corp-ca", { "ca.crt": corp.caPem });
    ns.secret("artifactory", { token: `${TOKEN}\n` });
    artifacts.setToken(TOKEN);
    artifacts.requests.length = 0;
  });

  /** Sources as the agent builds them: Node's default roots (no test `ca`) unless given. */
  function agentSources(extra: Partial<SourceOptions> = {}) {
    return moduleSources({ http: ns, imageModulesDir: "/nonexistent", maxBytes: 1 << 20, tmpDir, timeoutMs: 5000, accessNamespace: NS, ...extra });
  }

  function privateModule(urlAccess: PatchModule["urlAccess"], url = `${artifacts.base}/fix.ko`, sha256 = BODY_SHA): PatchModule {
    return { kernelRelease: "6.1.0-56-amd64", sha256, url, urlAccess };
  }

  const withCaAndToken = { caBundle: { configMapName: "corp-ca", key: "ca.crt", trust: "SystemAndBundle" as const }, bearerTokenSecret: { name: "artifactory", key: "token" } };

  async function expectNoToken(err: Error): Promise<void> {
    expect(err.message).not.toContain(TOKEN);
    expect(JSON.stringify({ ...err, message: err.message })).not.toContain(TOKEN);
  }

  it("trusts the CA bundle of the ConfigMap's ca.crt key besides the default roots, sends the Secret's token (trimmed), and the digest still pins the file", async () => {
    const file = await agentSources().fetchToFile(privateModule(withCaAndToken));
    expect(file.sha256).toBe(BODY_SHA);
    expect((await readFile(file.path)).equals(BODY)).toBe(true);
    await file.remove();
    expect(artifacts.requests.map((r) => r.headers.authorization)).toEqual([`Bearer ${TOKEN}`]);
    await expectNoTempFiles();
  });

  it("without the CA bundle, the private CA's server fails TLS verification, and the message says so", async () => {
    const url = `${artifacts.base}/fix.ko`;
    const err = await expectUnavailable(agentSources().fetch(privateModule({ bearerTokenSecret: withCaAndToken.bearerTokenSecret })), url, /TLS verification of the server's certificate failed: .*UNABLE_TO_VERIFY_LEAF_SIGNATURE|TLS verification of the server's certificate failed: .*unable to (verify|get local issuer)/);
    expect(err.message).toContain("urlAccess.caBundle");
    expect(artifacts.requests).toEqual([]); // the token never left over an unverified connection
    await expectNoTempFiles();
  });

  it("BundleOnly trusts the bundle alone; SystemAndBundle adds it to the default roots", async () => {
    // The agent's default roots stand for the system's here: they hold the corp CA.
    ns.configMap("other-ca", { "ca.crt": ca }); // the self-signed certificate of the first test server
    const url = `${artifacts.base}/fix.ko`;
    const only = { ...withCaAndToken, caBundle: { configMapName: "other-ca", key: "ca.crt", trust: "BundleOnly" as const } };
    await expectUnavailable(agentSources({ ca: corp.caPem }).fetch(privateModule(only)), url, /TLS verification/);
    const both = { ...withCaAndToken, caBundle: { configMapName: "other-ca", key: "ca.crt", trust: "SystemAndBundle" as const } };
    expect(Buffer.from(await agentSources({ ca: corp.caPem }).fetch(privateModule(both))).equals(BODY)).toBe(true);
  });

  it("a wrong token: HTTP 401 named Unauthorized with the Secret it came from, never the token", async () => {
    ns.secret("artifactory", { token: "tok-wrong-7d2e" });
    const url = `${artifacts.base}/fix.ko`;
    const err = await expectUnavailable(agentSources().fetch(privateModule(withCaAndToken)), url, /HTTP 401 Unauthorized \(Unauthorized: the server did not accept the credentials from Secret kpatch-system\/artifactory key token/);
    expect(err.message).not.toContain("tok-wrong-7d2e");
    await expectNoToken(err);
  });

  it("no credentials at all: HTTP 401 says none were sent", async () => {
    const url = `${artifacts.base}/fix.ko`;
    await expectUnavailable(agentSources().fetch(privateModule({ caBundle: withCaAndToken.caBundle })), url, /HTTP 401 .*no credentials were sent/);
  });

  it("a rotated token is read at the next download: the Secret is read each time, never cached", async () => {
    const m = privateModule(withCaAndToken);
    await agentSources().fetch(m);
    artifacts.setToken("tok-rotated-81b0"); // the server now wants the new token; the Secret still has the old
    await expectUnavailable(agentSources().fetch(m), m.url!, /HTTP 401/);
    ns.secret("artifactory", { token: "tok-rotated-81b0" });
    const s = agentSources();
    expect(Buffer.from(await s.fetch(m)).equals(BODY)).toBe(true);
    expect(artifacts.requests.at(-1)?.headers.authorization).toBe("Bearer tok-rotated-81b0");
  });

  it("a headers Secret sends each key as a header (GitLab's PRIVATE-TOKEN)", async () => {
    artifacts.setToken(undefined);
    ns.secret("gitlab", { "PRIVATE-TOKEN": TOKEN, "X-Client": "kpatch" });
    await agentSources().fetch(privateModule({ caBundle: withCaAndToken.caBundle, headersSecretName: "gitlab" }));
    expect(artifacts.requests[0]?.headers["private-token"]).toBe(TOKEN);
    expect(artifacts.requests[0]?.headers["x-client"]).toBe("kpatch");
  });

  it("credentials follow a redirect within the URL's origin, but not one to another origin", async () => {
    ns.secret("t", { token: "s3cret" });
    const s = moduleSources({ http: ns, imageModulesDir: "/nonexistent", maxBytes: 1 << 20, tmpDir, ca, timeoutMs: 5000, accessNamespace: NS });
    const token = { bearerTokenSecret: { name: "t", key: "token" } };
    expect(Buffer.from(await s.fetch(privateModule(token, `${base}/auth-same-origin`))).equals(BODY)).toBe(true);
    // 127.0.0.1 -> localhost: another origin; the server answers 400 if the token came along.
    expect(Buffer.from(await s.fetch(privateModule(token, `${base}/auth-to-localhost`))).equals(BODY)).toBe(true);
  });

  it("a wrong sha256 behind a private CA and a token is still ChecksumMismatch, with nothing left on disk", async () => {
    const err = await rejection(agentSources().fetch(privateModule(withCaAndToken, undefined, "1".repeat(64))));
    expect((err as HostError).reason).toBe("ChecksumMismatch");
    await expectNoTempFiles();
  });

  it.each([
    ["a Secret that does not exist", () => ns.objects.delete("secrets/artifactory"), /Secret kpatch-system\/artifactory key token \(urlAccess.bearerTokenSecret\): Secret kpatch-system\/artifactory not found; create it in the operator's namespace/],
    ["a Secret without the key", () => ns.secret("artifactory", { other: TOKEN }), /Secret kpatch-system\/artifactory key token .*has no data key token/],
    ["an empty token", () => ns.secret("artifactory", { token: "  \n" }), /is empty/],
    ["a Secret the agent may not read (not granted yet)", () => ns.forbidden.add("secrets/artifactory"), /the agent may not read Secret kpatch-system\/artifactory/],
    ["a ConfigMap that does not exist", () => ns.objects.delete("configmaps/corp-ca"), /ConfigMap kpatch-system\/corp-ca key ca.crt \(urlAccess.caBundle\): ConfigMap kpatch-system\/corp-ca not found/],
    ["a ConfigMap without the key", () => ns.configMap("corp-ca", { "tls.crt": corp.caPem }), /has no data key ca.crt/],
    ["a ConfigMap key without a certificate", () => ns.configMap("corp-ca", { "ca.crt": "not a certificate" }), /holds no PEM certificate/],
  ])("%s is a SourceUnavailable naming the object (retried: it may appear), and nothing is downloaded", async (_name, arrange, message) => {
    arrange();
    const url = `${artifacts.base}/fix.ko`;
    const err = await expectUnavailable(agentSources().fetch(privateModule(withCaAndToken)), url, message);
    await expectNoToken(err);
    expect(artifacts.requests).toEqual([]);
  });

  it("a header value with CR/LF (header injection) is refused without echoing it", async () => {
    ns.secret("evil", { "X-Api-Key": `${TOKEN}\r\nX-Injected: 1` });
    const err = await expectUnavailable(agentSources().fetch(privateModule({ ...withCaAndToken, bearerTokenSecret: undefined, headersSecretName: "evil" })), `${artifacts.base}/fix.ko`, /the value of X-Api-Key holds a character a header cannot carry/);
    await expectNoToken(err);
    expect(artifacts.requests).toEqual([]);
  });

  it("urlAccess without the agent's namespace is a clear SourceUnavailable", async () => {
    await expectUnavailable(agentSources({ accessNamespace: undefined }).fetch(privateModule(withCaAndToken)), `${artifacts.base}/fix.ko`, /does not know the operator's namespace/);
  });
});
