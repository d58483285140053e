import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { buildSimModule } from "../sim/build-module.ts";
import { layoutSimHost } from "../sim/layout.ts";
import { runCli } from "./run.ts";

const RELEASE = "6.1.0-56-amd64";
let dir: string;
let root: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kpatch-cli-"));
  root = path.join(dir, "host");
  await layoutSimHost(root, { kernelRelease: RELEASE, transitionMs: 0 });
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

async function cli(...argv: string[]): Promise<Result> {
  let stdout = "";
  let stderr = "";
  const code = await runCli(["--host-root", root, ...argv], {
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
    env: {},
    cwd: dir,
    log: pino({ level: "silent" }),
  });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    // human output
  }
  return { code, stdout, stderr, json };
}

async function moduleFile(name: string, options: { replace?: boolean; vermagic?: string; livepatch?: boolean } = {}) {
  const file = path.join(dir, `${name.replaceAll("_", "-")}.ko`);
  await writeFile(file, buildSimModule({ name, vermagic: options.vermagic ?? RELEASE, ...options }));
  return file;
}

describe("kpatch-agent (in process, simulated host)", () => {
  it("install, load, list, unload, uninstall", async () => {
    const file = await moduleFile("livepatch_fix");
    expect(await cli("install", file)).toMatchObject({ code: 0, stdout: `installing livepatch-fix.ko (${RELEASE})\n`, stderr: "" });

    const load = await cli("--json", "load", "livepatch_fix");
    expect(load).toMatchObject({ code: 0, json: { ok: true, name: "livepatch_fix", replaced: [], alreadyLoaded: false } });
    expect(typeof load.json.transitionMs).toBe("number");

    expect((await cli("list")).stdout).toBe(
      [
        "Loaded patch modules:",
        "livepatch_fix [enabled]",
        "",
        "Installed patch modules:",
        `livepatch_fix (${RELEASE})`,
        "",
        "tainted: 45056 (OEK)",
        "",
      ].join("\n"),
    );
    const list = await cli("list", "--json");
    expect(list.json).toMatchObject({
      ok: true,
      kernelRelease: RELEASE,
      bootId: expect.any(String),
      tainted: 45056,
      taintFlags: "OEK",
      livepatches: [{ name: "livepatch_fix", enabled: true, transition: false, state: "enabled" }],
      installed: [{ name: "livepatch_fix", kernelRelease: RELEASE, running: true, file: `/var/lib/kpatch/${RELEASE}/livepatch_fix.ko` }],
    });

    expect(await cli("unload", "livepatch_fix")).toMatchObject({
      code: 0,
      stdout: "disabling patch module: livepatch_fix\nunloading patch module: livepatch_fix\n",
    });
    expect(await cli("--json", "uninstall", "livepatch_fix")).toMatchObject({ code: 0, json: { ok: true, removed: expect.any(String) } });
    expect((await cli("--json", "list")).json).toMatchObject({ livepatches: [], installed: [] });
  });

  it("fails with exit 1, one stderr line and a JSON reason", async () => {
    const r = await cli("--json", "load", "missing_fix");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`kpatch-agent: NotInstalled: no module missing_fix is installed for kernel ${RELEASE}\n`);
    expect(r.json).toEqual({ ok: false, reason: "NotInstalled", message: `no module missing_fix is installed for kernel ${RELEASE}` });
  });

  it.each([
    { args: (f: string) => ["install", "-k", "6.1.0-1-amd64", f], reason: "VermagicMismatch" },
    { args: (f: string) => ["install", "--sha256", "0".repeat(64), f], reason: "ChecksumMismatch" },
    { args: () => ["install", "/no/such.ko"], reason: "HostIOError" },
    { args: () => ["uninstall", "livepatch_fix"], reason: "NotInstalled" },
    { args: () => ["info", "livepatch_fix"], reason: "NotInstalled" },
  ])("$reason", async ({ args, reason }) => {
    const r = await cli("--json", ...args(await moduleFile("livepatch_fix")));
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ ok: false, reason });
    expect(r.stderr).toMatch(new RegExp(`^kpatch-agent: ${reason}: .+\\n$`));
  });

  it("refuses non-livepatch and other-release files given to load", async () => {
    expect((await cli("--json", "load", await moduleFile("plain", { livepatch: false }))).json).toMatchObject({ reason: "NotALivepatch" });
    expect((await cli("--json", "load", await moduleFile("old", { vermagic: "6.1.0-1-amd64" }))).json).toMatchObject({
      reason: "VermagicMismatch",
    });
  });

  it("reports atomic replace", async () => {
    await cli("install", await moduleFile("fix_v1"));
    await cli("install", await moduleFile("fix_v2", { replace: true }));
    await cli("load", "fix_v1");
    const r = await cli("load", "fix_v2");
    expect(r.stdout).toContain("replaced fix_v1");
    expect((await cli("--json", "load", "fix_v2")).json).toMatchObject({ alreadyLoaded: true });
    expect((await cli("list")).stdout).toContain("Leftover patch modules");
    expect((await cli("--json", "unload", "--all")).json).toMatchObject({ ok: true, unloaded: ["fix_v2", "fix_v1"] });
  });

  it("load --all fails as a whole when one module fails, listing every result", async () => {
    await cli("install", await moduleFile("fix_a"));
    await cli("install", await moduleFile("fix_b"));
    await cli("sim-host", "configure", "--sig-enforce");
    const r = await cli("--json", "load", "--all");
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ ok: false, reason: "SignatureRejected", details: { loaded: [], failed: [{ name: "fix_a" }, { name: "fix_b" }] } });
  });

  it("status reports blockers", async () => {
    await cli("sim-host", "configure", "--modules-disabled");
    const r = await cli("--json", "status");
    expect(r.json).toMatchObject({ ok: true, preflight: { modulesDisabled: true, blockers: [{ reason: "ModulesDisabled" }] }, host: {} });
    expect((await cli("status")).stdout).toContain("  ModulesDisabled: module loading is disabled");
  });

  it("a stalled load is reversed and reported with the tasks", async () => {
    await cli("install", await moduleFile("livepatch_fix"));
    await cli("sim-host", "configure", "--stall");
    const r = await cli("--json", "--transition-timeout", "0.3", "load", "livepatch_fix");
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({
      ok: false,
      reason: "TransitionStalled",
      details: { reversed: true, removed: true, stalledTasks: [{ pid: 4242, comm: "stuck-worker" }, { tid: 4243 }] },
    });
  });

  it("info describes a file", async () => {
    const r = await cli("--json", "info", await moduleFile("livepatch_fix"));
    expect(r.json).toMatchObject({ ok: true, module: { name: "livepatch_fix", livepatch: true, kernelRelease: RELEASE }, installed: [] });
  });

  it("usage errors exit 2", async () => {
    expect(await cli("load")).toMatchObject({ code: 2, stdout: "" });
    expect((await cli("--json", "load")).json).toMatchObject({ ok: false, reason: "UsageError" });
    expect((await cli("--help")).stdout).toContain("usage: kpatch-agent");
  });

  it("sim-host reboot clears the kernel", async () => {
    await cli("install", await moduleFile("livepatch_fix"));
    await cli("load", "livepatch_fix");
    const before = (await cli("--json", "list")).json;
    const reboot = await cli("--json", "sim-host", "reboot");
    expect(reboot).toMatchObject({ code: 0, json: { ok: true, bootId: expect.any(String) } });
    const after = (await cli("--json", "list")).json;
    expect(after.bootId).not.toBe(before.bootId);
    expect(after).toMatchObject({ tainted: 0, livepatches: [], installed: [{ name: "livepatch_fix" }] });
  });
});
