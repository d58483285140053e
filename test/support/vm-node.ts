// A real Kubernetes node inside a QEMU guest: Debian's 6.1 kernel (TCG, no /dev/kvm needed), Debian's
// containerd and runc, the kubelet v1.37.2, the project's images imported at boot, nothing pulled.
// The guest joins a control plane that runs on this machine (scripts/dev/control-plane/) through
// QEMU's user network with restrict=on: the only way out of the guest is 10.0.0.1:443, which QEMU
// forwards (guestfwd, one `socat` per connection) to the API server. The API server's service range
// must be 10.0.0.0/24 (the control plane's default), so 10.0.0.1:443 is also the `kubernetes`
// Service the pods in the guest use.
//
//   prepareVmNode()            builds or reuses everything (scripts/vm-node/build-guest.sh, images,
//                              test modules); throws VmNodeUnavailable where QEMU cannot run
//   VmNode.start(opts)         per-run disks, the kubelet's identity (system:node:<name>), boot
//   node.state()               the guest's kernel and /var/lib/kpatch, read over the control channel
//   node.reboot()/poweroff()   what the machine's owner does; nothing else changes the guest, except
//   node.fixture(op, name)     loading or unloading one of the node's own modules (a driver the
//                              owner runs; VmNodeOptions.fixtures), as the owner would
//   node.expectPanic(re)       the one kernel panic a scenario provokes; any other panic fails
//                              every wait of the harness (the guest runs with panic=1: it reboots)
//
// Guest side: scripts/vm-node/guest-init.sh. Serial ports: ttyS0 = console (markers parsed here),
// ttyS1 = control channel (unix socket), ttyS2 = the pods' logs (a file).
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { appendFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ControlPlaneClient } from "../../scripts/dev/control-plane/index.ts";
import { killOnExit } from "../../scripts/dev/kill-on-exit.ts";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const CACHE = process.env.KLP_CACHE ?? path.join(os.homedir(), ".cache/kpatch-operator");
export const VM_CACHE = path.join(CACHE, "vm-node");

/** This machine cannot run the VM node (no QEMU, no kernel packages, no Docker engine): skip, saying why. */
export class VmNodeUnavailable extends Error {}

export interface PreparedVmNode {
  krel: string;
  vmlinuz: string;
  /** The guest's release-independent part (sys.img, var-template.img). */
  guestDir: string;
  /** The initramfs of this release (its boot modules, guest-init.sh as /init). */
  initramfs: string;
  /** The node's /var/lib with the images already in containerd's store; undefined: import at boot. */
  varTemplate: string | undefined;
  modulesDir: string;
  binDir: string;
  /** Debian's docker-registry, unpacked on this machine (test/support/registry.ts). */
  registryBin: string;
  timings: Record<string, number>;
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runScript(cmd: string, args: string[], env: Record<string, string> = {}, echo?: (line: string) => void): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      const text = d.toString();
      stderr += text;
      for (const line of text.split("\n")) if (/^\[(vm-node|ensure-tools|build-modules|images|ensure-binaries)/.test(line)) echo?.(line);
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

function vars(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m?.[1]) out[m[1]] = m[2] ?? "";
  }
  return out;
}

const tail = (text: string, n = 20) => text.trim().split("\n").slice(-n).join("\n");

/**
 * Builds (or reuses, keyed by their inputs) the images, the guest and the test modules, for the
 * pinned kernel release or `release` (scripts/kernel/ensure-tools.sh's KERNEL_RELEASE). Call it once
 * per release, one call at a time: the calls share the guest's cache.
 * KLP_VM_NODE_NO_IMAGE_BUILD=1 uses kpatch-agent:dev and kpatch-operator:dev as they are (the
 * `images` layer of scripts/test.sh has just built them); otherwise scripts/images/build.sh runs
 * first (seconds when nothing changed).
 */
export async function prepareVmNode(log: (line: string) => void = () => {}, release?: string): Promise<PreparedVmNode> {
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new VmNodeUnavailable(`needs linux/x64 for Debian's amd64 kernel, this is ${process.platform}/${process.arch}`);
  }
  const timings: Record<string, number> = {};
  const releaseEnv: Record<string, string> = release ? { KERNEL_RELEASE: release } : {};
  let t = performance.now();
  const tools = await runScript("bash", [path.join(REPO, "scripts/vm-node/ensure-tools.sh")], releaseEnv, log);
  timings.ensureToolsMs = Math.round(performance.now() - t);
  if (tools.code !== 0) {
    throw new VmNodeUnavailable(`scripts/vm-node/ensure-tools.sh failed (exit ${tools.code}): QEMU, Debian's kernel or the guest's packages could not be obtained:\n${tail(tools.stderr)}`);
  }

  const docker = await runScript("bash", [path.join(REPO, "scripts/images/ensure-docker.sh")]);
  if (docker.code === 2) throw new VmNodeUnavailable(`no Docker engine can run here, so the images cannot be built or saved:\n${tail(docker.stderr)}`);
  if (docker.code !== 0) throw new Error(`scripts/images/ensure-docker.sh failed (exit ${docker.code}):\n${tail(docker.stderr)}`);

  t = performance.now();
  if (!process.env.KLP_VM_NODE_NO_IMAGE_BUILD) {
    const images = await runScript("bash", [path.join(REPO, "scripts/images/build.sh")], {}, log);
    if (images.code !== 0) throw new Error(`scripts/images/build.sh failed (exit ${images.code}):\n${tail(images.stderr, 30)}`);
  }
  timings.imagesMs = Math.round(performance.now() - t);

  t = performance.now();
  const mods = await runScript("bash", [path.join(REPO, "scripts/kernel/build-modules.sh")], releaseEnv, log);
  timings.buildModulesMs = Math.round(performance.now() - t);
  if (mods.code !== 0) throw new Error(`scripts/kernel/build-modules.sh failed (exit ${mods.code}):\n${tail(mods.stderr, 30)}`);

  t = performance.now();
  const guest = await runScript("bash", [path.join(REPO, "scripts/vm-node/build-guest.sh")], releaseEnv, log);
  timings.buildGuestMs = Math.round(performance.now() - t);
  if (guest.code !== 0) throw new Error(`scripts/vm-node/build-guest.sh failed (exit ${guest.code}):\n${tail(guest.stderr, 30)}`);
  const v = vars(guest.stdout);
  const need = (k: string, from: Record<string, string> = v): string => {
    const value = from[k];
    if (!value) throw new Error(`no ${k} printed by the build scripts`);
    return value;
  };
  const guestDir = need("GUEST");
  const template = path.join(guestDir, "var-template.img");
  return {
    krel: need("KREL"), vmlinuz: need("VMLINUZ"), guestDir, initramfs: need("INITRAMFS"), binDir: need("BIN_DIR"), registryBin: need("REGISTRY_BIN"),
    modulesDir: need("MODULES", vars(mods.stdout)), timings,
    varTemplate: existsSync(template) && !process.env.KLP_VM_NODE_IMPORT_AT_BOOT ? template : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// the guest's view, as the control channel reports it

export interface GuestState {
  uptime: number;
  bootId: string;
  release: string;
  cmdline: string;
  tainted: number;
  livepatches: Array<{ name: string; enabled: boolean; transition: boolean }>;
  /** Loaded modules tainted K (livepatches, leftovers included). */
  modules: Array<{ name: string; refcnt: number; taint: string }>;
  /** Module files under /var/lib/kpatch (release directories, .loading) with their digest; the agent's record is `record`. */
  staged: Array<{ path: string; sha256: string }>;
  stagedDirs: string[];
  /** Kernel log lines mentioning livepatch (this boot). */
  dmesg: string[];
  /** The agent's record (/var/lib/kpatch/.kpatch-agent.json) as text; undefined when there is none. */
  record: string | undefined;
}

export function parseState(lines: string[]): GuestState {
  const s: GuestState = { uptime: 0, bootId: "", release: "", cmdline: "", tainted: -1, livepatches: [], modules: [], staged: [], stagedDirs: [], dmesg: [], record: undefined };
  for (const line of lines) {
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq);
    const rest = line.slice(eq + 1);
    const kv = (text: string) => Object.fromEntries(text.split(" ").map((w) => w.split("=") as [string, string]));
    switch (key) {
      case "uptime": s.uptime = Number(rest); break;
      case "boot_id": s.bootId = rest; break;
      case "release": s.release = rest; break;
      case "cmdline": s.cmdline = rest; break;
      case "tainted": s.tainted = Number(rest); break;
      case "livepatch": {
        const f = kv(`name=${rest}`);
        s.livepatches.push({ name: f.name ?? "", enabled: f.enabled === "1", transition: f.transition === "1" });
        break;
      }
      case "module": {
        const f = kv(`name=${rest}`);
        s.modules.push({ name: f.name ?? "", refcnt: Number(f.refcnt), taint: f.taint ?? "" });
        break;
      }
      case "staged": {
        const f = kv(`path=${rest}`);
        s.staged.push({ path: f.path ?? "", sha256: f.sha256 ?? "" });
        break;
      }
      case "stageddir": s.stagedDirs.push(rest); break;
      case "dmesg": s.dmesg.push(rest); break;
      case "record": s.record = rest; break;
    }
  }
  return s;
}

/** How many times the kernel enabled a patch in this boot ("livepatch: enabling patch 'X'"). */
export function enableCount(s: GuestState, name: string): number {
  return s.dmesg.filter((l) => l.includes(`enabling patch '${name}'`)).length;
}

// ---------------------------------------------------------------------------------------------
// the VM

export interface BootMark {
  boot: number;
  name: string;
  uptime: number;
  /** host clock (ms since epoch) when the line arrived */
  at: number;
  fields: Record<string, string>;
}

export interface LivepatchChange {
  boot: number;
  uptime: number;
  at: number;
  /** name -> "enabled:transition" */
  state: Record<string, string>;
}

/** A change of what /proc/cmdline prints in the guest (the test livepatches replace it). */
export interface CmdlineChange {
  boot: number;
  uptime: number;
  at: number;
  text: string;
}

/** A "Kernel panic" line on the console; `expected` when node.expectPanic() announced it. */
export interface PanicMark {
  boot: number;
  at: number;
  line: string;
  expected: boolean;
}

/** A soft-lockup report on the console: a task held a CPU in the kernel for `seconds` without scheduling. */
export interface SoftLockup {
  boot: number;
  at: number;
  cpu: number;
  seconds: number;
  task: string;
}

/** A reset the harness gave the guest, as a node's hardware watchdog or its owner would. */
export interface PowerCycle {
  boot: number;
  at: number;
  why: string;
}

export interface VmNodeOptions {
  prepared: PreparedVmNode;
  cp: ControlPlaneClient;
  /** Node name; default vm-node-<4 hex> (a fresh name per run). */
  nodeName?: string;
  memoryMb?: number;
  smp?: number;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Every console line (KLP_VM_NODE_CONSOLE=1 in the suite). */
  onConsole?: (line: string) => void;
  /** Modules (.ko paths) put on the node's configuration disk, for node.fixture(). */
  fixtures?: string[];
  /**
   * More ways out of the guest: QEMU forwards connections to `guest` (address:port in 10.0.0.0/16,
   * outside the service range 10.0.0.0/24) to 127.0.0.1:`hostPort` here, e.g. an HTTPS server of the test's.
   */
  forwards?: Array<{ guest: string; hostPort: number }>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until no other test process's QEMU guest runs on this machine (one suite's guests at a
 * time: 2 shared cores). The guests this process started itself (a fleet of VM nodes) do not count.
 */
async function waitForOtherGuests(log: (line: string) => void, maxMs: number): Promise<void> {
  const others = () => {
    const found: string[] = [];
    for (const pid of readdirSync("/proc")) {
      if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        // pid (comm) state ppid ...: comm may hold spaces, so read past its closing parenthesis.
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        if (ppid === process.pid) continue;
        if (readFileSync(`/proc/${pid}/comm`, "utf8").trim().startsWith("qemu-system")) found.push(pid);
      } catch {
        /* gone */
      }
    }
    return found;
  };
  const end = Date.now() + maxMs;
  let said = false;
  for (;;) {
    const pids = others();
    if (pids.length === 0) return;
    if (Date.now() > end) {
      log(`another QEMU guest (pid ${pids.join(", ")}) still runs after ${Math.round(maxMs / 1000)} s; starting anyway`);
      return;
    }
    if (!said) log(`another QEMU guest runs (pid ${pids.join(", ")}); waiting for it (one guest at a time on this machine)`);
    said = true;
    await sleep(5000);
  }
}

export class VmNode {
  readonly nodeName: string;
  readonly dir: string;
  readonly consolePath: string;
  readonly podLogPath: string;
  readonly marks: BootMark[] = [];
  readonly lpChanges: LivepatchChange[] = [];
  readonly cmdlineChanges: CmdlineChange[] = [];
  readonly panics: PanicMark[] = [];
  readonly softLockups: SoftLockup[] = [];
  readonly powerCycles: PowerCycle[] = [];
  private panicExpected: RegExp | undefined;
  /** Boot ids, index = boot number (0 = first boot). */
  readonly bootIds: string[] = [];
  /** Host time when QEMU was spawned. */
  startedAt = 0;
  private qemu: ChildProcess | undefined;
  private exited: Promise<number | null> = Promise.resolve(null);
  private exitCode: number | null | undefined;
  private ctl: net.Socket | undefined;
  private ctlBuf = "";
  private nextId = 1;
  private pending = new Map<number, { lines: string[]; acked: () => void; done: (lines: string[]) => void }>();
  private waiters: Array<() => void> = [];
  private consoleTail: string[] = [];
  private readonly log: (line: string) => void;

  private constructor(private readonly opts: VmNodeOptions, dir: string) {
    this.nodeName = opts.nodeName ?? `vm-node-${randomBytes(2).toString("hex")}`;
    this.dir = dir;
    this.consolePath = path.join(dir, "console.log");
    this.podLogPath = path.join(dir, "pods.log");
    this.log = opts.log ?? (() => {});
  }

  get boot(): number {
    return this.bootIds.length - 1;
  }

  /** Makes the disks and the kubelet's identity, then boots. Resolves once QEMU runs. */
  static async start(opts: VmNodeOptions): Promise<VmNode> {
    const dir = await mkdtemp(path.join(os.tmpdir(), "klp-vm-node-"));
    const node = new VmNode(opts, dir);
    await node.makeDisks();
    await waitForOtherGuests(node.log, Number(process.env.KLP_VM_NODE_QEMU_WAIT_S ?? 900) * 1000);
    node.spawnQemu();
    return node;
  }

  private async makeDisks(): Promise<void> {
    const { cp } = this.opts;
    // The kubelet's identity: system:node:<name> in system:nodes (the Node authorizer and
    // NodeRestriction admission then confine it to this node), server = the forwarded address.
    const id = await cp.issueClientCert(`system:node:${this.nodeName}`, ["system:nodes"]);
    const [ca, cert, key] = await Promise.all([readFile(cp.caCertPath, "utf8"), readFile(id.certPath, "utf8"), readFile(id.keyPath, "utf8")]);
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const config = path.join(this.dir, "config");
    await mkdir(config, { recursive: true });
    await writeFile(path.join(config, "node-name"), `${this.nodeName}\n`);
    if (this.opts.fixtures?.length) {
      await mkdir(path.join(config, "fixtures"), { recursive: true });
      for (const f of this.opts.fixtures) await writeFile(path.join(config, "fixtures", path.basename(f)), await readFile(f));
    }
    await writeFile(path.join(config, "ca.crt"), ca);
    await writeFile(
      path.join(config, "kubelet.kubeconfig"),
      [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: klp",
        "  cluster:",
        `    server: https://${cp.kubernetesServiceIp}:443`,
        `    certificate-authority-data: ${b64(ca)}`,
        "users:",
        `- name: system:node:${this.nodeName}`,
        "  user:",
        `    client-certificate-data: ${b64(cert)}`,
        `    client-key-data: ${b64(key)}`,
        "contexts:",
        "- name: klp",
        "  context: {cluster: klp, user: 'system:node:" + this.nodeName + "'}",
        "current-context: klp",
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    const ok = async (cmd: string, args: string[]) => {
      const r = await runScript(cmd, args);
      if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.code}): ${r.stderr}`);
    };
    const mkfs = async (file: string, size: string, label: string, extra: string[] = []) => {
      await ok("truncate", ["-s", size, file]);
      // Inode tables and journal written here, not lazily by the guest's kernel under TCG.
      await ok("mkfs.ext4", ["-q", "-F", "-L", label, "-E", "lazy_itable_init=0,lazy_journal_init=0", ...extra, file]);
    };
    // /var/lib/kpatch: its own raw ext4 image that survives the guest's reboots.
    await mkfs(path.join(this.dir, "kpatch.img"), "64M", "klpkpatch");
    // /var/lib: containerd's images and snapshots, the kubelet's state. Copy-on-write over the
    // template whose containerd store already holds the images; else empty (the guest imports).
    const { varTemplate } = this.opts.prepared;
    if (varTemplate) await ok("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "raw", "-b", varTemplate, this.varDisk]);
    else await mkfs(this.varDisk, "4G", "klpvar", ["-i", "65536"]);
    // This node's configuration, read-only in the guest.
    await mkfs(path.join(this.dir, "config.img"), "8M", "klpconfig", ["-d", config]);
  }

  private get varDisk(): string {
    return path.join(this.dir, this.opts.prepared.varTemplate ? "var.qcow2" : "var.img");
  }

  private qemuArgs(): string[] {
    const { prepared, cp } = this.opts;
    const port = new URL(cp.server).port;
    if (cp.kubernetesServiceIp !== "10.0.0.1") {
      throw new Error(`the VM node needs the API server's service range to be 10.0.0.0/24 (kubernetes Service 10.0.0.1), not ${cp.kubernetesServiceIp}`);
    }
    return [
      "-accel", process.env.KLP_QEMU_ACCEL ?? "tcg", "-cpu", process.env.KLP_VM_NODE_CPU ?? "max",
      "-m", String(this.opts.memoryMb ?? 3072), "-smp", String(this.opts.smp ?? 2),
      // The monitor, for powerCycle() only.
      "-display", "none", "-monitor", `unix:${path.join(this.dir, "monitor.sock")},server=on,wait=off`, "-nodefaults",
      "-serial", "stdio",
      "-serial", `unix:${path.join(this.dir, "ctl.sock")},server=on,wait=off`,
      "-serial", `file:${this.podLogPath}`,
      "-kernel", prepared.vmlinuz, "-initrd", prepared.initramfs,
      "-drive", `file=${path.join(prepared.guestDir, "sys.img")},format=raw,if=virtio,readonly=on`,
      "-drive", `file=${path.join(this.dir, "kpatch.img")},format=raw,if=virtio`,
      // cache=unsafe: containerd's many fsyncs stop at QEMU instead of reaching this machine's
      // disk (shared with other tests). The data still lands in the image file, which outlives
      // the guest's reboots (the QEMU process stays).
      "-drive", `file=${this.varDisk},format=${this.opts.prepared.varTemplate ? "qcow2" : "raw"},if=virtio,cache=unsafe`,
      "-drive", `file=${path.join(this.dir, "config.img")},format=raw,if=virtio,readonly=on`,
      "-netdev", `user,id=n0,restrict=on,net=10.0.0.0/16,host=10.0.0.2,guestfwd=tcp:10.0.0.1:443-cmd:socat - TCP:127.0.0.1:${port}${(this.opts.forwards ?? []).map((f) => `,guestfwd=tcp:${f.guest}-cmd:socat - TCP:127.0.0.1:${f.hostPort}`).join("")}`,
      "-device", "virtio-net-pci,netdev=n0",
      // panic=1: a panic reboots the guest (a node that crashes comes back, as a real one with
      // kernel.panic set does; QEMU runs without -no-reboot, so the reset boots it again; once the
      // kubelet runs, its own kernel.panic=10 applies). Only the
      // panic a scenario announces (expectPanic) is expected: any other fails every wait here.
      "-append", `console=ttyS0 panic=1 quiet loglevel=1${process.env.KLP_VM_NODE_DEBUG === "1" ? " klp.debug=1" : ""}`,
    ];
  }

  private spawnQemu(): void {
    this.startedAt = Date.now();
    const child = spawn("qemu-system-x86_64", this.qemuArgs(), { stdio: ["ignore", "pipe", "pipe"] });
    this.qemu = child;
    this.exitCode = undefined;
    let pending = "";
    const onData = (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      void appendFile(this.consolePath, text);
      pending += text;
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        this.onConsoleLine(pending.slice(0, nl).replace(/\r$/, ""));
        pending = pending.slice(nl + 1);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    this.exited = new Promise((resolve) => {
      child.on("error", (e) => {
        this.exitCode = -1;
        this.onConsoleLine(`@@HOST qemu spawn error: ${e.message}`);
        resolve(-1);
      });
      child.on("exit", (code) => {
        this.exitCode = code;
        this.ctl?.destroy();
        this.ctl = undefined;
        this.wake();
        resolve(code);
      });
    });
    killOnExit(child);
  }

  private onConsoleLine(line: string): void {
    this.opts.onConsole?.(line);
    this.consoleTail.push(line);
    if (this.consoleTail.length > 200) this.consoleTail.shift();
    const at = line.indexOf("@@");
    if (at >= 0) {
      const m = line.slice(at);
      const boot = /^@@BOOT (\S+) uptime=([\d.]+)(.*)$/.exec(m);
      if (boot) {
        const fields = Object.fromEntries((boot[3] ?? "").trim().split(/\s+/).filter(Boolean).map((w) => {
          const i = w.indexOf("=");
          return i < 0 ? [w, ""] : [w.slice(0, i), w.slice(i + 1)];
        }));
        if (boot[1] === "init-start") this.bootIds.push(fields.boot_id ?? `unknown-${this.bootIds.length}`);
        this.marks.push({ boot: this.boot, name: boot[1]!, uptime: Number(boot[2]), at: Date.now(), fields });
        if (boot[1] !== "init-start" || this.boot >= 0) this.log(`boot ${this.boot}: ${boot[1]} at ${boot[2]} s guest uptime${boot[3] ?? ""}`);
      }
      const lp = /^@@LP uptime=([\d.]+) state=\[(.*)\]$/.exec(m);
      if (lp) {
        const state: Record<string, string> = {};
        for (const w of (lp[2] ?? "").split(" ").filter(Boolean)) {
          const [name, enabled, transition] = w.split(":");
          if (name) state[name] = `${enabled}:${transition}`;
        }
        this.lpChanges.push({ boot: this.boot, uptime: Number(lp[1]), at: Date.now(), state });
      }
      const cmd = /^@@CMD uptime=([\d.]+) text=(.*)$/.exec(m);
      if (cmd) this.cmdlineChanges.push({ boot: this.boot, uptime: Number(cmd[1]), at: Date.now(), text: cmd[2] ?? "" });
      if (m.startsWith("@@BOOT disks-mounted")) void this.connectControl();
    }
    const lockup = /soft lockup - CPU#(\d+) stuck for (\d+)s! \[(.*?)\]/.exec(line);
    if (lockup) this.softLockups.push({ boot: this.boot, at: Date.now(), cpu: Number(lockup[1]), seconds: Number(lockup[2]), task: lockup[3] ?? "" });
    if (/Kernel panic/.test(line)) {
      const expected = this.panicExpected?.test(line) ?? false;
      if (expected) this.panicExpected = undefined; // one panic per announcement
      this.panics.push({ boot: this.boot, at: Date.now(), line, expected });
      this.marks.push({ boot: this.boot, name: "kernel-panic", uptime: -1, at: Date.now(), fields: { line, expected: expected ? "1" : "0" } });
      if (!expected) this.log(`UNEXPECTED kernel panic in boot ${this.boot}: ${line}`);
    }
    this.wake();
  }

  /**
   * Announces the one kernel panic a scenario provokes: the next "Kernel panic" console line that
   * matches `line` is expected (the guest reboots, panic=1). Any other panic stays unexpected and
   * fails every wait of the harness (until, command) and the suite's scenario wrapper.
   */
  expectPanic(line: RegExp): void {
    this.panicExpected = line;
  }

  /** Panics nobody announced (empty in a healthy run). */
  unexpectedPanics(): PanicMark[] {
    return this.panics.filter((p) => !p.expected);
  }

  private panicError(what: string): Error | undefined {
    const p = this.unexpectedPanics()[0];
    return p ? new Error(`kernel panic (not expected) in boot ${p.boot} while waiting for ${what}: ${p.line}; console tail:\n${this.consoleTail.slice(-40).join("\n")}`) : undefined;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * How long, in the current boot, some task has held a CPU in the kernel as the guest's soft-lockup
   * detector last reported it (0 when it reported nothing): a guest stuck for minutes does not come
   * back by itself.
   */
  stuckSeconds(): number {
    return Math.max(0, ...this.softLockups.filter((l) => l.boot === this.boot).map((l) => l.seconds));
  }

  /**
   * Resets the guest through QEMU's monitor (the reset button: no shutdown, the disks as they are),
   * as a hung node's hardware watchdog or its owner would. Recorded in `powerCycles`.
   */
  async powerCycle(why: string): Promise<void> {
    this.log(`POWER CYCLE of boot ${this.boot}: ${why}`);
    this.powerCycles.push({ boot: this.boot, at: Date.now(), why });
    await new Promise<void>((resolve, reject) => {
      const sock = net.connect(path.join(this.dir, "monitor.sock"));
      sock.on("error", reject);
      sock.on("connect", () => sock.write("system_reset\n", () => setTimeout(() => (sock.destroy(), resolve()), 500)));
    });
  }

  /** Resolves when `check` returns a value (re-checked on every console line and every second). */
  async until<T>(what: string, check: () => T | undefined | false, timeoutMs: number): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined && v !== false) return v;
      if (this.exitCode !== undefined) throw new Error(`QEMU exited (code ${this.exitCode}) while waiting for ${what}; console tail:\n${this.consoleTail.slice(-40).join("\n")}`);
      const panic = this.panicError(what);
      if (panic) throw panic;
      if (Date.now() > end) throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}; console tail:\n${this.consoleTail.slice(-40).join("\n")}`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, 1000);
        this.waiters.push(() => {
          clearTimeout(timer);
          r();
        });
      });
    }
  }

  /** The mark `name` of boot `boot` (default: the current boot). */
  mark(name: string, boot = this.boot): BootMark | undefined {
    return this.marks.find((m) => m.name === name && m.boot === boot);
  }

  waitMark(name: string, timeoutMs: number, boot?: number): Promise<BootMark> {
    return this.until(`guest mark ${name}`, () => this.mark(name, boot ?? this.boot), timeoutMs);
  }

  // --- control channel ---------------------------------------------------------------------------

  private async connectControl(): Promise<void> {
    if (this.ctl) return;
    const sock = path.join(this.dir, "ctl.sock");
    for (let i = 0; i < 50 && !existsSync(sock); i++) await sleep(100);
    const s = net.connect(sock);
    this.ctl = s;
    s.setEncoding("utf8");
    s.on("data", (chunk: string) => {
      this.ctlBuf += chunk;
      let nl: number;
      while ((nl = this.ctlBuf.indexOf("\n")) >= 0) {
        const line = this.ctlBuf.slice(0, nl).replace(/\r$/, "");
        this.ctlBuf = this.ctlBuf.slice(nl + 1);
        const m = /@@R (\d+) (END|ACK|\| ?(.*))$/.exec(line);
        if (!m) continue;
        const p = this.pending.get(Number(m[1]));
        if (!p) continue;
        if (m[2] === "ACK") p.acked();
        else if (m[2] === "END") {
          this.pending.delete(Number(m[1]));
          p.done(p.lines);
        } else p.lines.push(m[3] ?? "");
      }
    });
    s.on("error", () => undefined);
    s.on("close", () => {
      if (this.ctl === s) this.ctl = undefined;
    });
  }

  /**
   * One command over the control channel. The guest acknowledges a command as soon as it reads it;
   * until then (it may be booting, or rebooting) the command is sent again every 5 s.
   */
  async command(cmd: string, timeoutMs = 60_000): Promise<string[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.exitCode !== undefined) throw new Error(`QEMU is not running (exit ${this.exitCode}); cannot send ${cmd}`);
      const panic = this.panicError(`the answer to "${cmd}"`);
      if (panic) throw panic;
      if (!this.ctl) await this.connectControl();
      const id = this.nextId++;
      let acked = false;
      const answer = new Promise<string[]>((done) => this.pending.set(id, { lines: [], acked: () => (acked = true), done }));
      this.ctl?.write(`${id} ${cmd}\n`);
      const ackBy = Date.now() + 5000;
      for (;;) {
        const r = await Promise.race([answer, sleep(250).then(() => undefined)]);
        if (r) return r;
        if (this.exitCode !== undefined) break;
        if (Date.now() > end) {
          this.pending.delete(id);
          throw new Error(`the guest did not answer "${cmd}" within ${Math.round(timeoutMs / 1000)} s${acked ? " (it received it)" : ""}`);
        }
        if (!acked && Date.now() > ackBy) break;
      }
      this.pending.delete(id);
    }
  }

  async state(): Promise<GuestState> {
    return parseState(await this.command("state"));
  }

  /**
   * Loads or unloads one of the node's own modules (VmNodeOptions.fixtures, by module name), as
   * the machine's owner would (insmod / rmmod). Throws when the guest's command failed.
   */
  async fixture(op: "load" | "unload", name: string): Promise<{ loaded: boolean; output: string[] }> {
    const out = await this.command(`fixture ${op} ${name}`);
    if (!out.includes("rc=0")) throw new Error(`fixture ${op} ${name} failed in the guest: ${out.join(" | ")}`);
    return { loaded: out.some((l) => l.startsWith(`module=${name} `)), output: out };
  }

  /** kubelet | containerd | kpatch-service | dmesg | pods */
  async guestLog(which: string): Promise<string> {
    return (await this.command(`log ${which}`)).join("\n");
  }

  /** The pods' log lines so far (container log lines prefixed with <ns_pod_uid>/<container>). */
  podLog(): string {
    try {
      return readFileSync(this.podLogPath, "utf8").replace(/\r/g, "");
    } catch {
      return "";
    }
  }

  /** A clean reboot, as `reboot` on the node: kubelet and containers stopped, disks synced. */
  async reboot(timeoutMs = 300_000): Promise<{ bootIdBefore: string; bootIdAfter: string }> {
    const before = this.bootIds[this.boot] ?? "";
    const n = this.boot;
    await this.command("reboot", 30_000);
    await this.until("the guest to boot again", () => this.boot > n, timeoutMs);
    return { bootIdBefore: before, bootIdAfter: this.bootIds[this.boot] ?? "" };
  }

  /** Clean power-off; kills QEMU when the guest does not stop in time. Idempotent. */
  async stop(timeoutMs = 60_000): Promise<void> {
    if (!this.qemu || this.exitCode !== undefined) return;
    try {
      await this.command("poweroff", 15_000);
    } catch {
      /* kill below */
    }
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
    clearTimeout(timer);
    if (!done) {
      this.qemu.kill("SIGKILL");
      await this.exited;
    }
  }

  /** Copies the console and the pod logs to `dest` and removes the work directory (disks). */
  async cleanup(dest?: string): Promise<void> {
    if (dest) {
      await mkdir(dest, { recursive: true });
      for (const f of ["console.log", "pods.log"]) {
        if (existsSync(path.join(this.dir, f))) await writeFile(path.join(dest, f), await readFile(path.join(this.dir, f)));
      }
    }
    if (!process.env.KLP_KEEP_VM_NODE) await rm(this.dir, { recursive: true, force: true });
  }
}
