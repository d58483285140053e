// A real Kubernetes node for tests: kubelet v1.37.2 + Debian's containerd, runc and CNI plugins, and
// kube-proxy (iptables mode), joined to a control plane from scripts/dev/control-plane/. Nothing is pulled:
// the pause image and the pod images are imported into the node's own containerd.
//
// Namespaces. One holder process (`unshare --mount --net --propagation slave sleep infinity`) owns
// the node's network and mount namespaces; containerd, the kubelet and kube-proxy are started in
// both with `nsenter -t <holder> -m -n`.
// - Network: a veth pair, `<hostIf>` (hostIp/30) in the machine's namespace and `eth0` (nodeIp/30)
//   in the node's, default route via hostIp. The kubelet registers nodeIp (it refuses a loopback
//   node IP), so the API server reaches it for `kubectl logs` and the stats proxy. Pods get
//   10.244.0.0/24 from the CNI bridge plugin (host-local IPAM, ipMasq) inside the node's namespace;
//   nothing is added to the machine's own routes or iptables.
// - Mounts: containerd's rootfs mounts, the kubelet's volume tmpfs and the pods' netns bind mounts
//   must be in one mount namespace (the kubelet mounts, containerd bind-mounts what it mounted), and
//   the machine's must not collect them: they live in the holder's, which goes away with its last
//   process. There the kubelet's kernel tunables (vm.overcommit_memory, kernel.panic, ...) are
//   bind-mounted files holding the values it wants, so it never changes the machine's sysctls.
// - The Service path: kube-proxy (iptables mode) in the node's namespace DNATs the `kubernetes`
//   Service (10.0.0.1:443) to its endpoint, the API server's advertise address = hostIp (the control
//   plane must run with `--advertise-address=<hostIp> --bind-address=0.0.0.0`: `realNodeApiServerArgs`).
//   The kubelet and kube-proxy themselves dial https://<hostIp>:<port> with tls-server-name
//   `kubernetes` (a name the serving certificate carries).
//
// Every component gets PR_SET_PDEATHSIG (setpriv) so a killed test process does not leave them
// running; the containers' shims outlive containerd by design, so stop() kills every task first,
// and startRealNode() first removes what an earlier run that was killed left behind.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readFile, readdir, rm, rmdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const STALE_MARKER_DIR = path.join(os.tmpdir(), "klp-real-nodes");
const HOLDER_PREFIX = "klp-node-holder:";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface NodeTools {
  binDir: string;
  cniBinDir: string;
  containerd: string;
  ctr: string;
  runc: string;
  pauseImage: string;
  pauseTar: string;
}

export interface NodeNetwork {
  /** Host side of the veth pair, in the machine's network namespace. */
  hostIf: string;
  /** The API server's advertise address and the node's default gateway. */
  hostIp: string;
  /** The node's InternalIP (eth0 in the node's namespace). */
  nodeIp: string;
  /** Pod addresses (CNI bridge `cni0` inside the node's namespace). */
  podCidr: string;
}

export interface RealNodeOptions {
  name: string;
  cp: ControlPlaneClient;
  tools: NodeTools;
  network: NodeNetwork;
  /** Labels the kubelet registers the Node with (--node-labels). */
  labels?: Record<string, string>;
  /** docker-archive / OCI tarballs to import into the node's containerd (k8s.io namespace). */
  images?: string[];
  /** Working dir. Default: a fresh temp dir, removed on stop() unless keep. */
  dir?: string;
  keep?: boolean;
  log?: (line: string) => void;
  /** Node Ready within this. Default 120 s. */
  readyTimeoutMs?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface NodeContainer {
  id: string;
  pod: string;
  namespace: string;
  container: string;
  pid: number;
  status: string;
}

export interface CgroupMemory {
  /** memory.usage_in_bytes */
  usageBytes: number;
  /** usage - total_inactive_file: what the kubelet calls the working set. */
  workingSetBytes: number;
  /** total_rss (anonymous memory) */
  rssBytes: number;
  cgroupPath: string;
}

export interface RealNode {
  readonly name: string;
  readonly dir: string;
  readonly network: NodeNetwork;
  /** Milliseconds per start phase: network, containerd, images, kube-proxy, kubelet (to Node Ready), total. */
  readonly timings: Record<string, number>;
  readonly logDir: string;
  /** Holder pid: `nsenter -t <pid> -m -n` enters the node. */
  readonly holderPid: number;
  /** ctr against the node's containerd (`-n k8s.io` is added). Never throws on exit code. */
  ctr(args: string[]): Promise<RunResult>;
  /** Runs a command inside the node's namespaces. Never throws on exit code. */
  exec(cmd: string, args: string[]): Promise<RunResult>;
  /** Containers of pods (not sandboxes) with a running task. */
  containers(): Promise<NodeContainer[]>;
  /** The running container of that pod and container name; throws when there is none. */
  container(namespace: string, pod: string, container: string): Promise<NodeContainer>;
  /** SIGKILL to a container's task, as an OOM kill or a crash would end it. */
  killContainer(id: string): Promise<void>;
  /** The container's memory cgroup (cgroup v1) figures. */
  cgroupMemory(id: string): Promise<CgroupMemory>;
  /** Log tails of every component, for failure messages. */
  describe(lines?: number): Promise<string>;
  /** Kubelet, kube-proxy, every task, containerd, the holder; removes the dir unless keep. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// commands

function run(file: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: "utf8", maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 120_000 }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === "string") return reject(err);
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
    });
    child.stdin?.end(opts.input);
  });
}

async function runOk(file: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<string> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${file} ${args.join(" ")} failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function tail(file: string, lines: number): Promise<string> {
  try {
    return (await readFile(file, "utf8")).split("\n").slice(-lines - 1).join("\n");
  } catch {
    return "(no log)";
  }
}

/** Runs scripts/node/ensure-tools.sh: installs and builds what is missing (apt-get, Go builds). */
export async function ensureNodeTools(log?: (line: string) => void): Promise<NodeTools> {
  const script = path.join(REPO_ROOT, "scripts/node/ensure-tools.sh");
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn("bash", [script], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let errTail = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      errTail = (errTail + c).slice(-8000);
      for (const l of c.split("\n")) if (l.trim()) log?.(l);
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(stdout) : reject(new Error(`scripts/node/ensure-tools.sh failed (exit ${code}):\n${errTail}`))));
  });
  const kv = Object.fromEntries(out.split("\n").filter((l) => l.includes("=")).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
  const need = (k: string) => {
    const v = kv[k];
    if (!v) throw new Error(`scripts/node/ensure-tools.sh printed no ${k}`);
    return v;
  };
  return {
    binDir: need("BIN_DIR"),
    cniBinDir: need("CNI_BIN_DIR"),
    containerd: need("CONTAINERD"),
    ctr: need("CTR"),
    runc: need("RUNC"),
    pauseImage: need("PAUSE_IMAGE"),
    pauseTar: need("PAUSE_TAR"),
  };
}

/**
 * Whether this machine can run a node: root with CAP_SYS_ADMIN and CAP_NET_ADMIN (namespaces, veth,
 * mounts), cgroups mounted, a network namespace and a veth pair can be made. Never throws.
 */
export async function realNodeSupport(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== "linux") return { ok: false, reason: `not Linux (${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: "not root: the kubelet, containerd and the node's namespaces need root" };
  try {
    const status = await readFile("/proc/self/status", "utf8");
    const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(status)?.[1] ?? "0"}`);
    const missing = [
      [21n, "CAP_SYS_ADMIN"],
      [12n, "CAP_NET_ADMIN"],
    ].filter(([bit]) => ((capEff >> (bit as bigint)) & 1n) === 0n).map(([, n]) => n);
    if (missing.length) return { ok: false, reason: `missing ${missing.join(", ")}` };
  } catch (e) {
    return { ok: false, reason: `cannot read /proc/self/status: ${(e as Error).message}` };
  }
  if (!existsSync("/sys/fs/cgroup/memory") && !existsSync("/sys/fs/cgroup/cgroup.controllers")) {
    return { ok: false, reason: "no cgroup hierarchy at /sys/fs/cgroup" };
  }
  for (const bin of ["unshare", "nsenter", "setpriv", "ip"]) {
    const r = await run("sh", ["-c", `command -v ${bin}`]).catch(() => ({ code: 1 }) as RunResult);
    if (r.code !== 0) return { ok: false, reason: `no ${bin} on PATH (util-linux / iproute2)` };
  }
  // A throwaway network namespace with a veth pair in it: what the node will need.
  const probe = `klpprobe${process.pid % 100000}`;
  const r = await run("unshare", ["--net", "--", "sh", "-c", `ip link add ${probe} type veth peer name ${probe}p && ip link set lo up`]).catch(
    (e: Error) => ({ code: 1, stdout: "", stderr: e.message }),
  );
  if (r.code !== 0) return { ok: false, reason: `cannot make a network namespace with a veth pair: ${r.stderr.trim()}` };
  return { ok: true };
}

/** The API server arguments the node's Service path needs (see the header). */
export function realNodeApiServerArgs(network: NodeNetwork): string[] {
  return ["--bind-address=0.0.0.0", `--advertise-address=${network.hostIp}`];
}

/**
 * Picks a /30 in 10.250.0.0/16 that no address or route of the machine uses, and an interface
 * name of this process. Pure apart from reading `ip -4 addr` / `ip -4 route`.
 */
export async function planNodeNetwork(): Promise<NodeNetwork> {
  const used = (await runOk("ip", ["-4", "-o", "addr", "show"])) + (await runOk("ip", ["-4", "route", "show"]));
  for (let i = 0; i < 64; i++) {
    const n = (process.pid + i * 7919) % 16384; // 16384 /30s in 10.250.0.0/16
    const third = Math.floor(n / 64);
    const fourth = (n % 64) * 4;
    const net = `10.250.${third}.`;
    if (new RegExp(`\\b10\\.250\\.${third}\\.(${fourth}|${fourth + 1}|${fourth + 2}|${fourth + 3})\\b`).test(used)) continue;
    if (used.includes(`10.250.0.0/16`)) break;
    return {
      hostIf: `klpn${(process.pid % 0xfffff).toString(16)}h${i}`.slice(0, 15),
      hostIp: `${net}${fourth + 1}`,
      nodeIp: `${net}${fourth + 2}`,
      podCidr: "10.244.0.0/24",
    };
  }
  throw new Error("no free /30 in 10.250.0.0/16 for the node's veth pair");
}

// ---------------------------------------------------------------------------------------------
// processes

interface Proc {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<void>;
  exitCode: number | null | undefined;
}

async function startProc(name: string, cmd: string, args: string[], logDir: string): Promise<Proc> {
  const logPath = path.join(logDir, `${name}.log`);
  const fh = await open(logPath, "a");
  await fh.write(`===== ${new Date().toISOString()} ${cmd} ${args.join(" ")}\n`);
  // setpriv --pdeathsig: the component dies with the test process even when that is SIGKILLed.
  const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", cmd, ...args], {
    stdio: ["ignore", fh.fd, fh.fd],
    env: { ...process.env, KUBECONFIG: "", PATH: `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` },
  });
  await fh.close();
  const proc: Proc = { name, child, logPath, exitCode: undefined, exited: Promise.resolve() };
  proc.exited = new Promise((resolve) => {
    child.once("error", (err) => {
      proc.exitCode = -1;
      void writeFile(logPath, `spawn error: ${err.message}\n`, { flag: "a" }).finally(() => resolve());
    });
    child.once("exit", (code, signal) => {
      proc.exitCode = code ?? (signal ? -1 : null);
      resolve();
    });
  });
  return proc;
}

async function stopProc(p: Proc | undefined, graceMs = 10_000): Promise<void> {
  if (!p || p.exitCode !== undefined) return;
  p.child.kill("SIGTERM");
  const timedOut = await Promise.race([p.exited.then(() => false), sleep(graceMs).then(() => true)]);
  if (timedOut && p.exitCode === undefined) {
    p.child.kill("SIGKILL");
    await p.exited;
  }
}

async function waitUntil(what: string, timeoutMs: number, procs: Proc[], check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    for (const p of procs) {
      if (p.exitCode !== undefined) throw new Error(`${p.name} exited (code ${p.exitCode}) before ${what}. Tail of ${p.logPath}:\n${await tail(p.logPath, 30)}`);
    }
    try {
      if (await check()) return;
    } catch (e) {
      last = (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${timeoutMs / 1000} s${last ? ` (last: ${last})` : ""}`);
    await sleep(250);
  }
}

// ---------------------------------------------------------------------------------------------
// leftovers of killed runs

interface Marker {
  pid: number;
  dir: string;
  holderPid: number;
  containerdAddress: string;
}

async function processAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Shims (containerd-shim-runc-v2) started for that containerd address: pids, from /proc. */
async function shimsOf(address: string): Promise<number[]> {
  const pids: number[] = [];
  for (const e of await readdir("/proc").catch(() => [] as string[])) {
    if (!/^\d+$/.test(e)) continue;
    const cmd = await readFile(`/proc/${e}/cmdline`, "utf8").catch(() => "");
    const argv = cmd.split("\0");
    if (argv[0]?.endsWith("containerd-shim-runc-v2") && argv.includes(address)) pids.push(Number(e));
  }
  return pids;
}

/**
 * Ends what containerd started under `dir` when containerd is no longer there to ask: every
 * process of each task's cgroup (task ids from containerd's state dir), then the shims. Killing a
 * shim alone would leave its container running, reparented to init.
 */
async function killOrphans(dir: string, address: string): Promise<void> {
  const taskRoot = path.join(dir, "containerd/state/io.containerd.runtime.v2.task/k8s.io");
  const ids = await readdir(taskRoot).catch(() => [] as string[]);
  const controllers = await readdir("/sys/fs/cgroup").catch(() => [] as string[]);
  const cgroupDirs = (id: string) => [path.join("/sys/fs/cgroup", "k8s.io", id), ...controllers.map((c) => path.join("/sys/fs/cgroup", c, "k8s.io", id))];
  for (let pass = 0; pass < 3; pass++) {
    let seen = 0;
    for (const id of ids) {
      const pids = new Set<number>();
      const init = Number((await readFile(path.join(taskRoot, id, "init.pid"), "utf8").catch(() => "")).trim());
      if (init > 1) pids.add(init);
      for (const d of cgroupDirs(id)) {
        for (const l of (await readFile(path.join(d, "cgroup.procs"), "utf8").catch(() => "")).split("\n")) if (Number(l) > 1) pids.add(Number(l));
      }
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
          seen++;
        } catch {
          /* gone */
        }
      }
    }
    if (seen === 0) break;
    await sleep(300);
  }
  for (const pid of await shimsOf(address)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
  await sleep(200);
  // An emptied cgroup is removed with rmdir (its files cannot be deleted).
  for (const id of ids) for (const d of cgroupDirs(id)) await rmdir(d).catch(() => undefined);
}

/**
 * Removes what an earlier node of a test process that no longer runs left behind: its containers
 * and shims, its holder (and so its namespaces and mounts), its dir.
 */
export async function cleanStaleNodes(log: (line: string) => void = () => {}): Promise<void> {
  const markers = await readdir(STALE_MARKER_DIR).catch(() => [] as string[]);
  for (const m of markers) {
    const file = path.join(STALE_MARKER_DIR, m);
    let marker: Marker;
    try {
      marker = JSON.parse(await readFile(file, "utf8")) as Marker;
    } catch {
      await rm(file, { force: true });
      continue;
    }
    if (await processAlive(marker.pid)) continue;
    log(`removing the leftovers of a node of pid ${marker.pid} (${marker.dir})`);
    await killOrphans(marker.dir, marker.containerdAddress);
    const holderCmd = await readFile(`/proc/${marker.holderPid}/cmdline`, "utf8").catch(() => "");
    if (holderCmd.startsWith(`${HOLDER_PREFIX}${marker.dir}\0`)) process.kill(marker.holderPid, "SIGKILL");
    await sleep(500);
    await rm(marker.dir, { recursive: true, force: true }).catch(() => undefined);
    await rm(file, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// config files

function kubeconfigFor(server: string, caPem: string, certPem: string, keyPem: string): string {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: klp",
    "  cluster:",
    `    server: ${server}`,
    // The serving certificate names 127.0.0.1, 10.0.0.1 and kubernetes*, not hostIp.
    "    tls-server-name: kubernetes",
    `    certificate-authority-data: ${b64(caPem)}`,
    "users:",
    "- name: node",
    "  user:",
    `    client-certificate-data: ${b64(certPem)}`,
    `    client-key-data: ${b64(keyPem)}`,
    "contexts:",
    "- name: klp",
    "  context: {cluster: klp, user: node}",
    "current-context: klp",
    "",
  ].join("\n");
}

function containerdConfig(dir: string, tools: NodeTools, cniConfDir: string): string {
  const q = JSON.stringify;
  return `version = 2
root = ${q(path.join(dir, "containerd/root"))}
state = ${q(path.join(dir, "containerd/state"))}
oom_score = 0

[grpc]
  address = ${q(path.join(dir, "containerd/containerd.sock"))}

[ttrpc]
  address = ${q(path.join(dir, "containerd/containerd.sock.ttrpc"))}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = ${q(path.join(dir, "containerd/opt"))}
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = ${q(tools.pauseImage)}
    # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj below the parent's.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_selinux = false
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = ${q(tools.runc)}
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = ${q(tools.cniBinDir)}
      conf_dir = ${q(cniConfDir)}
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""
`;
}

function cniConfig(dir: string, podCidr: string): string {
  return JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "klp-node",
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          ipMasq: true,
          hairpinMode: true,
          ipam: { type: "host-local", ranges: [[{ subnet: podCidr }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: path.join(dir, "cni/ipam") },
        },
      ],
    },
    null,
    2,
  );
}

// The kernel tunables the kubelet sets when they differ (container_manager_linux.go
// setupKernelTunables), as it wants them; bind-mounted in the node's mount namespace only.
const KUBELET_SYSCTLS: Record<string, string> = {
  "vm/overcommit_memory": "1",
  "vm/panic_on_oom": "0",
  "kernel/panic": "10",
  "kernel/panic_on_oops": "1",
  "kernel/keys/root_maxkeys": "1000000",
  "kernel/keys/root_maxbytes": "25000000",
};

function kubeletConfig(dir: string, sock: string, caPath: string): string {
  const q = JSON.stringify;
  return `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: ${q(`unix://${sock}`)}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
oomScoreAdj: 0
podLogsDir: ${q(path.join(dir, "pod-logs"))}
volumePluginDir: ${q(path.join(dir, "kubelet/volume-plugins"))}
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${q(caPath)}}
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
shutdownGracePeriod: 0s
# A shared machine: never evict or collect images because of what other work does to its disk.
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
`;
}

function kubeProxyConfig(kubeconfig: string, name: string, podCidr: string): string {
  return `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: ${name}
clusterCIDR: ${podCidr}
clientConnection:
  kubeconfig: ${JSON.stringify(kubeconfig)}
oomScoreAdj: 0
# nf_conntrack_max is global (the machine's): leave it, and the timeouts, as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  masqueradeAll: false
  syncPeriod: 30s
  minSyncPeriod: 0s
nodePortAddresses: [primary]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
`;
}

// ---------------------------------------------------------------------------------------------
// start

export async function startRealNode(opts: RealNodeOptions): Promise<RealNode> {
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const mark = (k: string, since: number) => (timings[k] = Math.round(performance.now() - since));
  const log = opts.log ?? (() => {});
  const { cp, tools, network, name } = opts;
  const keep = opts.keep ?? (opts.dir !== undefined || !!process.env.KLP_KEEP_REAL_NODE);
  const dir = opts.dir ? path.resolve(opts.dir) : await mkdtemp(path.join(os.tmpdir(), "klp-node-"));
  const logDir = path.join(dir, "logs");
  const sock = path.join(dir, "containerd/containerd.sock");
  const cniConfDir = path.join(dir, "cni/net.d");
  await cleanStaleNodes(log);
  await Promise.all(
    [logDir, cniConfDir, path.join(dir, "kubelet/root"), path.join(dir, "kubelet/pki"), path.join(dir, "pod-logs"), path.join(dir, "sysctl"), path.join(dir, "kube-proxy"), STALE_MARKER_DIR].map((d) =>
      mkdir(d, { recursive: true }),
    ),
  );

  const procs: Partial<Record<"holder" | "containerd" | "kube-proxy" | "kubelet", Proc>> = {};
  const ctrArgs = (args: string[]) => ["--address", sock, "-n", "k8s.io", ...args];
  const ctr = (args: string[]) => run(tools.ctr, ctrArgs(args), { timeoutMs: 300_000 });
  let stopped = false;
  const markerFile = path.join(STALE_MARKER_DIR, `${process.pid}-${path.basename(dir)}.json`);

  const killTasks = async () => {
    const r = await ctr(["tasks", "ls", "-q"]).catch(() => undefined);
    const ids = r?.code === 0 ? r.stdout.split("\n").filter(Boolean) : [];
    await Promise.all(ids.map((id) => ctr(["tasks", "kill", "-a", "-s", "SIGKILL", id])));
    for (const id of ids) {
      for (let i = 0; i < 20; i++) {
        const d = await ctr(["tasks", "delete", id]);
        if (d.code === 0 || /not found/i.test(d.stderr)) break;
        await sleep(250);
      }
    }
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await stopProc(procs.kubelet, 15_000);
    await stopProc(procs["kube-proxy"], 5_000);
    if (procs.containerd && procs.containerd.exitCode === undefined) await killTasks().catch(() => undefined);
    await stopProc(procs.containerd, 10_000);
    await killOrphans(dir, sock);
    await stopProc(procs.holder, 1_000);
    await rm(markerFile, { force: true });
    if (!keep) {
      // The mounts died with the holder's mount namespace; give the kernel a moment to drop them.
      for (let i = 0; i < 10; i++) {
        try {
          await rm(dir, { recursive: true, force: true });
          break;
        } catch {
          await sleep(500);
        }
      }
    }
  };

  try {
    // --- namespaces and network
    let t = performance.now();
    // The holder's argv[0] names the dir (exec -a), so a later run can tell it from any other sleep.
    const holderName = `${HOLDER_PREFIX}${dir}`;
    procs.holder = await startProc(
      "holder",
      "unshare",
      ["--mount", "--net", "--propagation", "slave", "--", "bash", "-c", `exec -a ${JSON.stringify(holderName)} sleep infinity`],
      logDir,
    );
    const holderPid = procs.holder.child.pid!;
    const ownNet = (await runOk("readlink", ["/proc/self/ns/net"])).trim();
    await waitUntil("the node's namespaces", 10_000, [procs.holder], async () => {
      const its = await run("readlink", [`/proc/${holderPid}/ns/net`]);
      return its.code === 0 && its.stdout.trim() !== ownNet && (await readFile(`/proc/${holderPid}/cmdline`, "utf8")).startsWith(holderName);
    });
    await writeFile(markerFile, JSON.stringify({ pid: process.pid, dir, holderPid, containerdAddress: sock } satisfies Marker));
    const inNode = (cmd: string, args: string[]) => run("nsenter", ["-t", String(holderPid), "-m", "-n", "--", cmd, ...args]);
    const inNodeOk = async (cmd: string, args: string[]) => {
      const r = await inNode(cmd, args);
      if (r.code !== 0) throw new Error(`in the node: ${cmd} ${args.join(" ")} failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
      return r.stdout;
    };
    await runOk("ip", ["link", "add", network.hostIf, "type", "veth", "peer", "name", "eth0", "netns", String(holderPid)]);
    await runOk("ip", ["addr", "add", `${network.hostIp}/30`, "dev", network.hostIf]);
    await runOk("ip", ["link", "set", network.hostIf, "up"]);
    const sysctlFiles = Object.entries(KUBELET_SYSCTLS)
      .map(([k, v]) => {
        const f = path.join(dir, "sysctl", k.replace(/\//g, "."));
        return `printf '%s\\n' ${v} > ${f} && mount --bind ${f} /proc/sys/${k}`;
      })
      .join(" && ");
    await inNodeOk("sh", [
      "-c",
      [
        "set -e",
        "ip link set lo up",
        `ip addr add ${network.nodeIp}/30 dev eth0`,
        "ip link set eth0 up",
        `ip route add default via ${network.hostIp}`,
        "sysctl -qw net.ipv4.ip_forward=1",
        sysctlFiles,
      ].join("\n"),
    ]);
    mark("network", t);

    // --- containerd
    t = performance.now();
    await writeFile(path.join(dir, "containerd.toml"), containerdConfig(dir, tools, cniConfDir));
    await writeFile(path.join(cniConfDir, "10-klp-bridge.conflist"), cniConfig(dir, network.podCidr));
    procs.containerd = await startProc("containerd", "nsenter", ["-t", String(holderPid), "-m", "-n", "--", tools.containerd, "--config", path.join(dir, "containerd.toml")], logDir);
    await waitUntil("containerd answering", 60_000, [procs.containerd], async () => existsSync(sock) && (await run(tools.ctr, ["--address", sock, "version"])).code === 0);
    mark("containerd", t);

    // --- images (nothing is pulled)
    t = performance.now();
    for (const tar of [tools.pauseTar, ...(opts.images ?? [])]) {
      const r = await ctr(["images", "import", tar]);
      if (r.code !== 0) throw new Error(`ctr images import ${tar} failed: ${r.stderr}${r.stdout}`);
    }
    mark("images", t);

    // --- identities and kubeconfigs
    t = performance.now();
    const port = new URL(cp.server).port;
    const server = `https://${network.hostIp}:${port}`;
    const caPem = await readFile(cp.caCertPath, "utf8");
    const [kubeletId, proxyId] = await Promise.all([cp.issueClientCert(`system:node:${name}`, ["system:nodes"]), cp.issueClientCert("system:kube-proxy", [])]);
    const kubeletKubeconfig = path.join(dir, "kubelet/kubeconfig");
    const proxyKubeconfig = path.join(dir, "kube-proxy/kubeconfig");
    await writeFile(kubeletKubeconfig, kubeconfigFor(server, caPem, await readFile(kubeletId.certPath, "utf8"), await readFile(kubeletId.keyPath, "utf8")), { mode: 0o600 });
    await writeFile(proxyKubeconfig, kubeconfigFor(server, caPem, await readFile(proxyId.certPath, "utf8"), await readFile(proxyId.keyPath, "utf8")), { mode: 0o600 });
    mark("identities", t);

    // --- kube-proxy
    t = performance.now();
    await writeFile(path.join(dir, "kube-proxy/config.yaml"), kubeProxyConfig(proxyKubeconfig, name, network.podCidr));
    procs["kube-proxy"] = await startProc(
      "kube-proxy",
      "nsenter",
      ["-t", String(holderPid), "-m", "-n", "--", path.join(tools.binDir, "kube-proxy"), `--config=${path.join(dir, "kube-proxy/config.yaml")}`, "--v=1"],
      logDir,
    );

    // --- kubelet
    await writeFile(path.join(dir, "kubelet/config.yaml"), kubeletConfig(dir, sock, cp.caCertPath));
    const labels = Object.entries(opts.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(",");
    procs.kubelet = await startProc(
      "kubelet",
      "nsenter",
      [
        "-t", String(holderPid), "-m", "-n", "--",
        path.join(tools.binDir, "kubelet"),
        `--config=${path.join(dir, "kubelet/config.yaml")}`,
        `--kubeconfig=${kubeletKubeconfig}`,
        `--root-dir=${path.join(dir, "kubelet/root")}`,
        `--cert-dir=${path.join(dir, "kubelet/pki")}`,
        `--hostname-override=${name}`,
        `--node-ip=${network.nodeIp}`,
        ...(labels ? [`--node-labels=${labels}`] : []),
        "--v=1",
      ],
      logDir,
    );
    await waitUntil(`Node ${name} Ready`, opts.readyTimeoutMs ?? 120_000, [procs.kubelet, procs["kube-proxy"], procs.containerd], async () => {
      const r = await cp.kubectl(["get", "node", name, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"], { timeoutMs: 10_000 });
      return r.code === 0 && r.stdout.trim() === "True";
    });
    mark("kubelet", t);
    // kube-proxy has programmed the `kubernetes` Service once its chain names it.
    await waitUntil("kube-proxy's rules for the kubernetes Service", 60_000, [procs["kube-proxy"]], async () => {
      const r = await inNode("iptables-save", ["-t", "nat"]);
      return r.code === 0 && r.stdout.includes("default/kubernetes:https") && r.stdout.includes("KUBE-SEP-");
    });
    mark("kube-proxy", t);
    mark("total", t0);
    log(`node ${name} Ready in ${timings.total} ms ${JSON.stringify(timings)}; dir ${dir}`);

    const containers = async (): Promise<NodeContainer[]> => {
      const tasks = await ctr(["tasks", "ls"]);
      const running = new Map<string, { pid: number; status: string }>();
      for (const line of tasks.stdout.split("\n").slice(1)) {
        const [id, pid, status] = line.trim().split(/\s+/);
        if (id && pid) running.set(id, { pid: Number(pid), status: status ?? "" });
      }
      const out: NodeContainer[] = [];
      for (const [id, task] of running) {
        const info = await ctr(["containers", "info", id]);
        if (info.code !== 0) continue;
        const labels = (JSON.parse(info.stdout) as { Labels?: Record<string, string> }).Labels ?? {};
        if (labels["io.cri-containerd.kind"] !== "container") continue;
        out.push({
          id,
          pod: labels["io.kubernetes.pod.name"] ?? "",
          namespace: labels["io.kubernetes.pod.namespace"] ?? "",
          container: labels["io.kubernetes.container.name"] ?? "",
          ...task,
        });
      }
      return out;
    };

    return {
      name,
      dir,
      network,
      timings,
      logDir,
      holderPid,
      ctr,
      exec: inNode,
      containers,
      async container(namespace, pod, container) {
        const c = (await containers()).find((x) => x.namespace === namespace && x.pod === pod && x.container === container && x.status === "RUNNING");
        if (!c) throw new Error(`no running container ${container} of pod ${namespace}/${pod} on ${name}`);
        return c;
      },
      async killContainer(id) {
        const r = await ctr(["tasks", "kill", "-s", "SIGKILL", id]);
        if (r.code !== 0) throw new Error(`ctr tasks kill ${id}: ${r.stderr}`);
      },
      async cgroupMemory(id) {
        const info = JSON.parse((await ctr(["containers", "info", id])).stdout) as { Spec?: { linux?: { cgroupsPath?: string } } };
        const cgroupPath = info.Spec?.linux?.cgroupsPath;
        if (!cgroupPath) throw new Error(`container ${id} has no cgroupsPath`);
        const base = path.join("/sys/fs/cgroup/memory", cgroupPath);
        const usageBytes = Number((await readFile(path.join(base, "memory.usage_in_bytes"), "utf8")).trim());
        const stat = Object.fromEntries(
          (await readFile(path.join(base, "memory.stat"), "utf8")).split("\n").filter(Boolean).map((l) => {
            const [k, v] = l.split(" ");
            return [k!, Number(v)];
          }),
        );
        const inactive = stat.total_inactive_file ?? 0;
        return { usageBytes, workingSetBytes: Math.max(0, usageBytes - inactive), rssBytes: stat.total_rss ?? 0, cgroupPath };
      },
      async describe(lines = 25) {
        const parts: string[] = [];
        for (const n of ["kubelet", "kube-proxy", "containerd"]) parts.push(`--- ${n} (${path.join(logDir, `${n}.log`)}):\n${await tail(path.join(logDir, `${n}.log`), lines)}`);
        return parts.join("\n");
      },
      stop,
    };
  } catch (e) {
    const err = e as Error;
    const where = `node dir ${dir}, logs in ${logDir}`;
    const tails: string[] = [];
    for (const n of ["kubelet", "kube-proxy", "containerd"]) if (procs[n as keyof typeof procs]) tails.push(`--- ${n}:\n${await tail(path.join(logDir, `${n}.log`), 20)}`);
    const savedKeep = keep;
    await stop().catch(() => undefined);
    throw new Error(`real node ${name} did not start (${where}${savedKeep ? "" : "; removed"}): ${err.message}\n${tails.join("\n")}`);
  }
}
