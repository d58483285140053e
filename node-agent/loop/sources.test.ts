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
import type { KubeHttp } from "../../kube/http-client.ts";
import { HostError } from "../host/host-error.ts";
import { moduleSources, SourceUnavailable, type SourceOptions } from "./sources.ts";

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

const noKube = {} as KubeHttp;

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
