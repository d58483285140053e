/**
 * Fetches a module file from the source a patch names.
 *
 * A URL download can never hurt the agent: every failure (an address Node cannot parse, a bad
 * redirect, a slow or stalled server, an oversized body, TLS, the network) is a rejected promise
 * with a SourceUnavailable naming the URL and the cause — never a synchronous throw, never an
 * uncaught exception. One deadline covers the whole download (connect, redirects, body); the body
 * is streamed to a temporary file, hashed and size-checked while it arrives, and the digest is
 * checked against the pin before the file is handed over. The host driver still verifies the
 * bytes (digest and ELF) before using them.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import type { ClientRequest, IncomingMessage } from "node:http";
import { get } from "node:https";
import os from "node:os";
import path from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { PatchModule } from "../../crds/schema.ts";
import type { KubeHttp } from "../../kube/http-client.ts";
import { HostError } from "../host/host-error.ts";
import { describeReason } from "../host/reasons.ts";

/** The source could not deliver the file (yet): retried with backoff, not a final failure. */
export class SourceUnavailable extends Error {
  override readonly name = "SourceUnavailable";
}

export interface ModuleSources {
  fetch(module: PatchModule): Promise<Uint8Array>;
}

/** A module file delivered to a temporary file the caller owns. */
export interface FetchedFile {
  /** The temporary file (in `tmpDir`); the caller removes it (`remove()`). */
  readonly path: string;
  readonly size: number;
  /** sha256 (hex) of the file: equal to the module's pinned digest. */
  readonly sha256: string;
  /** Deletes the file; never throws. */
  remove(): Promise<void>;
}

export interface ModuleFileSources extends ModuleSources {
  /**
   * Like fetch, without holding the module in memory: the file's digest was checked against the
   * pin (a mismatch rejects with a HostError ChecksumMismatch, the file removed).
   */
  fetchToFile(module: PatchModule): Promise<FetchedFile>;
}

export interface SourceOptions {
  readonly http: KubeHttp;
  /** Where init containers copied image-sourced modules (named <sha256>.ko). */
  readonly imageModulesDir: string;
  readonly maxBytes: number;
  /** One deadline per URL download: connect, redirects and body together. Default 120 s. */
  readonly timeoutMs?: number;
  /** Longest wait for a response's headers (each request of a redirect chain). Default 30 s, at most timeoutMs. */
  readonly headersTimeoutMs?: number;
  /** Where downloads are streamed to before they are checked. Default os.tmpdir(). */
  readonly tmpDir?: string;
  /** Extra trusted CA certificates (PEM) for URL sources, replacing Node's bundled ones. */
  readonly ca?: string;
}

export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 120_000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000;
export const MAX_REDIRECTS = 3;

export function moduleSources(opts: SourceOptions): ModuleFileSources {
  const fetch = async (m: PatchModule): Promise<Uint8Array> => {
    if (m.configMap) return fromConfigMap(opts, m.configMap);
    if (m.url) {
      // The checked file is read back once (1x the module in memory) and deleted.
      const file = await downloadToFile(m.url, m.sha256, opts);
      try {
        return await readFile(file.path);
      } catch (err) {
        throw new SourceUnavailable(`${m.url}: reading the downloaded file back: ${describe(err)}`, { cause: err });
      } finally {
        await file.remove();
      }
    }
    if (m.image) return fromImageVolume(opts.imageModulesDir, m.sha256, m.image.reference);
    throw new SourceUnavailable("the module names no source");
  };
  const fetchToFile = async (m: PatchModule): Promise<FetchedFile> => {
    if (m.url) return downloadToFile(m.url, m.sha256, opts);
    // These sources are small or already local: their bytes are read whole, then written out.
    const bytes = await fetch(m);
    const where = m.configMap ? `ConfigMap ${m.configMap.namespace}/${m.configMap.name}` : `the copy of ${m.image?.reference ?? "the module"}`;
    checkDigest(where, m.sha256, sha256Hex(bytes));
    return toTempFile(opts.tmpDir ?? os.tmpdir(), m.sha256, bytes, where);
  };
  return { fetch, fetchToFile };
}

async function fromConfigMap(opts: SourceOptions, ref: { namespace: string; name: string; key: string }): Promise<Uint8Array> {
  const where = `ConfigMap ${ref.namespace}/${ref.name}`;
  let cm: { binaryData?: Record<string, string>; data?: Record<string, string> };
  try {
    cm = await opts.http.json("GET", `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/configmaps/${encodeURIComponent(ref.name)}`);
  } catch (err) {
    throw new SourceUnavailable(`${where}: ${(err as Error).message}`, { cause: err });
  }
  const b64 = cm.binaryData?.[ref.key];
  if (b64 === undefined) throw new SourceUnavailable(`${where} has no binaryData key ${ref.key}`);
  return Buffer.from(b64, "base64");
}

async function fromImageVolume(dir: string, sha256: string, reference: string): Promise<Uint8Array> {
  try {
    return await readFile(path.join(dir, `${sha256}.ko`));
  } catch (err) {
    throw new SourceUnavailable(`the copy of ${reference} is not in this agent pod yet (the DaemonSet is rolling out)`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// URL downloads

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * Downloads `url` to a temporary file in opts.tmpDir whose sha256 equals `sha256`. Rejects with a
 * SourceUnavailable naming the URL on every failure (a digest mismatch: HostError
 * ChecksumMismatch, like the driver's own check); the temporary file never outlives a failure.
 */
export async function downloadToFile(url: string, sha256: string, opts: Pick<SourceOptions, "maxBytes" | "timeoutMs" | "headersTimeoutMs" | "tmpDir" | "ca">): Promise<FetchedFile> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS;
  const headersTimeoutMs = Math.min(opts.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS, timeoutMs);
  let current = parseHttpsUrl(url, url, undefined);
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new SourceUnavailable(`${url}: not downloaded within ${timeoutMs} ms (the deadline covers connecting, redirects and the body)`)), timeoutMs);
  timer.unref();
  const seen = new Set([current.href]);
  const where = () => (current.href === url ? url : `${url} (redirected to ${current.href})`);
  try {
    for (let redirects = 0; ; redirects++) {
      const { req, res } = await requestHeaders(current, opts.ca, deadline.signal, headersTimeoutMs, where());
      const status = res.statusCode ?? 0;
      if (REDIRECT_STATUSES.has(status)) {
        discard(req, res);
        const location = res.headers.location;
        if (!location) throw new SourceUnavailable(`${where()}: HTTP ${status} redirect without a Location header`);
        if (redirects >= MAX_REDIRECTS) throw new SourceUnavailable(`${url}: more than ${MAX_REDIRECTS} redirects (the last one from ${current.href} to ${clip(location)})`);
        const next = parseHttpsUrl(location, url, current);
        if (seen.has(next.href)) throw new SourceUnavailable(`${url}: redirect loop (${current.href} redirects back to ${next.href})`);
        seen.add(next.href);
        current = next;
        continue;
      }
      if (status !== 200) {
        discard(req, res);
        throw new SourceUnavailable(`${where()}: HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ""}`);
      }
      const declared = Number(res.headers["content-length"]);
      if (Number.isFinite(declared) && declared > opts.maxBytes) {
        discard(req, res);
        throw new SourceUnavailable(`${where()} is ${declared} bytes (Content-Length), more than the limit of ${opts.maxBytes} bytes`);
      }
      return await bodyToFile(res, where(), sha256, opts.maxBytes, opts.tmpDir ?? os.tmpdir(), deadline.signal);
    }
  } catch (err) {
    if (deadline.signal.aborted && !(err instanceof HostError)) throw deadline.signal.reason as SourceUnavailable;
    if (err instanceof SourceUnavailable || err instanceof HostError) throw err;
    throw new SourceUnavailable(`${where()}: ${describe(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** Parses a URL or a redirect's Location (relative to `base`) without throwing anything but SourceUnavailable; only https. */
function parseHttpsUrl(value: string, url: string, base: URL | undefined): URL {
  let u: URL;
  try {
    u = base ? new URL(value, base) : new URL(value);
  } catch (err) {
    throw new SourceUnavailable(
      base ? `${url}: ${base.href} redirects to an invalid address ${JSON.stringify(clip(value))}` : `${JSON.stringify(url)} is not a valid URL: ${describe(err)}`,
      { cause: err },
    );
  }
  if (u.protocol !== "https:") {
    throw new SourceUnavailable(base ? `${url}: ${base.href} redirects to ${u.href}, which is not HTTPS (refused)` : `${url} is not an HTTPS URL (refused)`);
  }
  return u;
}

/** One GET; resolves at the response's headers. Everything that can go wrong rejects. */
function requestHeaders(u: URL, ca: string | undefined, signal: AbortSignal, headersTimeoutMs: number, where: string): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    let req: ClientRequest;
    try {
      req = get(u, { signal, ...(ca === undefined ? {} : { ca }), headers: { accept: "application/octet-stream, */*" } });
    } catch (err) {
      // Node can still refuse options synchronously (e.g. an unusable CA).
      reject(new SourceUnavailable(`${where}: ${describe(err)}`, { cause: err }));
      return;
    }
    const timer = setTimeout(() => req.destroy(new SourceUnavailable(`${where}: no response headers within ${headersTimeoutMs} ms`)), headersTimeoutMs);
    // Stays attached for the request's whole life: a late error must never be unhandled.
    req.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.once("response", (res) => {
      clearTimeout(timer);
      resolve({ req, res });
    });
  });
}

/** Drops a response whose body is not wanted (a redirect's, an error page) without reading it. */
function discard(req: ClientRequest, res: IncomingMessage): void {
  res.on("error", () => {});
  res.destroy();
  req.destroy();
}

/** Streams the body to a new temporary file, hashing and counting; checks size, completeness and digest. */
async function bodyToFile(res: IncomingMessage, where: string, sha256: string, maxBytes: number, tmpDir: string, signal: AbortSignal): Promise<FetchedFile> {
  const file = tempPath(tmpDir, sha256);
  const hash = createHash("sha256");
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      size += chunk.length;
      if (size > maxBytes) return done(new SourceUnavailable(`${where} is larger than the limit of ${maxBytes} bytes (download aborted)`));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await pipeline(res, meter, createWriteStream(file, { flags: "wx", mode: 0o600 }), { signal });
    if (!res.complete) throw new SourceUnavailable(`${where}: the connection closed before the end of the body`);
    const actual = hash.digest("hex");
    checkDigest(where, sha256, actual);
    return fetchedFile(file, size, actual);
  } catch (err) {
    res.on("error", () => {});
    res.destroy();
    await removeQuietly(file);
    throw err;
  }
}

function checkDigest(where: string, expected: string, actual: string): void {
  if (expected.toLowerCase() === actual) return;
  const params = { expected: expected.toLowerCase(), actual };
  throw new HostError("ChecksumMismatch", `${where}: ${describeReason("ChecksumMismatch", params)}`, { details: { source: where, ...params } });
}

async function toTempFile(tmpDir: string, sha256: string, bytes: Uint8Array, where: string): Promise<FetchedFile> {
  const file = tempPath(tmpDir, sha256);
  try {
    await writeFile(file, bytes, { flag: "wx", mode: 0o600 });
  } catch (err) {
    await removeQuietly(file);
    throw new SourceUnavailable(`${where}: writing the module to ${file}: ${describe(err)}`, { cause: err });
  }
  return fetchedFile(file, bytes.length, sha256.toLowerCase());
}

function tempPath(tmpDir: string, sha256: string): string {
  return path.join(tmpDir, `kpatch-module-${sha256.slice(0, 12)}-${randomBytes(6).toString("hex")}.part`);
}

function fetchedFile(file: string, size: number, sha256: string): FetchedFile {
  return { path: file, size, sha256, remove: () => removeQuietly(file) };
}

async function removeQuietly(file: string): Promise<void> {
  await rm(file, { force: true }).catch(() => {});
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** A server-chosen string, cut to a length fit for a status message. */
function clip(s: string): string {
  return s.length <= 200 ? s : `${s.slice(0, 200)}…`;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}
