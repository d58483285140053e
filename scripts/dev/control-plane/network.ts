// Loopback ports for the components, and the service range's first address.
import net from "node:net";

/** Free loopback ports: bind port 0 (all at once so they differ) and read them back. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => {
      return new Promise<net.Server>((resolve, reject) => {
        const s = net.createServer();
        s.once("error", reject);
        s.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => resolve(s));
      });
    }),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** The first address of an IPv4 CIDR: the ClusterIP of the `kubernetes` Service. */
export function firstServiceIp(cidr: string): string {
  const [base, bitsStr] = cidr.split("/");
  const parts = (base ?? "").split(".").map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255) || !bitsStr) {
    throw new Error(`serviceClusterIpRange must be an IPv4 CIDR, got ${cidr}`);
  }
  const bits = Number(bitsStr);
  const n = ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const first = ((n & mask) + 1) >>> 0;
  return [first >>> 24, (first >>> 16) & 255, (first >>> 8) & 255, first & 255].join(".");
}
