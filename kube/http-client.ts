/**
 * A small JSON-over-HTTPS client for the few API calls the agent and the operator make (lists,
 * watches, server-side applies, events, the Lease), in place of @kubernetes/client-node.
 */
import type { IncomingMessage } from "node:http";
import { Agent, request } from "node:https";
import { createSecureContext, type SecureContext } from "node:tls";
import type { Connection, Credentials } from "./connection.ts";
import { H2Connection, KEEPALIVE_PROBE_AFTER_MS, type H2Response } from "./h2-connection.ts";

/** Content types of the patches the API server takes. */
export const APPLY = "application/apply-patch+yaml";
export const MERGE = "application/merge-patch+json";

/** Resolves undefined on 404. */
export async function ignoreNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return undefined;
    throw err;
  }
}

export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface RequestOptions {
  readonly query?: Record<string, string | number | boolean | undefined>;
  readonly body?: unknown;
  readonly contentType?: string;
  /** The Accept header (default application/json): list-watch asks for PartialObjectMetadata with it. */
  readonly accept?: string;
  readonly timeoutMs?: number;
}

export interface KubeHttpOptions {
  /**
   * Longest silence on a request's connection (default 30 s). Without it, a request on a
   * connection that went dead without a FIN or RST (a frozen NAT entry, a partitioned node) would
   * wait forever and take the agent's loop with it. Watches have their own silence watchdog.
   */
  readonly requestTimeoutMs?: number;
  /** HTTP/1.1 connections to the API server at most (default 4); every open watch holds one. */
  readonly maxSockets?: number;
  /** The User-Agent header (default kpatch-agent). */
  readonly userAgent?: string;
  /**
   * The local address to connect from (default: the system's choice). A node's agent never sets
   * it; the benchmark's simulated fleet gives each agent an address of its own on loopback, as each
   * node has its own: 5,000 agents connecting from one address use up its ephemeral ports towards
   * the API server, and then every connect() searches the port range (docs/benchmarks.md).
   */
  readonly localAddress?: string;
  /**
   * HTTP/2 when the server offers it (default true), as client-go speaks it: one connection carries
   * every watch and request (kube/h2-connection.ts). False: HTTP/1.1, up to `maxSockets` connections.
   */
  readonly http2?: boolean;
}

/** A response as KubeHttp reads it: node:http's IncomingMessage, or an HTTP/2 stream with its status. */
type Response = IncomingMessage | H2Response;

export class KubeHttp {
  private readonly agent: Agent;
  /** The agent presenting an exec plugin's client certificate, replaced when the plugin issues a new one. */
  private certAgent: { readonly cert: Buffer; readonly agent: Agent } | undefined;
  private readonly base: URL;
  /** The server URL's path (Rancher's /k8s/clusters/c-x), put before every request path. */
  private readonly prefix: string;
  private readonly maxSockets: number;
  private readonly requestTimeoutMs: number;
  private readonly userAgent: string;
  private readonly localAddress: string | undefined;
  /** The HTTP/2 connections (the connection's own, one per exec-plugin certificate); none on HTTP/1.1. */
  private h2: H2Connection | undefined;
  private certH2: { readonly cert: Buffer; readonly h2: H2Connection } | undefined;
  /** The server did not offer h2: HTTP/1.1 from then on. */
  private http1Only: boolean;

  constructor(
    private readonly conn: Connection,
    opts: KubeHttpOptions = {},
  ) {
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    this.userAgent = opts.userAgent ?? "kpatch-agent";
    this.base = new URL(conn.server);
    this.prefix = this.base.pathname.replace(/\/+$/, "");
    this.maxSockets = opts.maxSockets ?? 4;
    this.localAddress = opts.localAddress;
    this.http1Only = opts.http2 === false;
    this.agent = this.newAgent(secureContextOf(conn));
  }

  async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const res = await this.open(method, path, { ...opts, timeoutMs: opts.timeoutMs ?? this.requestTimeoutMs });
    const text = await readAll(res);
    if ((res.statusCode ?? 0) >= 300) throw toError(res.statusCode ?? 0, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * A request whose answer only matters when it is an error: a successful response's body is read
   * and dropped unparsed. A status apply answers with the whole object (~400 KiB for a patch listing
   * 1000 nodes); parsing it only to throw it away was most of the operator's garbage at scale.
   */
  async send(method: string, path: string, opts: RequestOptions = {}): Promise<void> {
    const res = await this.open(method, path, { ...opts, timeoutMs: opts.timeoutMs ?? this.requestTimeoutMs });
    if ((res.statusCode ?? 0) >= 300) throw toError(res.statusCode ?? 0, await readAll(res));
    await consume(res); // read to the end unkept, so the socket goes back to the pool
  }

  /**
   * Opens a streaming response (watch); the caller reads and destroys it. The request timeout
   * holds until the response headers arrive; the stream itself is the caller's to watch.
   */
  async stream(path: string, opts: RequestOptions = {}): Promise<Response> {
    const res = await this.open("GET", path, { ...opts, timeoutMs: opts.timeoutMs ?? this.requestTimeoutMs }, true);
    if ((res.statusCode ?? 0) >= 300) throw toError(res.statusCode ?? 0, await readAll(res));
    return res;
  }

  close(): void {
    this.agent.destroy();
    this.certAgent?.agent.destroy();
    this.h2?.close();
    this.certH2?.h2.close();
  }

  /**
   * A request with the connection's current credentials. Answered 401, they are reported rejected
   * (an expired exec token, a rotated token file) and, if that yields new ones, the request is sent
   * once more with them: client-go only refreshes for the next request, but our callers would
   * otherwise log a failure and wait a retry period for nothing.
   */
  private async open(method: string, path: string, opts: RequestOptions, streaming = false): Promise<Response> {
    const source = this.conn.credentials;
    const creds = await source?.current();
    const res = await this.openWith(method, path, opts, streaming, creds);
    if (res.statusCode !== 401 || !source || !creds) return res;
    source.rejected(creds);
    const fresh = await source.current();
    if (sameCredentials(fresh, creds)) return res;
    await consume(res);
    return this.openWith(method, path, opts, streaming, fresh);
  }

  private async openWith(method: string, path: string, opts: RequestOptions, streaming: boolean, creds: Credentials | undefined): Promise<Response> {
    // Joined by hand: new URL("/api/v1/...", base) would drop the server's path prefix.
    const url = new URL(this.prefix + path, this.base.origin);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const body = opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body);
    const token = this.conn.token?.();
    const authorization = creds?.authorization ?? (token ? `Bearer ${token}` : undefined);
    const headers = {
      accept: opts.accept ?? "application/json",
      "user-agent": this.userAgent,
      ...(authorization ? { authorization } : {}),
      ...(body !== undefined ? { "content-type": opts.contentType ?? "application/json", "content-length": Buffer.byteLength(body) } : {}),
    };
    if (!this.http1Only) {
      const sent = await this.h2For(creds).send({ method, path: url.pathname + url.search, headers, body, timeoutMs: opts.timeoutMs ?? 0, streaming });
      if (sent !== "http/1.1") return sent;
      this.http1Only = true;
      this.h2?.close();
      this.certH2?.h2.close();
    }
    const servername = this.conn.tlsServerName;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method,
          agent: this.agentFor(creds),
          ...(servername ? { servername } : {}),
          headers,
          ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
        },
        (res) => {
          if (streaming) req.setTimeout(0);
          resolve(res);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`request to ${url.pathname} timed out`)));
      req.on("error", reject);
      req.end(body);
    });
  }

  /** The HTTP/2 connection to send with: the connection's own, or one presenting the plugin's current client certificate. */
  private h2For(creds: Credentials | undefined): H2Connection {
    const target = (secureContext: SecureContext) =>
      new H2Connection({
        origin: this.base.origin,
        secureContext,
        rejectUnauthorized: !this.conn.insecureSkipTlsVerify,
        servername: this.conn.tlsServerName,
        localAddress: this.localAddress,
        timeoutMs: this.requestTimeoutMs,
      });
    if (!creds?.cert || !creds.key) return (this.h2 ??= target(secureContextOf(this.conn)));
    if (this.certH2?.cert !== creds.cert) {
      this.certH2?.h2.close();
      const { ca } = this.conn;
      this.certH2 = { cert: creds.cert, h2: target(createSecureContext({ ...(ca ? { ca } : {}), cert: creds.cert, key: creds.key })) };
    }
    return this.certH2.h2;
  }

  /**
   * The pool to send with: the connection's own, or one presenting the plugin's current client
   * certificate. A new certificate closes the old pool's connections, watches included (they
   * reconnect), as client-go closes every connection when an exec plugin rotates its certificate.
   */
  private agentFor(creds: Credentials | undefined): Agent {
    if (!creds?.cert || !creds.key) return this.agent;
    if (this.certAgent?.cert !== creds.cert) {
      this.certAgent?.agent.destroy();
      const { ca } = this.conn;
      this.certAgent = { cert: creds.cert, agent: this.newAgent(createSecureContext({ ...(ca ? { ca } : {}), cert: creds.cert, key: creds.key })) };
    }
    return this.certAgent.agent;
  }

  private newAgent(secureContext: SecureContext): Agent {
    return new Agent({
      keepAlive: true,
      // TCP keep-alive probes on an idle connection after 30 s, as client-go's dialer sends them;
      // Node's default (1 s, then every second) sends one per idle connection per second: 10,000
      // packets a second into the API server's host from a 5,000-node fleet, for nothing the
      // request timeout and the watches' silence watchdog do not already catch.
      keepAliveMsecs: KEEPALIVE_PROBE_AFTER_MS,
      maxSockets: this.maxSockets,
      secureContext,
      rejectUnauthorized: !this.conn.insecureSkipTlsVerify,
      ...(this.localAddress ? { localAddress: this.localAddress } : {}),
    });
  }
}

function sameCredentials(a: Credentials, b: Credentials): boolean {
  return a.authorization === b.authorization && a.cert === b.cert;
}

const secureContexts = new WeakMap<Connection, SecureContext>();

/**
 * One TLS context (CA, client certificate and key, parsed once) per connection. Given only
 * `ca`/`cert`/`key`, node:https builds a new context for every socket it opens: parsing the CA
 * bundle each time was the largest single CPU cost of 1000 simulated agents (createSecureContext
 * 6 of their 31 CPU-s at 1000 nodes), and costs a real agent the same on every reconnect.
 */
function secureContextOf(conn: Connection): SecureContext {
  let ctx = secureContexts.get(conn);
  if (!ctx) {
    ctx = createSecureContext({
      ...(conn.ca ? { ca: conn.ca } : {}),
      ...(conn.cert ? { cert: conn.cert } : {}),
      ...(conn.key ? { key: conn.key } : {}),
    });
    secureContexts.set(conn, ctx);
  }
  return ctx;
}

/** The whole body, as text. */
async function readAll(res: Response): Promise<string> {
  const chunks: Buffer[] = [];
  await consume(res, (c) => chunks.push(c));
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Reads a response to its end, handing each chunk to `onData` (none: dropped). Its listeners come
 * off once it ends or fails: a response object can outlive its request (a keep-alive socket holds
 * on to it), and listeners left on it would keep every chunk and, through the promise, the whole
 * text alive — measured in the operator at 1000 node objects × 10 patches: 20 MiB of buffers and
 * 22 MiB of text of the first lists, for good.
 */
function consume(res: Response, onData?: (chunk: Buffer) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const onEnd = () => settle(resolve);
    const onError = (err: unknown) => settle(() => reject(err));
    const onClose = () => {
      if (!res.complete) onError(new Error("connection closed before the response ended"));
    };
    const settle = (then: () => void) => {
      if (onData) res.off("data", onData);
      res.off("end", onEnd);
      res.off("error", onError);
      res.off("close", onClose);
      then();
    };
    res.on("end", onEnd);
    res.on("error", onError);
    res.on("close", onClose);
    if (onData) res.on("data", onData);
    else res.resume();
  });
}

function toError(code: number, text: string): KubeApiError {
  try {
    const status = JSON.parse(text) as { reason?: string; message?: string };
    return new KubeApiError(code, status.reason ?? String(code), status.message ?? text);
  } catch {
    return new KubeApiError(code, String(code), text.slice(0, 500));
  }
}
