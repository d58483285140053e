// A real Kubernetes control plane for tests: etcd, kube-apiserver and (optionally)
// kube-controller-manager + kube-scheduler, started from the binaries that
// scripts/toolchain/ensure-binaries.sh provides. No kubelet: pods get scheduled to Node objects
// that tests create, and stay Pending.
//
// Two entry points:
//   startControlPlane(opts) -> ControlPlane         owns the processes (restartApiServer, stop)
//   attachControlPlane(dir) -> ControlPlaneClient   for another process (a vitest worker) that uses a
//                                                   control plane started elsewhere (global setup)
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { killOnExit } from "./kill-on-exit.ts";

export interface ControlPlaneOptions {
  /** Working directory (certs, etcd data, logs, kubeconfigs). Default: a fresh temp dir. */
  dir?: string;
  /** Start kube-controller-manager + kube-scheduler. Default true. */
  controllers?: boolean;
  /** Default 10.0.0.0/24; its first address (10.0.0.1) is the `kubernetes` Service ClusterIP. */
  serviceClusterIpRange?: string;
  extraApiServerArgs?: string[];
  extraControllerManagerArgs?: string[];
  extraSchedulerArgs?: string[];
  /**
   * kube-controller-manager --node-monitor-grace-period. Default "1h" so that Node objects that
   * tests create (no kubelet, no heartbeats) stay Ready for the whole run instead of turning
   * Unknown + tainted unreachable after the upstream default of 50s. Pass "50s" for upstream.
   */
  nodeMonitorGracePeriod?: string;
  /** Directory holding the binaries. Default: $KLP_K8S_BIN_DIR, else `ensure-binaries.sh`. */
  binDir?: string;
  /**
   * Keep `dir` on stop(). Default: true when the caller passed `dir`, else false unless
   * $KLP_KEEP_CONTROL_PLANE is set.
   */
  keep?: boolean;
  /** Progress lines (what is starting, how long it took). */
  log?: (line: string) => void;
}

export interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ClientIdentity {
  certPath: string;
  keyPath: string;
  kubeconfigPath: string;
}

/** What a process other than the owner can do with a running control plane. */
export interface ControlPlaneClient {
  dir: string;
  binDir: string;
  kubeconfigPath: string;
  /** https://127.0.0.1:<port> */
  server: string;
  caCertPath: string;
  caKeyPath: string;
  serviceAccountKeyPath: string;
  /** First address of the service range: the `kubernetes` Service ClusterIP, named in the serving cert. */
  kubernetesServiceIp: string;
  /** Runs the matching kubectl with --kubeconfig (admin unless opts.kubeconfig). Never throws on exit code. */
  kubectl(args: string[], opts?: { input?: string; kubeconfig?: string; timeoutMs?: number /* default 600_000 */ }): Promise<KubectlResult>;
  /** A client certificate signed by the cluster CA, and a kubeconfig (data embedded) for that identity. */
  issueClientCert(commonName: string, organizations: string[]): Promise<ClientIdentity>;
  /**
   * A kubeconfig holding only the server, the CA and this bearer token; without a token, no
   * credentials at all (for `kubectl --token=...`). Never add `--token` to the admin kubeconfig:
   * the API server tries the client certificate first, so the request stays admin.
   */
  tokenKubeconfig(token?: string): Promise<string>;
}

export interface ControlPlane extends ControlPlaneClient {
  /** Milliseconds per start phase (certs, etcd, kube-apiserver, controllers, total, restarts). */
  timings: Record<string, number>;
  /** Current pids per component. */
  pids(): Record<string, number>;
  /** VmRSS in KiB per running component (from /proc). */
  memory(): Promise<Record<string, number>>;
  /** Stop and start kube-apiserver on the same port; resolves when /readyz is ok again. */
  restartApiServer(): Promise<void>;
  /** SIGTERM, then SIGKILL after a grace period; waits for every process; idempotent. */
  stop(): Promise<void>;
}

const COMPONENT_STOP_GRACE_MS = 10_000;
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const STATE_FILE = "control-plane.json";
const REQUIRED_BINARIES = [
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubectl",
] as const;

// ---------------------------------------------------------------------------------------------
// small helpers

function run(
  file: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        maxBuffer: 64 * 1024 * 1024,
        timeout: opts.timeoutMs ?? 120_000,
        encoding: "utf8",
      },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === "string") {
          // spawn failure (ENOENT, EACCES...), not a non-zero exit
          reject(err);
          return;
        }
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

async function runOk(file: string, args: string[], what: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${file} ${args.join(" ")}\n${r.stderr}${r.stdout}`);
  return r;
}

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

function firstServiceIp(cidr: string): string {
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

async function tail(file: string, lines = 40): Promise<string> {
  try {
    const text = await readFile(file, "utf8");
    return text.split("\n").slice(-lines - 1).join("\n");
  } catch {
    return "(no log)";
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface TlsCreds {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

function httpGet(url: string, tls: TlsCreds | undefined, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? https : http;
    const req = mod.request(
      u,
      {
        method: "GET",
        timeout: timeoutMs,
        ...(u.protocol === "https:"
          ? { ca: tls?.ca, cert: tls?.cert, key: tls?.key, rejectUnauthorized: tls?.ca !== undefined, agent: false }
          : { agent: false }),
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// binaries

async function resolveBinDir(explicit: string | undefined): Promise<string> {
  const candidate = explicit ?? process.env.KLP_K8S_BIN_DIR;
  if (candidate) {
    const missing = REQUIRED_BINARIES.filter((b) => !existsSync(path.join(candidate, b)));
    if (missing.length) throw new Error(`binDir ${candidate} lacks ${missing.join(", ")}`);
    return candidate;
  }
  return ensureBinaries();
}

/** Runs scripts/toolchain/ensure-binaries.sh (builds what is missing; may take ~20 min cold). */
export async function ensureBinaries(log?: (line: string) => void): Promise<string> {
  const script = path.join(REPO_ROOT, "scripts/toolchain/ensure-binaries.sh");
  return new Promise((resolve, reject) => {
    const child = spawn("bash", [script], { stdio: ["ignore", "pipe", "pipe"], cwd: REPO_ROOT });
    let out = "";
    let errTail = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => {
      errTail = (errTail + c).slice(-8000);
      for (const line of c.split("\n")) if (line.trim()) log?.(line);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const dir = out.trim().split("\n").pop() ?? "";
      if (code === 0 && dir) resolve(dir);
      else reject(new Error(`ensure-binaries.sh failed (exit ${code}):\n${errTail}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// certificates (openssl CLI)

function subject(commonName: string, organizations: string[]): string {
  const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/\//g, "\\/").replace(/\+/g, "\\+").replace(/=/g, "\\=");
  return organizations.map((o) => `/O=${esc(o)}`).join("") + `/CN=${esc(commonName)}`;
}

function safeName(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "_").slice(0, 80);
}

async function signCert(
  pki: string,
  caCert: string,
  caKey: string,
  base: string,
  subj: string,
  ext: string,
): Promise<{ certPath: string; keyPath: string }> {
  const keyPath = `${base}.key`;
  const csrPath = `${base}.csr`;
  const extPath = `${base}.ext`;
  const certPath = `${base}.crt`;
  await runOk("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyPath], "key generation");
  await runOk("openssl", ["req", "-new", "-key", keyPath, "-subj", subj, "-out", csrPath], "CSR");
  await writeFile(extPath, ext);
  await runOk(
    "openssl",
    [
      "x509", "-req", "-in", csrPath, "-CA", caCert, "-CAkey", caKey,
      "-set_serial", `0x${randomBytes(16).toString("hex").replace(/^[89a-f]/, "1")}`,
      "-days", "3650", "-sha256", "-extfile", extPath, "-out", certPath,
    ],
    "certificate signing",
    { cwd: pki },
  );
  await rm(csrPath, { force: true });
  await rm(extPath, { force: true });
  return { certPath, keyPath };
}

const CLIENT_EXT = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n";

function kubeconfigYaml(
  server: string,
  caPem: string,
  user: { certPem: string; keyPem: string } | { token?: string | undefined },
  name = "klp-test",
): string {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const userLines =
    "certPem" in user
      ? [`    client-certificate-data: ${b64(user.certPem)}`, `    client-key-data: ${b64(user.keyPem)}`]
      : user.token
        ? [`    token: ${JSON.stringify(user.token)}`]
        : ["    {}"];
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${name}`,
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caPem)}`,
    "users:",
    "- name: user",
    "  user:",
    ...userLines,
    "contexts:",
    `- name: ${name}`,
    "  context:",
    `    cluster: ${name}`,
    "    user: user",
    `current-context: ${name}`,
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------
// client side (shared by owner and attach)

interface State {
  dir: string;
  binDir: string;
  server: string;
  apiServerPort: number;
  etcdClientPort: number;
  kubernetesServiceIp: string;
  kubeconfigPath: string;
  caCertPath: string;
  caKeyPath: string;
  serviceAccountKeyPath: string;
  serviceAccountPubPath: string;
  adminCertPath: string;
  adminKeyPath: string;
}

function makeClient(st: State): ControlPlaneClient {
  const pki = path.join(st.dir, "pki");
  const kubectlEnv: NodeJS.ProcessEnv = { ...process.env, KUBECACHEDIR: path.join(st.dir, "kubectl-cache") };
  delete kubectlEnv.KUBECONFIG;

  return {
    dir: st.dir,
    binDir: st.binDir,
    kubeconfigPath: st.kubeconfigPath,
    server: st.server,
    caCertPath: st.caCertPath,
    caKeyPath: st.caKeyPath,
    serviceAccountKeyPath: st.serviceAccountKeyPath,
    kubernetesServiceIp: st.kubernetesServiceIp,

    kubectl(args, opts = {}) {
      return run(path.join(st.binDir, "kubectl"), [`--kubeconfig=${opts.kubeconfig ?? st.kubeconfigPath}`, ...args], {
        input: opts.input,
        env: kubectlEnv,
        timeoutMs: opts.timeoutMs ?? 600_000,
      });
    },

    async issueClientCert(commonName, organizations) {
      const base = path.join(pki, `client-${safeName(commonName)}-${randomBytes(4).toString("hex")}`);
      const { certPath, keyPath } = await signCert(pki, st.caCertPath, st.caKeyPath, base, subject(commonName, organizations), CLIENT_EXT);
      const [caPem, certPem, keyPem] = await Promise.all([readFile(st.caCertPath, "utf8"), readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
      const kubeconfigPath = `${base}.kubeconfig`;
      await writeFile(kubeconfigPath, kubeconfigYaml(st.server, caPem, { certPem, keyPem }), { mode: 0o600 });
      return { certPath, keyPath, kubeconfigPath };
    },

    async tokenKubeconfig(token) {
      const caPem = await readFile(st.caCertPath, "utf8");
      const p = path.join(pki, `${token ? "token" : "anonymous"}-${randomBytes(6).toString("hex")}.kubeconfig`);
      await writeFile(p, kubeconfigYaml(st.server, caPem, { token }), { mode: 0o600 });
      return p;
    },
  };
}

/** A client handle on a control plane started by another process (e.g. the vitest global setup). */
export async function attachControlPlane(dir: string): Promise<ControlPlaneClient> {
  const st = JSON.parse(await readFile(path.join(dir, STATE_FILE), "utf8")) as State;
  return makeClient(st);
}

// ---------------------------------------------------------------------------------------------
// processes

interface Proc {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<number | null>;
  exitCode: number | null | undefined; // undefined while running
}

async function startProcess(name: string, bin: string, args: string[], logDir: string): Promise<Proc> {
  const logPath = path.join(logDir, `${name}.log`);
  const fh = await open(logPath, "a");
  await fh.write(`\n===== ${new Date().toISOString()} ${bin} ${args.join(" ")}\n`);
  const child = spawn(bin, args, { stdio: ["ignore", fh.fd, fh.fd], env: { ...process.env, KUBECONFIG: "" } });
  await fh.close(); // the child has its own copy of the descriptor
  killOnExit(child);
  const proc: Proc = { name, child, logPath, exitCode: undefined, exited: Promise.resolve(null) };
  proc.exited = new Promise((resolve) => {
    child.once("error", (err) => {
      proc.exitCode = -1;
      void writeFile(logPath, `spawn error: ${err.message}\n`, { flag: "a" }).finally(() => resolve(-1));
    });
    child.once("exit", (code, signal) => {
      proc.exitCode = code ?? (signal ? -1 : null);
      resolve(proc.exitCode);
    });
  });
  return proc;
}

async function stopProcess(p: Proc): Promise<void> {
  if (p.exitCode !== undefined) return;
  p.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), COMPONENT_STOP_GRACE_MS)));
  const outcome = await Promise.race([p.exited, timeout]);
  clearTimeout(timer);
  if (outcome === "timeout" && p.exitCode === undefined) {
    p.child.kill("SIGKILL");
    await p.exited;
  }
}

/** Polls `check` until it returns true; fails early (with the log tail) if the process exits. */
async function waitFor(p: Proc, what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = "";
  for (;;) {
    if (p.exitCode !== undefined) {
      throw new Error(`${p.name} exited (code ${p.exitCode}) before ${what}. Tail of ${p.logPath}:\n${await tail(p.logPath)}`);
    }
    try {
      if (await check()) return;
    } catch (e) {
      lastErr = (e as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`${p.name}: ${what} not reached within ${timeoutMs / 1000}s (last: ${lastErr}). Tail of ${p.logPath}:\n${await tail(p.logPath)}`);
    }
    await sleep(200);
  }
}

// ---------------------------------------------------------------------------------------------
// start

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const mark = (k: string, since: number) => (timings[k] = Math.round(performance.now() - since));
  const log = opts.log ?? (() => {});
  const controllers = opts.controllers ?? true;
  const serviceRange = opts.serviceClusterIpRange ?? "10.0.0.0/24";
  const kubernetesServiceIp = firstServiceIp(serviceRange);
  const keep = opts.keep ?? (opts.dir !== undefined || !!process.env.KLP_KEEP_CONTROL_PLANE);
  const dir = opts.dir ? path.resolve(opts.dir) : await mkdtemp(path.join(os.tmpdir(), "klp-cp-"));
  await mkdir(dir, { recursive: true });

  let t = performance.now();
  const binDir = await resolveBinDir(opts.binDir);
  mark("binaries", t);

  const pki = path.join(dir, "pki");
  const logDir = path.join(dir, "logs");
  await Promise.all([mkdir(pki, { recursive: true }), mkdir(logDir, { recursive: true })]);

  // --- certificates
  t = performance.now();
  const caCertPath = path.join(pki, "ca.crt");
  const caKeyPath = path.join(pki, "ca.key");
  const saKeyPath = path.join(pki, "sa.key");
  const saPubPath = path.join(pki, "sa.pub");
  const frontProxyCaCert = path.join(pki, "front-proxy-ca.crt");
  const frontProxyCaKey = path.join(pki, "front-proxy-ca.key");
  const makeCa = (certPath: string, keyPath: string, cn: string) =>
    runOk(
      "openssl",
      [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", keyPath, "-out", certPath, "-days", "3650", "-sha256", "-subj", `/CN=${cn}`,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
      ],
      "CA",
    );
  await Promise.all([
    makeCa(caCertPath, caKeyPath, "klp-test-ca"),
    makeCa(frontProxyCaCert, frontProxyCaKey, "klp-test-front-proxy-ca"),
    runOk("openssl", ["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", saKeyPath], "service-account key").then(() =>
      runOk("openssl", ["pkey", "-in", saKeyPath, "-pubout", "-out", saPubPath], "service-account public key"),
    ),
  ]);
  const sans = [
    "IP:127.0.0.1",
    `IP:${kubernetesServiceIp}`,
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
  ].join(",");
  const sign = (name: string, subj: string, ext: string) => signCert(pki, caCertPath, caKeyPath, path.join(pki, name), subj, ext);
  const [serving, admin, kcm, sched, kubeletClient, frontProxyClient] = await Promise.all([
    sign("apiserver", "/CN=kube-apiserver", `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${sans}\n`),
    sign("admin", subject("klp-admin", ["system:masters"]), CLIENT_EXT),
    sign("kube-controller-manager", subject("system:kube-controller-manager", []), CLIENT_EXT),
    sign("kube-scheduler", subject("system:kube-scheduler", []), CLIENT_EXT),
    sign("apiserver-kubelet-client", subject("kube-apiserver-kubelet-client", ["system:masters"]), CLIENT_EXT),
    // Aggregation layer (and delegated authn of the controllers: without it they log
    // "missing content for CA bundle ... requestheader-client-ca-file" over and over).
    signCert(pki, frontProxyCaCert, frontProxyCaKey, path.join(pki, "front-proxy-client"), subject("front-proxy-client", []), CLIENT_EXT),
  ]);
  mark("certs", t);

  const caPem = await readFile(caCertPath, "utf8");
  const adminTls: TlsCreds = { ca: Buffer.from(caPem), cert: await readFile(admin.certPath), key: await readFile(admin.keyPath) };
  const procs = new Map<string, Proc>();
  const stopAll = async () => {
    for (const name of ["kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]) {
      const p = procs.get(name);
      if (p) await stopProcess(p);
    }
  };

  // Everything that depends on the ports. Ports come from binding port 0 and closing it, so another
  // process can take one before our component binds it: then the whole launch is retried.
  const launch = async () => {
    const [etcdClientPort, etcdPeerPort, apiServerPort, kcmPort, schedPort] = (await freePorts(5)) as [number, number, number, number, number];
    const server = `https://127.0.0.1:${apiServerPort}`;
    const writeKubeconfig = async (name: string, c: { certPath: string; keyPath: string }) => {
      const p = path.join(dir, `${name}.kubeconfig`);
      const [certPem, keyPem] = await Promise.all([readFile(c.certPath, "utf8"), readFile(c.keyPath, "utf8")]);
      await writeFile(p, kubeconfigYaml(server, caPem, { certPem, keyPem }), { mode: 0o600 });
      return p;
    };
    const [kubeconfigPath, kcmKubeconfig, schedKubeconfig] = await Promise.all([
      writeKubeconfig("admin", admin),
      writeKubeconfig("kube-controller-manager", kcm),
      writeKubeconfig("kube-scheduler", sched),
    ]);
    const state: State = {
      dir, binDir, server, apiServerPort, etcdClientPort, kubernetesServiceIp, kubeconfigPath,
      caCertPath, caKeyPath, serviceAccountKeyPath: saKeyPath, serviceAccountPubPath: saPubPath,
      adminCertPath: admin.certPath, adminKeyPath: admin.keyPath,
    };
    await writeFile(path.join(dir, STATE_FILE), JSON.stringify(state, null, 2));

    const apiServerArgs = [
      `--etcd-servers=http://127.0.0.1:${etcdClientPort}`,
      `--secure-port=${apiServerPort}`,
      "--bind-address=127.0.0.1",
      `--tls-cert-file=${serving.certPath}`,
      `--tls-private-key-file=${serving.keyPath}`,
      `--client-ca-file=${caCertPath}`,
      `--kubelet-client-certificate=${kubeletClient.certPath}`,
      `--kubelet-client-key=${kubeletClient.keyPath}`,
      "--kubelet-preferred-address-types=InternalIP",
      `--requestheader-client-ca-file=${frontProxyCaCert}`,
      "--requestheader-allowed-names=front-proxy-client",
      "--requestheader-username-headers=X-Remote-User",
      "--requestheader-group-headers=X-Remote-Group",
      "--requestheader-extra-headers-prefix=X-Remote-Extra-",
      `--proxy-client-cert-file=${frontProxyClient.certPath}`,
      `--proxy-client-key-file=${frontProxyClient.keyPath}`,
      "--authorization-mode=Node,RBAC",
      "--enable-admission-plugins=NodeRestriction",
      "--allow-privileged=true",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${saPubPath}`,
      `--service-account-signing-key-file=${saKeyPath}`,
      `--service-cluster-ip-range=${serviceRange}`,
      "--profiling=false",
      ...(opts.extraApiServerArgs ?? []),
    ];
    const startApiServer = async () => {
      const p = await startProcess("kube-apiserver", path.join(binDir, "kube-apiserver"), apiServerArgs, logDir);
      procs.set("kube-apiserver", p);
      await waitFor(p, "/readyz ok", 120_000, async () => (await httpGet(`${server}/readyz`, adminTls)).status === 200);
    };

    // --- etcd
    let t = performance.now();
    log(`starting etcd on 127.0.0.1:${etcdClientPort}`);
    await rm(path.join(dir, "etcd"), { recursive: true, force: true });
    const etcd = await startProcess(
      "etcd",
      path.join(binDir, "etcd"),
      [
        "--name=default",
        `--data-dir=${path.join(dir, "etcd")}`,
        `--listen-client-urls=http://127.0.0.1:${etcdClientPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdClientPort}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
        "--unsafe-no-fsync",
        "--log-level=warn",
      ],
      logDir,
    );
    procs.set("etcd", etcd);
    await waitFor(etcd, "/health ok", 30_000, async () => {
      const r = await httpGet(`http://127.0.0.1:${etcdClientPort}/health`, undefined);
      return r.status === 200 && r.body.includes('"true"');
    });
    mark("etcd", t);

    // --- kube-apiserver
    t = performance.now();
    log(`starting kube-apiserver on ${server}`);
    await startApiServer();
    mark("kube-apiserver", t);

    // --- controllers
    if (controllers) {
      t = performance.now();
      log("starting kube-controller-manager and kube-scheduler");
      const kcmProc = await startProcess(
        "kube-controller-manager",
        path.join(binDir, "kube-controller-manager"),
        [
          `--kubeconfig=${kcmKubeconfig}`,
          `--authentication-kubeconfig=${kcmKubeconfig}`,
          `--authorization-kubeconfig=${kcmKubeconfig}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${kcmPort}`,
          "--leader-elect=false",
          "--controllers=*,-nodeipam",
          `--service-account-private-key-file=${saKeyPath}`,
          `--root-ca-file=${caCertPath}`,
          "--use-service-account-credentials=true",
          `--cluster-signing-cert-file=${caCertPath}`,
          `--cluster-signing-key-file=${caKeyPath}`,
          `--service-cluster-ip-range=${serviceRange}`,
          `--node-monitor-grace-period=${opts.nodeMonitorGracePeriod ?? "1h"}`,
          "--profiling=false",
          ...(opts.extraControllerManagerArgs ?? []),
        ],
        logDir,
      );
      procs.set("kube-controller-manager", kcmProc);
      const schedProc = await startProcess(
        "kube-scheduler",
        path.join(binDir, "kube-scheduler"),
        [
          `--kubeconfig=${schedKubeconfig}`,
          `--authentication-kubeconfig=${schedKubeconfig}`,
          `--authorization-kubeconfig=${schedKubeconfig}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${schedPort}`,
          "--leader-elect=false",
          "--profiling=false",
          ...(opts.extraSchedulerArgs ?? []),
        ],
        logDir,
      );
      procs.set("kube-scheduler", schedProc);
      const healthz = (port: number) => async () => (await httpGet(`https://127.0.0.1:${port}/healthz`, {})).status === 200;
      const tc = performance.now();
      await Promise.all([
        waitFor(kcmProc, "/healthz ok", 60_000, healthz(kcmPort)).then(() => mark("kube-controller-manager", tc)),
        waitFor(schedProc, "/healthz ok", 60_000, healthz(schedPort)).then(() => mark("kube-scheduler", tc)),
      ]);
      // The service-account controllers work once `default` has its ServiceAccount and CA bundle.
      await waitFor(kcmProc, "ServiceAccount default/default and ConfigMap kube-root-ca.crt", 60_000, async () => {
        const [sa, cm] = await Promise.all([
          httpGet(`${server}/api/v1/namespaces/default/serviceaccounts/default`, adminTls),
          httpGet(`${server}/api/v1/namespaces/default/configmaps/kube-root-ca.crt`, adminTls),
        ]);
        return sa.status === 200 && cm.status === 200;
      });
      mark("controllers", t);
    }
    return { state, startApiServer };
  };

  let launched: Awaited<ReturnType<typeof launch>> | undefined;
  for (let attempt = 1; !launched; attempt++) {
    try {
      launched = await launch();
    } catch (e) {
      await stopAll();
      procs.clear();
      const msg = (e as Error).message;
      if (attempt < 3 && /address already in use/i.test(msg)) {
        log(`port conflict on attempt ${attempt}, retrying with new ports`);
        continue;
      }
      throw new Error(`control plane start failed (dir ${dir} kept, logs in ${logDir}): ${msg}`);
    }
  }
  const { state, startApiServer } = launched;
  mark("total", t0);
  log(`control plane ready in ${timings.total} ms (${JSON.stringify(timings)})`);

  const client = makeClient(state);
  let stopped = false;
  let restarts = 0;
  const pids = () => {
    const out: Record<string, number> = {};
    for (const [name, p] of procs) if (p.exitCode === undefined && p.child.pid) out[name] = p.child.pid;
    return out;
  };
  return {
    ...client,
    timings,
    pids,
    async memory() {
      const out: Record<string, number> = {};
      for (const [name, pid] of Object.entries(pids())) {
        try {
          const status = await readFile(`/proc/${pid}/status`, "utf8");
          const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
          if (m) out[name] = Number(m[1]);
        } catch {
          /* exited */
        }
      }
      return out;
    },
    async restartApiServer() {
      if (stopped) throw new Error("control plane is stopped");
      const t1 = performance.now();
      const p = procs.get("kube-apiserver");
      if (p) await stopProcess(p);
      await startApiServer();
      timings[`restartApiServer#${++restarts}`] = Math.round(performance.now() - t1);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopAll();
      if (!keep) await rm(dir, { recursive: true, force: true });
    },
  };
}
