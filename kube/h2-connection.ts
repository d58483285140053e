/**
 * One HTTP/2 connection to the API server, as client-go keeps one: every watch and request of a
 * client is a stream on it. A 5,000-node fleet of agents on HTTP/1.1 holds three to four TLS
 * connections per agent (a watch each, and the requests beside it); on HTTP/2 it holds one.
 *
 * The server chooses the protocol (ALPN): one that does not offer h2 is spoken to over HTTP/1.1
 * from then on (`dial` answers "http/1.1" and the caller keeps its HTTP/1.1 pool).
 *
 * A connection can die without a FIN or RST (a frozen NAT entry, a partitioned node): every stream
 * on it would wait. As client-go's transport does, a connection silent for 30 s is pinged, and one
 * whose ping is not answered in time is closed, its streams failed, the next request dialling anew.
 * A stream that times out or fails asks for the same check at once.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import type { Readable } from "node:stream";
import { connect as tlsConnect, type SecureContext } from "node:tls";

/** Idle time before a connection's first TCP keep-alive probe, on HTTP/2 and HTTP/1.1 (client-go's dialer: 30 s). */
export const KEEPALIVE_PROBE_AFTER_MS = 30_000;
/** Silence on a connection before it is pinged (client-go's ReadIdleTimeout). */
const PING_AFTER_IDLE_MS = 30_000;
/** Stream and connection flow-control windows: client-go's (4 MiB a stream), the connection's bounded. */
const STREAM_WINDOW = 4 << 20;
const SESSION_WINDOW = 16 << 20;

export interface H2Target {
  /** https://host:port */
  readonly origin: string;
  readonly secureContext: SecureContext;
  readonly rejectUnauthorized: boolean;
  /** The name checked in the server's certificate and sent as SNI, if not the URL's host. */
  readonly servername?: string | undefined;
  readonly localAddress?: string | undefined;
  /** Longest wait for a dial and for a ping's answer. */
  readonly timeoutMs: number;
}

/** A response: the stream its body is read from, with its status (as node:http's IncomingMessage has them). */
export type H2Response = Readable & { readonly statusCode: number; readonly complete: boolean };

export interface H2Request {
  readonly method: string;
  /** Path and query, with the server's path prefix. */
  readonly path: string;
  readonly headers: Record<string, string | number>;
  readonly body?: string | undefined;
  /** Longest silence on the stream before its response ends (0: none once the headers came). */
  readonly timeoutMs: number;
  readonly streaming: boolean;
}

export class H2Connection {
  private session: ClientHttp2Session | undefined;
  private dialing: Promise<ClientHttp2Session | "http/1.1"> | undefined;
  /** Open streams per session: a session with none lets the process exit. */
  private readonly streams = new WeakMap<ClientHttp2Session, number>();

  constructor(private readonly target: H2Target) {}

  /**
   * Sends a request on the connection, dialled if there is none; "http/1.1" when the server chose
   * that. A session that began to close between the dial and the request (a GOAWAY) is replaced once.
   */
  async send(r: H2Request): Promise<H2Response | "http/1.1"> {
    for (let attempt = 0; ; attempt++) {
      const session = await this.ready();
      if (session === "http/1.1") return session;
      if (takesStreams(session)) return this.request(session, r);
      if (this.session === session) this.session = undefined;
      if (attempt > 0) throw new Error(`the connection to ${this.target.origin} closed as the request was sent`);
    }
  }

  /** The open session, or a new one: a session that received a GOAWAY is closed to new streams. */
  private async ready(): Promise<ClientHttp2Session | "http/1.1"> {
    if (this.session && takesStreams(this.session)) return this.session;
    this.dialing ??= this.dial().finally(() => (this.dialing = undefined));
    return this.dialing;
  }

  private request(session: ClientHttp2Session, r: H2Request): Promise<H2Response> {
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request({ ":method": r.method, ":path": r.path, ...r.headers }, { endStream: r.body === undefined });
      } catch (err) {
        reject(err as Error);
        return;
      }
      this.opened(session);
      stream.once("close", () => this.released(session));
      let answered = false;
      // A stream that fails or falls silent may be the first sign of a dead connection. Kept for
      // the stream's life: an error with no listener would end the process.
      stream.on("error", (err) => {
        this.check(session);
        if (!answered) reject(err);
      });
      if (r.timeoutMs) {
        stream.setTimeout(r.timeoutMs, () => stream.destroy(new Error(`request to ${r.path.split("?")[0]} timed out`)));
      }
      stream.once("response", (headers: IncomingHttpHeaders) => {
        answered = true;
        if (r.streaming) stream.setTimeout(0);
        resolve(
          Object.defineProperties(stream as ClientHttp2Stream & H2Response, {
            statusCode: { value: Number(headers[":status"] ?? 0) },
            // The whole body came (END_STREAM), not a reset.
            complete: { get: () => stream.readableEnded && (stream.rstCode === undefined || stream.rstCode === constants.NGHTTP2_NO_ERROR) },
          }),
        );
      });
      if (r.body !== undefined) stream.end(r.body);
    });
  }

  /** Closes the connection; a later request dials a new one. */
  close(): void {
    this.session?.destroy();
    this.session = undefined;
  }

  private dial(): Promise<ClientHttp2Session | "http/1.1"> {
    const t = this.target;
    const url = new URL(t.origin);
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({
        host: url.hostname.replace(/^\[|\]$/g, ""),
        port: Number(url.port || 443),
        ALPNProtocols: ["h2", "http/1.1"],
        secureContext: t.secureContext,
        rejectUnauthorized: t.rejectUnauthorized,
        ...(t.servername ? { servername: t.servername } : {}),
        ...(t.localAddress ? { localAddress: t.localAddress } : {}),
      });
      socket.setTimeout(t.timeoutMs, () => socket.destroy(new Error(`connecting to ${t.origin} timed out`)));
      socket.once("error", reject);
      socket.once("secureConnect", () => {
        socket.setTimeout(0);
        socket.off("error", reject);
        if (socket.alpnProtocol !== "h2") {
          socket.destroy();
          resolve("http/1.1");
          return;
        }
        socket.setKeepAlive(true, KEEPALIVE_PROBE_AFTER_MS);
        const session = connect(t.origin, { createConnection: () => socket, settings: { initialWindowSize: STREAM_WINDOW, enablePush: false } });
        session.setLocalWindowSize(SESSION_WINDOW);
        // An idle connection lets the process exit; one with open streams keeps it running.
        session.unref();
        session.on("error", () => undefined); // its streams fail with it; the next request dials anew
        session.once("close", () => this.session === session && (this.session = undefined));
        session.setTimeout(PING_AFTER_IDLE_MS, () => this.check(session));
        this.session = session;
        resolve(session);
      });
    });
  }

  /** Pings the session; one that does not answer in time is closed. */
  private check(session: ClientHttp2Session): void {
    if (!takesStreams(session)) return;
    const timer = setTimeout(() => session.destroy(new Error(`no answer to a ping from ${this.target.origin} in ${this.target.timeoutMs} ms`)), this.target.timeoutMs);
    timer.unref();
    try {
      const sent = session.ping((err) => {
        clearTimeout(timer);
        if (err) session.destroy(err);
      });
      if (!sent) clearTimeout(timer); // too many pings unanswered already: the earlier one decides
    } catch {
      clearTimeout(timer);
      session.destroy();
    }
  }

  private opened(session: ClientHttp2Session): void {
    const n = this.streams.get(session) ?? 0;
    this.streams.set(session, n + 1);
    if (n === 0) session.ref();
  }

  private released(session: ClientHttp2Session): void {
    const n = (this.streams.get(session) ?? 1) - 1;
    this.streams.set(session, n);
    if (n === 0 && !session.destroyed) session.unref();
  }
}

/** Open to new streams: not closed (a GOAWAY closes a session to them) nor destroyed. */
function takesStreams(session: ClientHttp2Session): boolean {
  return !session.closed && !session.destroyed;
}
