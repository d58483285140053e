// Loose views of the facts a guest step reports: the guest passes the agent's JSON through
// untouched, and these helpers read it without trusting its shape.
import { expect } from "vitest";

export type Obj = Record<string, unknown>;

/** One agent CLI call as the guest runner reports it. */
export interface AgentRun {
  rc: number | null;
  ms: number;
  stdout: string;
  stderr: string;
  args: string[];
  json: unknown;
}

export const obj = (v: unknown): Obj => (v && typeof v === "object" && !Array.isArray(v) ? (v as Obj) : {});
export const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
export const run = (v: unknown): AgentRun => v as AgentRun;
export const show = (r: AgentRun): string => `agent ${r.args?.join(" ")} -> rc ${r.rc}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

export function expectOk(r: AgentRun): void {
  expect(r.rc, show(r)).toBe(0);
  expect(obj(r.json).ok ?? true, show(r)).not.toBe(false);
}

/** A refusal: exit 1, `kpatch-agent: <Reason>: ...` on stderr, {ok:false, reason} on stdout. */
export function expectRefused(r: AgentRun, reasons: string[]): string {
  expect(r.rc, show(r)).toBe(1);
  const reason = String(obj(r.json).reason ?? "");
  expect(reasons, show(r)).toContain(reason);
  expect(obj(r.json).ok, show(r)).toBe(false);
  expect(r.stderr.trim(), show(r)).toMatch(new RegExp(`^kpatch-agent: ${reason}: `));
  return reason;
}

/** The host report of `list --json` (flat) or `status --json` (under `host`). */
export function hostReport(json: unknown): Obj {
  const o = obj(json);
  return o.host !== undefined ? obj(o.host) : o;
}
export function findPatch(report: Obj, name: string): Obj | undefined {
  return arr(report.livepatches).map(obj).find((p) => p.name === name);
}
export function findInstalled(report: Obj, name: string): Obj | undefined {
  return arr(report.installed).map(obj).find((p) => p.name === name);
}
export function findModule(report: Obj, name: string): Obj | undefined {
  return arr(report.modules).map(obj).find((p) => p.name === name);
}

/** Letters of a taintFlags value, whatever its form: "OEK", ["O","E","K"], [{letter:"O"}...]. */
export function taintLetters(flags: unknown): string[] {
  if (typeof flags === "string") return flags.split("").filter((c) => /[A-Z]/.test(c));
  return arr(flags).map((f) => (typeof f === "string" ? f : String(obj(f).letter ?? obj(f).flag ?? ""))).filter(Boolean);
}
