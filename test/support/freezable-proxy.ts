// A TCP proxy whose connections can be frozen: the silent-watch fault test's and the HTTP/2
// transport's unit test's dead connection.
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

/**
 * Forwards bytes between clients and a target. `freeze()` stops forwarding on every open
 * connection in both directions while keeping it open (no FIN, no RST: a dead NAT entry or a
 * partition looks like this); connections made afterwards work.
 */
export class FreezableProxy {
  private readonly open = new Set<{ client: Socket; upstream: Socket; frozen: boolean }>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<FreezableProxy> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const proxy = new FreezableProxy(server, (server.address() as AddressInfo).port);
    server.on("connection", (client) => proxy.accept(client, target));
    return proxy;
  }

  /** Connections open now (frozen or not). */
  get connections(): number {
    return this.open.size;
  }

  freeze(): number {
    let n = 0;
    for (const c of this.open) {
      if (c.frozen) continue;
      c.frozen = true;
      c.client.unpipe(c.upstream);
      c.upstream.unpipe(c.client);
      c.client.pause();
      c.upstream.pause();
      n++;
    }
    return n;
  }

  async close(): Promise<void> {
    for (const c of this.open) {
      c.client.destroy();
      c.upstream.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, target: { host: string; port: number }): void {
    const upstream = connect(target.port, target.host);
    const c = { client, upstream, frozen: false };
    this.open.add(c);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      this.open.delete(c);
      if (!c.frozen) {
        client.destroy();
        upstream.destroy();
      }
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", () => undefined);
    upstream.on("error", () => undefined);
  }
}
