/**
 * A container registry on this machine: Debian's docker-registry (the Distribution registry that
 * Harbor, GitLab's and many private registries are built on), plain HTTP on 127.0.0.1, its storage
 * in a temporary directory. The VM node's containerd reaches it through QEMU's forward, as a mirror
 * endpoint over HTTP (scripts/vm-node/guest-init.sh); images are pushed by the project's Docker,
 * for which a registry on 127.0.0.1 needs no TLS.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export interface Registry {
  /** host:port to push to, from this machine. */
  readonly address: string;
  readonly port: number;
  /** The manifests the registry served (GET /v2/<name>/manifests/<reference>), as "<name>@<reference>". */
  manifestsServed(): string[];
  stop(): Promise<void>;
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });

export async function startRegistry(binary: string, log: (line: string) => void = () => {}): Promise<Registry> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "klp-registry-"));
  const port = await freePort();
  const config = path.join(dir, "config.yml");
  await writeFile(config, [
    "version: 0.1",
    "log: {level: info, formatter: text, accesslog: {disabled: true}}",
    `storage: {filesystem: {rootdirectory: ${path.join(dir, "data")}}, delete: {enabled: false}}`,
    `http: {addr: "127.0.0.1:${port}"}`,
    "",
  ].join("\n"));
  const child: ChildProcess = spawn(binary, ["serve", config], { stdio: ["ignore", "pipe", "pipe"] });
  process.once("exit", () => child.kill("SIGKILL")); // never outlive the tests
  const served: string[] = [];
  let pending = "";
  const onData = (chunk: Buffer) => {
    pending += chunk.toString("utf8");
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      // `response completed … http.request.method=GET … http.request.uri="/v2/<name>/manifests/<ref>"`
      const m = /http\.request\.method=GET .*http\.request\.uri="\/v2\/(.+)\/manifests\/([^"]+)"/.exec(line);
      if (m && /response completed/.test(line)) served.push(`${m[1]}@${m[2]}`);
    }
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  // Up once /v2/ answers (the API's version check).
  const end = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}) on start`);
    const ok = await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > end) throw new Error("docker-registry did not answer /v2/ within 30 s");
    await new Promise((r) => setTimeout(r, 200));
  }
  log(`registry on 127.0.0.1:${port} (storage ${dir})`);
  return {
    address: `127.0.0.1:${port}`,
    port,
    manifestsServed: () => [...served],
    async stop() {
      child.kill("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}
