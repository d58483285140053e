// Guest side of the real-kernel suite: runs inside the QEMU guest (Node 24 from the initramfs, PID 1's
// child), executes one plan of steps against the real kernel through the agent CLI
// (/opt/klp/kpatch-agent.mjs, real kmod loader) and bare insmod, and prints one marked line per step
// on the serial console:
//   @@RESULT {"step":"s1-install-load","ok":true,"ms":1234,"details":{...}}
// A step collects facts (exit codes, the agent's JSON, sysfs and /proc reads, new kernel log lines);
// the host test asserts on them. `ok` is false only when the step itself threw.
// Bundled with esbuild by test/kernel/guest-image.ts; must not import anything outside node:*.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { PERF_ROUNDS } from "./perf-rounds.ts";

const AGENT = "/opt/klp/kpatch-agent.mjs";
const MODS = "/opt/klp/modules";
const RELEASE = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
const STAGE = `/var/lib/kpatch/${RELEASE}`;
const LP = "/sys/kernel/livepatch";
/** How long the busy-transition step holds the other transition after the agent's first EBUSY. */
const BUSY_HOLD_MS = 4000;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Details = Record<string, unknown>;

function emit(tag: string, value: unknown): void {
  // One write per line: the console is a TTY, so Node writes it synchronously.
  process.stdout.write(`${tag} ${JSON.stringify(value)}\n`);
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function read(path: string): string | null {
  try {
    return readFileSync(path, "utf8").trim();
  } catch {
    return null;
  }
}

function ls(dir: string): string[] | null {
  try {
    return readdirSync(dir).sort();
  } catch {
    return null;
  }
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

interface Run {
  rc: number | null;
  ms: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs = 180_000): Run {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: timeoutMs });
  const ms = Math.round(performance.now() - t0);
  return {
    rc: r.status,
    ms,
    stdout: r.stdout ?? "",
    stderr: (r.stderr ?? "") + (r.error ? `\n[spawn] ${r.error.message}` : ""),
  };
}

interface AgentRun extends Run {
  args: string[];
  json: Json;
}

const hasAgent = existsSync(AGENT);

/** The agent CLI as a host would run it: `node kpatch-agent.mjs --json --loader kmod ... <verb>`. */
function agent(args: string[], opts: { transitionTimeout?: number; nodeFlags?: string[] } = {}): AgentRun {
  if (!hasAgent) throw new Error(`agent bundle missing at ${AGENT}`);
  const globals = ["--json", "--loader", "kmod"];
  if (opts.transitionTimeout !== undefined) globals.push("--transition-timeout", String(opts.transitionTimeout));
  const full = [...globals, ...args];
  const r = run(process.execPath, [...(opts.nodeFlags ?? []), AGENT, ...full]);
  let json: Json = null;
  try {
    json = JSON.parse(r.stdout) as Json;
  } catch {
    json = null;
  }
  return { ...r, args: full, json };
}

interface BackgroundAgent {
  /** What the agent has written to stderr so far (pino writes synchronously). */
  stderr(): string;
  done(): boolean;
  /** Waits for the agent to exit (up to `timeoutMs`); its run as `agent()` reports one. */
  finish(timeoutMs: number): AgentRun;
  spawnedAt: number;
}

/**
 * The agent CLI started in the background while this process goes on (the runner blocks its own
 * event loop in sleeps, so the exit code comes from a busybox sh wrapper writing it to a file).
 */
function agentInBackground(args: string[]): BackgroundAgent {
  if (!hasAgent) throw new Error(`agent bundle missing at ${AGENT}`);
  const full = ["--json", "--loader", "kmod", ...args];
  const dir = mkdtempSync("/tmp/agent-");
  const script = 'exec "$@" > "$KLP_DIR/stdout" 2> "$KLP_DIR/stderr"';
  const spawnedAt = Date.now();
  const t0 = performance.now();
  const child = spawn("sh", ["-c", `(${script}); echo $? > "$KLP_DIR/rc.tmp" && mv "$KLP_DIR/rc.tmp" "$KLP_DIR/rc"`, "sh", process.execPath, AGENT, ...full], {
    stdio: ["ignore", openSync(`${dir}/wrapper.out`, "w"), openSync(`${dir}/wrapper.err`, "w")],
    env: { ...process.env, KLP_DIR: dir },
  });
  child.unref();
  const done = (): boolean => existsSync(`${dir}/rc`);
  return {
    spawnedAt,
    stderr: () => read(`${dir}/stderr`) ?? "",
    done,
    finish(timeoutMs) {
      waitFor(done, timeoutMs, 50);
      const ms = Math.round(performance.now() - t0);
      const rc = read(`${dir}/rc`);
      const stdout = read(`${dir}/stdout`) ?? "";
      let json: Json = null;
      try {
        json = JSON.parse(stdout) as Json;
      } catch {
        json = null;
      }
      const stderr = (read(`${dir}/stderr`) ?? "") + (read(`${dir}/wrapper.err`) ?? "");
      return { rc: rc === null ? null : Number(rc), ms, stdout, stderr, args: full, json };
    },
  };
}

// Kernel log: lines added since a mark (busybox dmesg reads the ring buffer).
function kmsgLines(): string[] {
  return run("dmesg", []).stdout.split("\n").filter((l) => l.length > 0);
}
function kmsgSince(mark: number): string[] {
  return kmsgLines().slice(mark);
}

/** Facts about one module/patch name. */
function moduleFacts(name: string): Details {
  return {
    sysModule: existsSync(`/sys/module/${name}`),
    moduleTaint: read(`/sys/module/${name}/taint`),
    refcnt: read(`/sys/module/${name}/refcnt`),
    livepatch: existsSync(`${LP}/${name}`),
    enabled: read(`${LP}/${name}/enabled`),
    transition: read(`${LP}/${name}/transition`),
  };
}

function kernelFacts(): Details {
  return {
    cmdline: read("/proc/cmdline"),
    tainted: Number(read("/proc/sys/kernel/tainted")),
    livepatches: ls(LP),
    staged: ls(STAGE),
    bootId: read("/proc/sys/kernel/random/boot_id"),
  };
}

function waitFor(pred: () => boolean, timeoutMs: number, stepMs = 5): boolean {
  const end = performance.now() + timeoutMs;
  while (performance.now() < end) {
    if (pred()) return true;
    sleepMs(stepMs);
  }
  return pred();
}

/** Bare kernel interface, no agent: insmod, then poll `transition` until it reads 0. */
function bareLoad(path: string, name: string): Details {
  // The previous round's module may still be on its way out of the kernel: wait for it, then
  // insmod as kpatch does, retrying while the kernel says busy (another transition, a module
  // still going). Once failed in CI with rc 1 right after the agent's unload of the same module.
  waitFor(() => !existsSync(`/sys/module/${name}`), 10_000);
  const t0 = performance.now();
  let r = run("insmod", [path]);
  let attempts = 1;
  for (; r.rc !== 0 && attempts < 5; attempts++) {
    sleepMs(500);
    r = run("insmod", [path]);
  }
  const insmodMs = performance.now() - t0;
  const settled =
    r.rc === 0 && waitFor(() => read(`${LP}/${name}/transition`) === "0", 60_000);
  return { rc: r.rc, stderr: r.stderr.trim(), attempts, settled, insmodMs: Math.round(insmodMs), totalMs: Math.round(performance.now() - t0) };
}

/** Bare unload: enabled=0, wait for the patch to leave sysfs, rmmod. */
function bareUnload(name: string): Details {
  const t0 = performance.now();
  if (existsSync(`${LP}/${name}`)) writeFileSync(`${LP}/${name}/enabled`, "0");
  const gone = waitFor(() => !existsSync(`${LP}/${name}`), 60_000);
  let rm = run("rmmod", [name]);
  for (let i = 0; i < 50 && rm.rc !== 0 && existsSync(`/sys/module/${name}`); i++) {
    sleepMs(100);
    rm = run("rmmod", [name]);
  }
  return { gone, rmmodRc: rm.rc, totalMs: Math.round(performance.now() - t0) };
}

/** Pid of the task whose comm is `comm` (waits up to 10 s for it to appear). */
function findTask(comm: string): string | null {
  let tid: string | null = null;
  waitFor(() => {
    for (const pid of ls("/proc") ?? []) {
      if (/^\d+$/.test(pid) && read(`/proc/${pid}/comm`) === comm) tid = pid;
    }
    return tid !== null;
  }, 10_000, 50);
  return tid;
}

interface TimelineEntry {
  atMs: number;
  msg: string;
}

/** The agent's pino lines (with --log-level info) as offsets from its spawn, plus its exit. */
function agentTimeline(stderr: string, spawnedAt: number, exitedAt: number): TimelineEntry[] {
  const out: TimelineEntry[] = [];
  for (const line of stderr.split("\n")) {
    try {
      const e = JSON.parse(line) as { msg?: string; time?: number };
      if (typeof e.time === "number") out.push({ atMs: e.time - spawnedAt, msg: e.msg ?? "" });
    } catch {
      // not a log line
    }
  }
  out.push({ atMs: exitedAt - spawnedAt, msg: "process exited" });
  return out;
}
function atOf(timeline: TimelineEntry[], msg: string): number {
  return timeline.find((e) => e.msg === msg)?.atMs ?? NaN;
}
/** From "loading patch module" (just before insmod) to "patch module loaded" (transition done). */
function insmodToLoaded(timeline: TimelineEntry[]): number {
  return atOf(timeline, "patch module loaded") - atOf(timeline, "loading patch module");
}

/** The kernel's own transition time from its log: "starting patching transition" to "patching complete". */
function kernelTransitionMs(lines: string[], name: string): number {
  const at = (what: string): number => {
    const line = lines.find((l) => l.includes(`'${name}': ${what}`));
    const m = line ? /^\[\s*([\d.]+)\]/.exec(line) : null;
    return m?.[1] ? Number(m[1]) * 1000 : NaN;
  };
  return Math.round(at("patching complete") - at("starting patching transition"));
}

function modinfoVermagic(path: string): string | null {
  const r = run("modinfo", ["-F", "vermagic", path]);
  return r.rc === 0 ? r.stdout.trim() : null;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** Every file under /var/lib/kpatch (the staging area and the agent's own files), relative paths. */
function kpatchTree(dir = "/var/lib/kpatch", prefix = ""): string[] {
  const out: string[] = [];
  for (const entry of ls(dir) ?? []) {
    if (entry === "lost+found") continue;
    const path = `${dir}/${entry}`;
    const sub = ls(path);
    if (sub) out.push(...kpatchTree(path, `${prefix}${entry}/`));
    else out.push(`${prefix}${entry}`);
  }
  return out;
}

/** Writes a sysctl/sysfs value; the errno code when the kernel refuses it. */
function writeKernel(path: string, value: string): string | null {
  try {
    writeFileSync(path, value);
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/** The kernel's own answer to a module, no agent: insmod's exit and words, and the log lines it left. */
function bareInsmod(path: string): Details {
  const mark = kmsgLines().length;
  const r = run("insmod", [path]);
  return { rc: r.rc, stderr: r.stderr.trim(), kmsg: kmsgSince(mark) };
}

/**
 * One of the kernel's refusals of our unsigned (and untrusted-signed) klp_test_v1: what the kernel
 * says to a bare insmod, and what the agent says to `load <file>`; then that nothing is loaded and
 * nothing is left under /var/lib/kpatch.
 */
function refusal(): Details {
  const settings = {
    lockdown: read("/sys/kernel/security/lockdown"),
    sigEnforce: read("/sys/module/module/parameters/sig_enforce"),
    cmdline: read("/proc/cmdline"),
  };
  const bare = bareInsmod(`${MODS}/klp_test_v1.ko`);
  const bareSigned = bareInsmod(`${MODS}/klp_test_v1_signed.ko`);
  const mark = kmsgLines().length;
  const unsigned = agent(["load", `${MODS}/klp_test_v1.ko`]);
  const signed = agent(["load", `${MODS}/klp_test_v1_signed.ko`]);
  return {
    settings, bare, bareSigned, unsigned, signed, agentKmsg: kmsgSince(mark),
    after: { ...kernelFacts(), ...moduleFacts("klp_test_v1"), kpatchTree: kpatchTree() },
  };
}

// ---- steps -------------------------------------------------------------------------------------

const steps: Record<string, () => Details> = {
  env(): Details {
    const service: Details = {
      rc: read("/run/kpatch-service.rc"),
      stdout: read("/run/kpatch-service.out"),
      stderr: read("/run/kpatch-service.err"),
      uptime: read("/run/kpatch-service.uptime"),
    };
    try {
      service.json = JSON.parse(String(service.stdout)) as Json;
    } catch {
      service.json = null;
    }
    return {
      release: RELEASE,
      originalCmdline: process.env.KLP_CMDLINE ?? null,
      ...kernelFacts(),
      livepatchSysfs: existsSync(LP),
      hasAgent,
      nodeVersion: process.version,
      uptime: read("/proc/uptime"),
      kpatchService: service,
      modulesDisabled: read("/proc/sys/kernel/modules_disabled"),
      stagedTree: ls("/var/lib/kpatch"),
    };
  },

  // Diagnostics (plan clicost): what one CLI invocation costs before it does any host work.
  "cli-cost"(): Details {
    const times = (args: string[], env: NodeJS.ProcessEnv = process.env): number[] =>
      [0, 1, 2].map(() => {
        const t0 = performance.now();
        spawnSync(process.execPath, args, { env });
        return Math.round(performance.now() - t0);
      });
    const cacheDir = "/run/node-compile-cache";
    return {
      nodeE0: times(["-e", "0"]),
      help: times([AGENT, "--help"]),
      list: times([AGENT, "--json", "list"]),
      helpCompileCache: times([AGENT, "--help"], { ...process.env, NODE_COMPILE_CACHE: cacheDir }),
      listCompileCache: times([AGENT, "--json", "list"], { ...process.env, NODE_COMPILE_CACHE: cacheDir }),
      bundleBytes: hasAgent ? readFileSync(AGENT).length : 0,
    };
  },

  // Diagnostics (plan agentcost): where the agent's insmod → loaded goes, next to a bare insmod +
  // wait, round by round: the kernel's own transition (its log) under each, and the agent with V8's
  // background threads off (--single-threaded), which are the agent's only threads that can be
  // running when the kernel tries to switch every task.
  "agent-cost"(): Details {
    const file = `${MODS}/klp_test_v1.ko`;
    const install = agent(["install", file]);
    const variants: Record<string, string[] | null> = { bare: null, agent: [], agentSingleThreaded: ["--single-threaded"] };
    const rounds: Details[] = [];
    for (let i = 0; i < 5; i++) {
      for (const [variant, flags] of Object.entries(variants)) {
        const mark = kmsgLines().length;
        let loadMs: number;
        if (flags === null) {
          loadMs = Number(bareLoad(`${STAGE}/klp_test_v1.ko`, "klp_test_v1").totalMs);
        } else {
          const spawnedAt = Date.now();
          const load = agent(["--log-level", "info", "load", "klp_test_v1"], { nodeFlags: flags });
          loadMs = insmodToLoaded(agentTimeline(load.stderr, spawnedAt, Date.now()));
        }
        const kernelMs = kernelTransitionMs(kmsgSince(mark), "klp_test_v1");
        bareUnload("klp_test_v1");
        rounds.push({ round: i, variant, loadMs, kernelMs });
      }
    }
    const summary: Details = {};
    for (const variant of Object.keys(variants)) {
      const mine = rounds.filter((r) => r.variant === variant);
      summary[variant] = {
        loadMs: mine.map((r) => r.loadMs), kernelMs: mine.map((r) => r.kernelMs),
        medianLoadMs: median(mine.map((r) => Number(r.loadMs))), medianKernelMs: median(mine.map((r) => Number(r.kernelMs))),
      };
    }
    return { installRc: install.rc, rounds, summary };
  },

  // A bare insmod of klp_test_v1 with no agent at all: proves the module and the guest.
  bare(): Details {
    const mark = kmsgLines().length;
    const load = bareLoad(`${MODS}/klp_test_v1.ko`, "klp_test_v1");
    const loaded = { ...kernelFacts(), ...moduleFacts("klp_test_v1") };
    const unload = bareUnload("klp_test_v1");
    return { load, loaded, unload, after: { ...kernelFacts(), ...moduleFacts("klp_test_v1") }, kmsg: kmsgSince(mark) };
  },

  "s1-install-load"(): Details {
    const mark = kmsgLines().length;
    const before = kernelFacts();
    const file = `${MODS}/klp_test_v1.ko`;
    const install = agent(["install", "--sha256", sha256(file), file]);
    const stagedAfterInstall = ls(STAGE);
    const sysModuleAfterInstall = existsSync("/sys/module/klp_test_v1");
    const stagedSha = existsSync(`${STAGE}/klp_test_v1.ko`) ? sha256(`${STAGE}/klp_test_v1.ko`) : null;
    const load = agent(["load", "klp_test_v1"]);
    const facts = { ...kernelFacts(), ...moduleFacts("klp_test_v1") };
    // status = preflight + the host report `list` prints (each CLI call costs seconds under TCG).
    const status = agent(["status"]);
    return {
      before, install, stagedAfterInstall, sysModuleAfterInstall, stagedSha, sourceSha: sha256(file),
      load, facts, status, kmsg: kmsgSince(mark),
    };
  },

  "s2-unload-uninstall"(): Details {
    const mark = kmsgLines().length;
    const unload = agent(["unload", "klp_test_v1"]);
    const afterUnload = { ...kernelFacts(), ...moduleFacts("klp_test_v1") };
    const uninstall = agent(["uninstall", "klp_test_v1"]);
    const after = { ...kernelFacts(), ...moduleFacts("klp_test_v1") };
    const list = agent(["list"]);
    return { unload, afterUnload, uninstall, after, list, kmsg: kmsgSince(mark) };
  },

  // Agent load/unload next to bare insmod/disable/rmmod of the same staged file, alternating.
  perf(): Details {
    const file = `${MODS}/klp_test_v1.ko`;
    const install = agent(["install", file]);
    const nodeStartup: number[] = [];
    const cliStartup: number[] = [];
    const rounds: Details[] = [];
    for (let i = 0; i < PERF_ROUNDS; i++) {
      nodeStartup.push(run(process.execPath, ["-e", "0"]).ms);
      // The CLI's fixed cost: Node plus loading the bundle, no host work (once: each costs seconds).
      if (i === 0) cliStartup.push(run(process.execPath, [AGENT, "--help"]).ms);
      // With the agent's own log (pino, epoch ms) to see where its time goes.
      const agentMark = kmsgLines().length;
      const spawnedAt = Date.now();
      const load = agent(["--log-level", "info", "load", "klp_test_v1"]);
      const agentKernelMs = kernelTransitionMs(kmsgSince(agentMark), "klp_test_v1");
      const timeline = agentTimeline(load.stderr, spawnedAt, Date.now());
      const agentFacts = moduleFacts("klp_test_v1");
      const unload = agent(["unload", "klp_test_v1"]);
      const bareMark = kmsgLines().length;
      const bare = bareLoad(`${STAGE}/klp_test_v1.ko`, "klp_test_v1");
      const bareKernelMs = kernelTransitionMs(kmsgSince(bareMark), "klp_test_v1");
      const bareFacts = moduleFacts("klp_test_v1");
      const bareOff = bareUnload("klp_test_v1");
      rounds.push({
        agentLoadRc: load.rc, agentLoadMs: load.ms, agentLoadJson: load.json, agentTimeline: timeline,
        agentInsmodToLoadedMs: insmodToLoaded(timeline), agentKernelTransitionMs: agentKernelMs,
        bareKernelTransitionMs: bareKernelMs,
        agentEnabled: agentFacts.enabled, agentUnloadRc: unload.rc, agentUnloadMs: unload.ms,
        bareRc: bare.rc, bareStderr: bare.stderr, bareAttempts: bare.attempts, bareSettled: bare.settled, bareLoadMs: bare.totalMs, bareInsmodMs: bare.insmodMs,
        bareEnabled: bareFacts.enabled, bareUnloadMs: bareOff.totalMs,
      });
    }
    const uninstall = agent(["uninstall", "klp_test_v1"]);
    const agentMs = median(rounds.map((r) => Number(r.agentLoadMs)));
    const bareMs = median(rounds.map((r) => Number(r.bareLoadMs)));
    const startMs = median(nodeStartup);
    const cliMs = median(cliStartup);
    return {
      install: { rc: install.rc, stderr: install.stderr }, uninstall: { rc: uninstall.rc, stderr: uninstall.stderr },
      rounds, nodeStartupMs: nodeStartup, cliStartupMs: cliStartup,
      median: {
        agentLoadMs: agentMs, bareLoadMs: bareMs, nodeStartupMs: startMs, cliStartupMs: cliMs, agentWorkMs: agentMs - cliMs,
        agentInsmodToLoadedMs: median(rounds.map((r) => Number(r.agentInsmodToLoadedMs))),
        agentKernelTransitionMs: median(rounds.map((r) => Number(r.agentKernelTransitionMs))),
        bareKernelTransitionMs: median(rounds.map((r) => Number(r.bareKernelTransitionMs))),
        agentBeforeInsmodMs: median(rounds.map((r) => Number(atOf(r.agentTimeline as TimelineEntry[], "loading patch module")))),
      },
      after: { ...kernelFacts(), ...moduleFacts("klp_test_v1") },
    };
  },

  "s3-vermagic"(): Details {
    const mark = kmsgLines().length;
    const file = `${MODS}/klp_test_v1_badver.ko`;
    const install = agent(["install", file]);
    const load = agent(["load", file]);
    const after = { ...kernelFacts(), ...moduleFacts("klp_test_v1") };
    return { install, load, after, kmsg: kmsgSince(mark) };
  },

  "s4-not-livepatch-truncated"(): Details {
    const mark = kmsgLines().length;
    const plainInstall = agent(["install", `${MODS}/plain_test.ko`]);
    const plainLoad = agent(["load", `${MODS}/plain_test.ko`]);
    const truncInstall = agent(["install", `${MODS}/klp_test_trunc.ko`]);
    const truncLoad = agent(["load", `${MODS}/klp_test_trunc.ko`]);
    return {
      plainInstall, plainLoad, truncInstall, truncLoad,
      plain: moduleFacts("plain_test"), trunc: moduleFacts("klp_test_trunc"), v1: moduleFacts("klp_test_v1"),
      after: kernelFacts(), kmsg: kmsgSince(mark),
    };
  },

  "s5-replace"(): Details {
    const mark = kmsgLines().length;
    const installV1 = agent(["install", `${MODS}/klp_test_v1.ko`]);
    const loadV1 = agent(["load", "klp_test_v1"]);
    const withV1 = { ...kernelFacts(), v1: moduleFacts("klp_test_v1") };
    const installV2 = agent(["install", `${MODS}/klp_test_v2.ko`]);
    const loadV2 = agent(["load", "klp_test_v2"]);
    const afterReplace = { ...kernelFacts(), v1: moduleFacts("klp_test_v1"), v2: moduleFacts("klp_test_v2") };
    const listAfterReplace = agent(["list"]);
    // The CLI's load leaves the replaced module loaded (as kpatch does); `unload <old>` removes it.
    const unloadV1 = agent(["unload", "klp_test_v1"]);
    const after = { ...kernelFacts(), v1: moduleFacts("klp_test_v1"), v2: moduleFacts("klp_test_v2") };
    return {
      installV1, loadV1, withV1, installV2, loadV2, afterReplace, listAfterReplace, unloadV1, after,
      kmsg: kmsgSince(mark),
    };
  },

  // Leave exactly klp_test_v2 staged for the second boot; remember this boot's id.
  "prep-reboot"(): Details {
    const staged = ls(STAGE) ?? [];
    const uninstallV1 = staged.includes("klp_test_v1.ko") ? agent(["uninstall", "klp_test_v1"]) : null;
    const installV2 = staged.includes("klp_test_v2.ko") ? null : agent(["install", `${MODS}/klp_test_v2.ko`]);
    run("sync", []);
    return { uninstallV1, installV2, ...kernelFacts(), v2: moduleFacts("klp_test_v2") };
  },

  // Second boot: init ran `kpatch-agent load --all` (kpatch.service) before this step.
  "s6-reboot"(): Details {
    const list = agent(["list"]);
    return { ...kernelFacts(), v2: moduleFacts("klp_test_v2"), v1: moduleFacts("klp_test_v1"), list };
  },

  // The stall without the agent: proves the fixture (a transition that really never finishes) and
  // that writing the opposite value reverses it.
  "stall-bare"(): Details {
    const mark = kmsgLines().length;
    const target = run("insmod", [`${MODS}/klp_stall_target.ko`]);
    const tid = findTask("klp_stall_thread");
    const patch = run("insmod", [`${MODS}/klp_test_stall.ko`]);
    sleepMs(3000);
    const stalled = { ...moduleFacts("klp_test_stall"), threadPatchState: tid ? read(`/proc/${tid}/patch_state`) : null };
    const t0 = performance.now();
    if (existsSync(`${LP}/klp_test_stall`)) writeFileSync(`${LP}/klp_test_stall/enabled`, "0");
    const reversed = waitFor(() => !existsSync(`${LP}/klp_test_stall`), 30_000, 20);
    const reverseMs = Math.round(performance.now() - t0);
    const rmPatch = run("rmmod", ["klp_test_stall"]).rc;
    const rmTarget = run("rmmod", ["klp_stall_target"]).rc;
    return {
      targetRc: target.rc, tid, patchRc: patch.rc, patchStderr: patch.stderr, stalled, reversed, reverseMs,
      rmPatch, rmTarget, after: { stall: moduleFacts("klp_test_stall"), target: existsSync("/sys/module/klp_stall_target") },
      kmsg: kmsgSince(mark),
    };
  },

  "s7-stall"(): Details {
    const mark = kmsgLines().length;
    const target = run("insmod", [`${MODS}/klp_stall_target.ko`]);
    const tid = findTask("klp_stall_thread");
    const stackBefore = tid ? read(`/proc/${tid}/stack`) : null;
    const load = agent(["load", `${MODS}/klp_test_stall.ko`], { transitionTimeout: 5 });
    const after = {
      ...kernelFacts(), stall: moduleFacts("klp_test_stall"), v2: moduleFacts("klp_test_v2"),
      threadPatchState: tid ? read(`/proc/${tid}/patch_state`) : null,
    };
    // Clean up whatever the agent left, so the guest powers off cleanly.
    const leftover: Details = {};
    if (existsSync("/sys/module/klp_test_stall")) leftover.stall = bareUnload("klp_test_stall");
    leftover.targetRmmod = run("rmmod", ["klp_stall_target"]).rc;
    return { targetInsmod: { rc: target.rc, stderr: target.stderr }, tid, stackBefore, load, after, leftover, kmsg: kmsgSince(mark) };
  },

  // Another patch's transition in progress: klp_test_stall held in transition without the agent,
  // the kernel answers every insmod of another livepatch EBUSY (__klp_enable_patch while
  // klp_transition_patch is set; it logs nothing). The agent's `load` of klp_test_v1 (stacked on v2)
  // runs meanwhile; BUSY_HOLD_MS after its first EBUSY we reverse the held transition, and its
  // retries (5 tries, 2 s apart: the last one at >= 8 s) must then get through. The hold is counted
  // from the agent's first EBUSY, not from its spawn (starting Node takes 3-10 s under TCG), so the
  // reversal (~1 s) is done by ~5 s, two tries before the agent would give up.
  "busy-transition"(): Details {
    const file = `${MODS}/klp_test_v1.ko`;
    const treeBefore = kpatchTree();
    const mark = kmsgLines().length;
    const target = run("insmod", [`${MODS}/klp_stall_target.ko`]);
    const tid = findTask("klp_stall_thread");
    const stall = run("insmod", [`${MODS}/klp_test_stall.ko`]);
    const held = { ...moduleFacts("klp_test_stall"), threadPatchState: tid ? read(`/proc/${tid}/patch_state`) : null };
    // Control: the kernel's own answer to a bare insmod while the transition is held.
    const control = { ...bareInsmod(file), v1After: moduleFacts("klp_test_v1") };
    const bg = agentInBackground(["--log-level", "info", "load", file]);
    const busyLine = (): boolean => bg.stderr().includes("device or resource busy, retrying");
    const sawBusy = waitFor(() => busyLine() || bg.done(), 120_000, 20) && busyLine();
    const firstBusyAt = Date.now();
    if (sawBusy) sleepMs(BUSY_HOLD_MS);
    // What the agent left of the other patch while retrying: still enabled and in transition.
    const beforeReverse = {
      stall: moduleFacts("klp_test_stall"), v1: moduleFacts("klp_test_v1"), v2: moduleFacts("klp_test_v2"),
      threadPatchState: tid ? read(`/proc/${tid}/patch_state`) : null, agentDone: bg.done(),
      kmsg: kmsgSince(mark),
    };
    const reverseAt = Date.now();
    const reverseErr = writeKernel(`${LP}/klp_test_stall/enabled`, "0");
    const reversed = waitFor(() => !existsSync(`${LP}/klp_test_stall`), 30_000, 20);
    const reversedAt = Date.now();
    let rmStall = run("rmmod", ["klp_test_stall"]);
    for (let i = 0; i < 50 && rmStall.rc !== 0 && existsSync("/sys/module/klp_test_stall"); i++) {
      sleepMs(100);
      rmStall = run("rmmod", ["klp_test_stall"]);
    }
    const load = bg.finish(120_000);
    const timeline = agentTimeline(load.stderr, bg.spawnedAt, Date.now());
    const after = {
      ...kernelFacts(), v1: moduleFacts("klp_test_v1"), v2: moduleFacts("klp_test_v2"), stall: moduleFacts("klp_test_stall"),
    };
    const kmsg = kmsgSince(mark);
    const rmTarget = run("rmmod", ["klp_stall_target"]).rc;
    // Leave what the later steps expect: v2 alone live, nothing new under /var/lib/kpatch.
    const unload = agent(["unload", "klp_test_v1"]);
    const restored = { ...kernelFacts(), v1: moduleFacts("klp_test_v1"), v2: moduleFacts("klp_test_v2"), kpatchTree: kpatchTree() };
    const rel = (at: number): number => at - bg.spawnedAt;
    return {
      holdMs: BUSY_HOLD_MS, targetRc: target.rc, tid, stallRc: stall.rc, stallStderr: stall.stderr, held, control,
      sawBusy, firstBusyAtMs: rel(firstBusyAt), reverseAtMs: rel(reverseAt), reversedAtMs: rel(reversedAt),
      reverseErr, reversed, beforeReverse, rmStallRc: rmStall.rc, load, timeline, after, kmsg, rmTarget,
      unload, treeBefore, restored,
    };
  },

  // Booted with lockdown=integrity / module.sig_enforce=1 (the host test's kernel command line).
  "refuse-lockdown": refusal,
  "refuse-sig-enforce": refusal,

  // Boot 2, after the stall: `info` of the staged and loaded klp_test_v2.
  "cli-info"(): Details {
    const info = agent(["info", "klp_test_v2"]);
    const file = `${STAGE}/klp_test_v2.ko`;
    return { info, stagedSha: existsSync(file) ? sha256(file) : null, v2: moduleFacts("klp_test_v2") };
  },

  // `unload --all` with two patches live: v2 (kpatch.service) and v1 stacked on it by a bare insmod.
  "unload-all"(): Details {
    const mark = kmsgLines().length;
    const v1 = bareLoad(`${MODS}/klp_test_v1.ko`, "klp_test_v1");
    const before = { ...kernelFacts(), v1: moduleFacts("klp_test_v1"), v2: moduleFacts("klp_test_v2") };
    const unloadAll = agent(["unload", "--all"]);
    const after = { ...kernelFacts(), v1: moduleFacts("klp_test_v1"), v2: moduleFacts("klp_test_v2") };
    const list = agent(["list"]);
    return { v1, before, unloadAll, after, list, kmsg: kmsgSince(mark) };
  },

  // kernel.ftrace_enabled=0 (no livepatch may be live: the kernel refuses the sysctl then).
  "refuse-ftrace"(): Details {
    const livepatchesBefore = ls(LP);
    const setErr = writeKernel("/proc/sys/kernel/ftrace_enabled", "0");
    const ftraceEnabled = read("/proc/sys/kernel/ftrace_enabled");
    const bare = bareInsmod(`${MODS}/klp_test_v1.ko`);
    const load = agent(["load", `${MODS}/klp_test_v1.ko`]);
    const after = { ...kernelFacts(), ...moduleFacts("klp_test_v1"), kpatchTree: kpatchTree() };
    const restoreErr = writeKernel("/proc/sys/kernel/ftrace_enabled", "1");
    return { livepatchesBefore, setErr, ftraceEnabled, bare, load, after, restoreErr, ftraceAfter: read("/proc/sys/kernel/ftrace_enabled") };
  },

  // kernel.modules_disabled=1 (one way: the last step of its boot) with klp_test_v1 live.
  "refuse-modules-disabled"(): Details {
    const v1 = bareLoad(`${MODS}/klp_test_v1.ko`, "klp_test_v1");
    const setErr = writeKernel("/proc/sys/kernel/modules_disabled", "1");
    const modulesDisabled = read("/proc/sys/kernel/modules_disabled");
    const bare = bareInsmod(`${MODS}/klp_test_v2.ko`);
    const mark = kmsgLines().length;
    const load = agent(["load", `${MODS}/klp_test_v2.ko`]);
    const afterLoad = { ...kernelFacts(), v2: moduleFacts("klp_test_v2"), kpatchTree: kpatchTree() };
    const unload = agent(["unload", "klp_test_v1"]);
    const afterUnload = { ...kernelFacts(), v1: moduleFacts("klp_test_v1") };
    return { v1, setErr, modulesDisabled, bare, load, afterLoad, unload, afterUnload, kmsg: kmsgSince(mark) };
  },

  // A guest of the second Debian release: its own build of klp_test_v1 loads; the pinned release's
  // build of the same source (in /opt/klp/foreign) is refused before insmod.
  "second-release"(): Details {
    const foreign = "/opt/klp/foreign/klp_test_v1.ko";
    const mark = kmsgLines().length;
    const foreignLoad = agent(["load", foreign]);
    const afterForeign = { ...kernelFacts(), ...moduleFacts("klp_test_v1"), kpatchTree: kpatchTree() };
    const foreignKmsg = kmsgSince(mark);
    const load = agent(["load", `${MODS}/klp_test_v1.ko`]);
    const loaded = { ...kernelFacts(), ...moduleFacts("klp_test_v1") };
    return {
      foreignRelease: read("/opt/klp/foreign/release"), foreignVermagic: modinfoVermagic(foreign),
      ownVermagic: modinfoVermagic(`${MODS}/klp_test_v1.ko`), foreignLoad, afterForeign, foreignKmsg, load, loaded,
    };
  },
};

const plans: Record<string, string[]> = {
  smoke: ["env", "bare"],
  clicost: ["env", "cli-cost"],
  agentcost: ["env", "agent-cost"],
  boot1: ["env", "bare", "s1-install-load", "s2-unload-uninstall", "perf", "s3-vermagic", "s4-not-livepatch-truncated", "s5-replace", "prep-reboot"],
  boot2: ["env", "s6-reboot", "stall-bare", "s7-stall", "busy-transition", "cli-info", "unload-all", "refuse-ftrace", "refuse-modules-disabled"],
  lockdown: ["env", "refuse-lockdown"],
  "sig-enforce": ["env", "refuse-sig-enforce"],
  "second-release": ["env", "perf", "second-release"],
};

function main(): void {
  const planName = process.argv[2] || "smoke";
  const plan = plans[planName];
  if (!plan) {
    emit("@@RESULT", { step: "plan", ok: false, ms: 0, error: `unknown plan ${planName}` });
    return;
  }
  emit("@@PLAN", { plan: planName, steps: plan, hasAgent });
  for (const name of plan) {
    const fn = steps[name];
    const t0 = performance.now();
    try {
      if (!fn) throw new Error(`unknown step ${name}`);
      const details = fn();
      emit("@@RESULT", { step: name, ok: true, ms: Math.round(performance.now() - t0), details });
    } catch (e) {
      const err = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
      emit("@@RESULT", { step: name, ok: false, ms: Math.round(performance.now() - t0), error: err });
    }
  }
  emit("@@DONE", { plan: planName });
}

main();
