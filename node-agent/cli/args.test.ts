import { describe, expect, it } from "vitest";
import { parseCli } from "./args.ts";

const ok = (argv: string[], env: Record<string, string> = {}) => {
  const parsed = parseCli(argv, env);
  if (!parsed.ok) throw new Error(parsed.message);
  return parsed;
};

describe("parseCli", () => {
  it("applies the defaults", () => {
    expect(ok(["list"]).global).toEqual({
      hostRoot: "/",
      json: false,
      loader: "auto",
      transitionTimeoutMs: 75_000,
      logLevel: "silent",
    });
  });

  it("reads globals anywhere on the line and the host root from the environment", () => {
    const parsed = ok(["load", "--json", "fix", "--transition-timeout", "2.5", "--loader", "sim"], { KPATCH_HOST_ROOT: "/host" });
    expect(parsed.global).toMatchObject({ hostRoot: "/host", json: true, loader: "sim", transitionTimeoutMs: 2_500 });
    expect(parsed.command).toEqual({ verb: "load", target: "fix", all: false });
    expect(ok(["--host-root", "/x", "list"], { KPATCH_HOST_ROOT: "/host" }).global.hostRoot).toBe("/x");
  });

  it.each([
    { argv: ["list"], command: { verb: "list" } },
    { argv: ["status"], command: { verb: "status" } },
    { argv: ["info", "fix"], command: { verb: "info", target: "fix" } },
    { argv: ["install", "-k", "6.1.0", "x.ko"], command: { verb: "install", file: "x.ko", kernelRelease: "6.1.0" } },
    { argv: ["install", "--kernel-version", "6.1.0", "x.ko"], command: { verb: "install", file: "x.ko", kernelRelease: "6.1.0" } },
    {
      argv: ["install", "--sha256", "AB".repeat(32), "x.ko"],
      command: { verb: "install", file: "x.ko", sha256: "ab".repeat(32) },
    },
    { argv: ["uninstall", "fix"], command: { verb: "uninstall", name: "fix" } },
    { argv: ["load", "--all"], command: { verb: "load", all: true } },
    { argv: ["unload", "fix"], command: { verb: "unload", target: "fix", all: false } },
    { argv: ["--help"], command: { verb: "help" } },
    { argv: ["load", "-h"], command: { verb: "help" } },
    { argv: ["help"], command: { verb: "help" } },
    {
      argv: ["sim-host", "init", "--kernel-release", "6.1", "--stall", "--no-livepatch", "--transition-ms", "10", "--ftrace-disabled"],
      command: { verb: "sim-host", action: "init", kernelRelease: "6.1", stall: true, livepatchSupported: false, transitionMs: 10, ftraceEnabled: false },
    },
    { argv: ["sim-host", "configure", "--no-stall"], command: { verb: "sim-host", action: "configure", stall: false } },
    { argv: ["sim-host", "reboot"], command: { verb: "sim-host", action: "reboot" } },
    {
      argv: ["sim-host", "make-module", "--name", "n", "--vermagic", "v", "--replace", "-o", "f.ko"],
      command: { verb: "sim-host", action: "make-module", name: "n", vermagic: "v", output: "f.ko", replace: true, livepatch: true, signed: false },
    },
    {
      argv: ["sim-host", "make-module", "--name", "n", "--vermagic", "v", "--not-livepatch", "-o", "f.ko"],
      command: { verb: "sim-host", action: "make-module", name: "n", vermagic: "v", output: "f.ko", replace: false, livepatch: false, signed: false },
    },
  ])("$argv", ({ argv, command }) => {
    expect(ok(argv).command).toEqual(command);
  });

  it.each([
    { argv: [], message: /no command/ },
    { argv: ["frobnicate"], message: /unknown command/ },
    { argv: ["load"], message: /takes 1 argument/ },
    { argv: ["load", "a", "b"], message: /takes 1 argument/ },
    { argv: ["load", "--all", "a"], message: /takes 0 argument/ },
    { argv: ["list", "--all"], message: /does not take --all/ },
    { argv: ["load", "--sha256", "x", "a"], message: /does not take --sha256/ },
    { argv: ["install", "--sha256", "xyz", "a.ko"], message: /sha256: must be 64 hex digits/ },
    { argv: ["list", "--loader", "modprobe"], message: /loader/ },
    { argv: ["list", "--transition-timeout", "0"], message: /transitionTimeoutMs/ },
    { argv: ["list", "--transition-timeout", "soon"], message: /transitionTimeoutMs/ },
    { argv: ["list", "--bogus"], message: /Unknown option/ },
    { argv: ["list", "--host-root"], message: /argument missing/ },
    { argv: ["sim-host", "init"], message: /kernelRelease/ },
    { argv: ["sim-host", "teleport"], message: /action/ },
    { argv: ["sim-host", "init", "--kernel-release", "r", "--lockdown", "max"], message: /lockdown/ },
  ])("refuses $argv", ({ argv, message }) => {
    const parsed = parseCli(argv, {});
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.message).toMatch(message);
  });

  it("remembers --json for usage errors", () => {
    expect(parseCli(["--json", "frobnicate"], {})).toMatchObject({ ok: false, json: true });
  });
});
