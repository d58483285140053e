/** Memory and CPU of a process, from /proc (Linux). */
import { readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat (CLK_TCK; 100 on every Linux this runs on). */
const TICKS_PER_SECOND = 100;

export interface ProcSample {
  /** Resident set size, MiB. */
  rssMiB: number;
  /** Peak resident set size so far (VmHWM), MiB. */
  peakMiB: number;
  /** User + system CPU time so far, seconds. */
  cpuSeconds: number;
}

export function sampleProc(pid: number): ProcSample | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kib = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return {
      rssMiB: kib("VmRSS") / 1024,
      peakMiB: kib("VmHWM") / 1024,
      cpuSeconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND,
    };
  } catch {
    return undefined;
  }
}

/** CPU seconds spent between two samples (0 when either is missing). */
export function cpuBetween(before: ProcSample | undefined, after: ProcSample | undefined): number {
  return before && after ? after.cpuSeconds - before.cpuSeconds : 0;
}

/** Several processes as one (CPU and RSS summed); undefined when any is missing. */
export function sumSamples(samples: ReadonlyArray<ProcSample | undefined>): ProcSample | undefined {
  if (samples.some((x) => x === undefined)) return undefined;
  return samples.reduce<ProcSample>((t, x) => ({ rssMiB: t.rssMiB + x!.rssMiB, peakMiB: t.peakMiB + x!.peakMiB, cpuSeconds: t.cpuSeconds + x!.cpuSeconds }), { rssMiB: 0, peakMiB: 0, cpuSeconds: 0 });
}

/** The machine's CPU time so far, in clock ticks (all CPUs): all of it, and stolen by the hypervisor. */
export interface MachineSample {
  total: number;
  steal: number;
}

export function sampleMachine(): MachineSample {
  // "cpu user nice system idle iowait irq softirq steal guest guest_nice" (guest time is in user).
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return { total: fields.reduce((a, b) => a + b, 0), steal: fields[7] ?? 0 };
}

/** Percent of the machine's CPU time the hypervisor took between two samples. */
export const stealPercent = (a: MachineSample, b: MachineSample): number => (b.total > a.total ? ((b.steal - a.steal) / (b.total - a.total)) * 100 : 0);
