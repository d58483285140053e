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
 *
 * A url source's urlAccess (a private CA, a bearer token, headers) is read from the operator's
 * namespace at each download (url-access.ts). Credentials go to the URL's own origin only: a
 * redirect to another origin (an artifact server handing off to object storage) is followed
 * without them, as curl and browsers do, so a token never reaches a server it was not meant for.
 * No message this module makes carries a credential's value.
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
import { HostError } from "../host/host-error.ts";
import { describeReason } from "../host/reasons.ts";
import { AccessUnavailable, resolveAccess, type ObjectReader, type ResolvedAccess } from "./url-access.ts";

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
  readonly http: ObjectReader;
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
  /** The operator's namespace, where the agent runs: where urlAccess's Secrets and ConfigMaps are read. */
  readonly accessNamespace?: string;
}

export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 120_000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000;
export const MAX_REDIRECTS = 3;

export function moduleSources(opts: SourceOptions): ModuleFileSources {
  const fetch = async (m: PatchModule): Promise<Uint8Array> => {
    if (m.configMap) return fromConfigMap(opts, m.configMap);
    if (m.url) {
      // The checked file is read back once (1x the module in memory) and deleted.
      const file = await fromUrl(m, m.url, opts);
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
    if (m.url) return fromUrl(m, m.url, opts);
    // These sources are small or already local: their bytes are read whole, then written out.
    const bytes = await fetch(m);
    const where = m.configMap ? `ConfigMap ${m.configMap.namespace}/${m.configMap.name}` : `the copy of ${m.image?.reference ?? "the module"}`;
    checkDigest(where, m.sha256, sha256Hex(bytes));
    return toTempFile(opts.tmpDir ?? os.tmpdir(), m.sha256, bytes, where);
  };
  return { fetch, fetchToFile };
}

/** Reads urlAccess (now, so a rotated token counts), then downloads. */
async function fromUrl(m: PatchModule, url: string, opts: SourceOptions): Promise<FetchedFile> {
  let access: ResolvedAccess;
  try {
    access = await resolveAccess(m.urlAccess, opts.http, opts.accessNamespace, opts.ca);
  } catch (err) {
    if (err instanceof AccessUnavailable) throw new SourceUnavailable(`${url}: ${err.message}`, { cause: err });
    throw err;
  }
  return downloadToFile(url, m.sha256, opts, access);
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
export async function downloadToFile(
  url: string,
  sha256: string,
  opts: Pick<SourceOptions, "maxBytes" | "timeoutMs" | "headersTimeoutMs" | "tmpDir" | "ca">,
  access: ResolvedAccess = { ...(opts.ca === undefined ? {} : { ca: opts.ca }), headers: {} },
): Promise<FetchedFile> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS;
  const headersTimeoutMs = Math.min(opts.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS, timeoutMs);
  let current = parseHttpsUrl(url, url, undefined);
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new SourceUnavailable(`${url}: not downloaded within ${timeoutMs} ms (the deadline covers connecting, redirects and the body)`)), timeoutMs);
  timer.unref();
  const seen = new Set([current.href]);
  const origin = current.origin;
  const where = () => (current.href === url ? url : `${url} (redirected to ${current.href})`);
  try {
    for (let redirects = 0; ; redirects++) {
      // Credentials only to the origin they were given for.
      const headers = current.origin === origin ? access.headers : {};
      const { req, res } = await requestHeaders(current, access.ca, headers, deadline.signal, headersTimeoutMs, where());
      const status = res.statusCode ?? 0;
      if (REDIRECT_STATUSES.has(status)) {
        discard(req, res);
        current = redirectTarget({ url, current, status, location: res.headers.location, redirects, seen, where: where() });
        continue;
      }
      if (status !== 200) {
        discard(req, res);
        throw new SourceUnavailable(`${where()}: ${statusLine(res)}${refusal(status, current.origin === origin, access)}`);
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

/** Where a redirect leads: refuses a missing Location, one redirect too many, a loop, a non-https target. */
function redirectTarget(r: { url: string; current: URL; status: number; location: string | undefined; redirects: number; seen: Set<string>; where: string }): URL {
  if (!r.location) throw new SourceUnavailable(`${r.where}: HTTP ${r.status} redirect without a Location header`);
  if (r.redirects >= MAX_REDIRECTS) throw new SourceUnavailable(`${r.url}: more than ${MAX_REDIRECTS} redirects (the last one from ${r.current.href} to ${clip(r.location)})`);
  const next = parseHttpsUrl(r.location, r.url, r.current);
  if (r.seen.has(next.href)) throw new SourceUnavailable(`${r.url}: redirect loop (${r.current.href} redirects back to ${next.href})`);
  r.seen.add(next.href);
  return next;
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
function requestHeaders(
  u: URL,
  ca: string | readonly string[] | undefined,
  headers: Readonly<Record<string, string>>,
  signal: AbortSignal,
  headersTimeoutMs: number,
  where: string,
): Promise<{ req: ClientRequest; res: IncomingMessage }> {
  return new Promise((resolve, reject) => {
    let req: ClientRequest;
    try {
      req = get(u, { signal, ...(ca === undefined ? {} : { ca: typeof ca === "string" ? ca : [...ca] }), headers: { accept: "application/octet-stream, */*", ...headers } });
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

function statusLine(res: IncomingMessage): string {
  return `HTTP ${res.statusCode}${res.statusMessage ? ` ${res.statusMessage}` : ""}`;
}

/** What a 401 or 403 means for this download: which credentials were refused, or that none were sent. */
function refusal(status: number, credentialsSent: boolean, access: ResolvedAccess): string {
  if (status !== 401 && status !== 403) return "";
  const what = status === 401 ? "Unauthorized: the server did not accept" : "Forbidden: the server refused access with";
  if (credentialsSent && access.credentialsFrom) return ` (${what} the credentials from ${access.credentialsFrom})`;
  if (access.credentialsFrom) return ` (${what} the request: credentials are not sent to another origin than the URL's)`;
  return ` (${what} the request: no credentials were sent; name a token or headers Secret in the module's urlAccess)`;
}

/** A server-chosen string, cut to a length fit for a status message. */
function clip(s: string): string {
  return s.length <= 200 ? s : `${s.slice(0, 200)}…`;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  if (code && TLS_VERIFICATION_CODES.has(code)) {
    // Node's own advice (run Node.js with --use-system-ca) is not the user's to follow here.
    return `TLS verification of the server's certificate failed: ${err.message.split(";")[0]} (${code}); trust its CA with urlAccess.caBundle`;
  }
  return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message;
}

/** OpenSSL's and Node's codes for a server certificate the client does not trust. */
const TLS_VERIFICATION_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_UNTRUSTED",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "CERT_REVOKED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);
