// Host side of the real-kernel suite: boots Debian's kernel under QEMU with the guest built by
// scripts/kernel/build-guest.sh, feeds it a plan on the kernel command line (klp.plan=...), and
// parses the serial console for the guest runner's marked lines (@@RESULT / @@PLAN / @@DONE / @@BOOT).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, release as hostRelease } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

export interface StepResult {
  step: string;
  ok: boolean;
  ms: number;
  details?: Record<string, unknown>;
  error?: string;
}

export interface BootOutcome {
  plan: string;
  accel: string;
  wallMs: number;
  /** Guest uptime (s) at the @@BOOT markers init prints: init-start, disks-mounted, service-done... */
  marks: Record<string, number>;
  results: Map<string, StepResult>;
  done: boolean;
  console: string;
  exitCode: number | null;
}

export interface BootOptions {
  vmlinuz: string;
  /** Directory holding initramfs.cpio.gz and tools.img. */
  guestDir: string;
  /** Persistent raw ext4 image mounted at /var/lib/kpatch (shared between boots). */
  disk?: string;
  plan: string;
  accel: string;
  timeoutMs: number;
  extraCmdline?: string[];
  memoryMb?: number;
  smp?: number;
  /** Called with each console line as it arrives (for progress logging). */
  onLine?: (line: string) => void;
}

export class BootTimeout extends Error {
  constructor(message: string, readonly console: string) {
    super(message);
  }
}

function qemuArgs(o: BootOptions): string[] {
  const cpu = o.accel === "kvm" ? "host" : "max";
  const cmdline = ["console=ttyS0", "panic=-1", "quiet", "loglevel=1", `klp.plan=${o.plan}`, ...(o.extraCmdline ?? [])];
  const args = [
    "-accel", o.accel, "-cpu", cpu,
    "-m", String(o.memoryMb ?? 1024), "-smp", String(o.smp ?? 2),
    "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot", "-nodefaults",
    "-kernel", o.vmlinuz, "-initrd", join(o.guestDir, "initramfs.cpio.gz"),
    "-drive", `file=${join(o.guestDir, "tools.img")},format=raw,if=virtio,readonly=on`,
  ];
  if (o.disk) args.push("-drive", `file=${o.disk},format=raw,if=virtio`);
  args.push("-append", cmdline.join(" "));
  return args;
}

/** Boots once and returns what the guest reported; throws BootTimeout (with the console tail). */
export function boot(o: BootOptions): Promise<BootOutcome> {
  const t0 = performance.now();
  const child = spawn("qemu-system-x86_64", qemuArgs(o), { stdio: ["pipe", "pipe", "pipe"] });
  let consoleText = "";
  let pending = "";
  const results = new Map<string, StepResult>();
  const marks: Record<string, number> = {};
  let done = false;

  const onData = (chunk: Buffer): void => {
    const text = chunk.toString("utf8");
    consoleText += text;
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl).replace(/\r$/, "");
      pending = pending.slice(nl + 1);
      handleLine(line);
    }
  };
  const handleLine = (raw: string): void => {
    o.onLine?.(raw);
    const at = raw.indexOf("@@");
    if (at < 0) return;
    const line = raw.slice(at);
    if (line.startsWith("@@RESULT ")) {
      try {
        const r = JSON.parse(line.slice("@@RESULT ".length)) as StepResult;
        results.set(r.step, r);
      } catch (e) {
        results.set(`unparsed-${results.size}`, { step: "unparsed", ok: false, ms: 0, error: `${String(e)}: ${line.slice(0, 200)}` });
      }
    } else if (line.startsWith("@@DONE")) {
      done = true;
    } else if (line.startsWith("@@BOOT ")) {
      const m = /^@@BOOT (\S+)(?:.*uptime=([\d.]+))?/.exec(line);
      if (m?.[1] && m[2]) marks[m[1]] = Number(m[2]);
      else if (m?.[1]) marks[m[1]] = -1;
    }
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);

  return new Promise<BootOutcome>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      const tail = consoleText.split("\n").slice(-40).join("\n");
      reject(new BootTimeout(
        `QEMU boot (plan ${o.plan}, accel ${o.accel}) did not power off within ${Math.round(o.timeoutMs / 1000)} s; ` +
          `steps reported: [${[...results.keys()].join(", ")}]; console tail:\n${tail}`,
        consoleText,
      ));
    }, o.timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (pending) handleLine(pending);
      resolve({
        plan: o.plan, accel: o.accel, wallMs: Math.round(performance.now() - t0), marks, results, done,
        console: consoleText, exitCode: code,
      });
    });
  });
}

/** Last lines of a console capture, for failure messages. */
export function consoleTail(text: string, lines = 30): string {
  return text.split("\n").slice(-lines).join("\n");
}

/**
 * Which accelerator to use: KLP_QEMU_ACCEL wins; otherwise TCG, unless /dev/kvm exists and a probe
 * boot with KVM reaches the guest's init (nested KVM can exist and still hang; the probe result is
 * cached per host kernel and CPU in the cache directory).
 */
export async function chooseAccel(o: { vmlinuz: string; guestDir: string; cacheDir: string }): Promise<{ accel: string; why: string }> {
  const forced = process.env.KLP_QEMU_ACCEL;
  if (forced) return { accel: forced, why: "KLP_QEMU_ACCEL" };
  if (!existsSync("/dev/kvm")) return { accel: "tcg", why: "no /dev/kvm" };
  const key = `${hostRelease()}-${(cpus()[0]?.model ?? "cpu").replace(/[^A-Za-z0-9]+/g, "_")}`;
  const file = join(o.cacheDir, `kvm-probe-${key}`);
  if (existsSync(file)) {
    const verdict = readFileSync(file, "utf8").trim();
    return { accel: verdict === "ok" ? "kvm" : "tcg", why: `cached KVM probe: ${verdict.slice(0, 100)}` };
  }
  let verdict: string;
  try {
    const r = await boot({ ...o, plan: "probe", accel: "kvm", timeoutMs: 20_000, extraCmdline: ["klp.probe=1"], smp: 1, memoryMb: 256 });
    verdict = r.marks["init-start"] !== undefined ? "ok" : `no init (exit ${r.exitCode}): ${consoleTail(r.console, 3).replace(/\s+/g, " ").slice(0, 120)}`;
  } catch (e) {
    verdict = e instanceof BootTimeout ? "hung (no init within 20 s)" : `failed: ${String(e)}`;
  }
  mkdirSync(o.cacheDir, { recursive: true });
  writeFileSync(file, `${verdict}\n`);
  return { accel: verdict === "ok" ? "kvm" : "tcg", why: `KVM probe: ${verdict.slice(0, 100)}` };
}
