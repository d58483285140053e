import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundle, REPO } from "../../scripts/bundle.ts";

/** The CLI as the QEMU test and a node run it: a child process, exit code, stdout and stderr. */

const RELEASE = "6.1.0-56-amd64";
let dir: string;
let bundled: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kpatch-spawn-"));
  bundled = path.join(dir, "bin", "kpatch-agent.mjs"); // outside the repo: no node_modules to lean on
  await bundle("node-agent/cli.ts", bundled);
}, 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function run(command: string[], cwd = dir) {
  const r = spawnSync(process.execPath, command, { cwd, encoding: "utf8", timeout: 30_000, env: { PATH: process.env.PATH ?? "" } });
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(r.stdout) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, json };
}

describe("bundled kpatch-agent.mjs", () => {
  const agent = (...args: string[]) => run([bundled, "--host-root", path.join(dir, "host"), ...args]);

  it("drives a simulated host end to end with only node and the bundle", () => {
    expect(agent("sim-host", "init", "--kernel-release", RELEASE, "--transition-ms", "50")).toMatchObject({ code: 0 });
    expect(agent("sim-host", "make-module", "--name", "fix_v1", "--vermagic", RELEASE, "-o", "v1.ko")).toMatchObject({ code: 0 });
    expect(agent("sim-host", "make-module", "--name", "fix_v2", "--vermagic", RELEASE, "--replace", "-o", "v2.ko")).toMatchObject({
      code: 0,
    });
    expect(agent("--json", "install", "v1.ko")).toMatchObject({ code: 0, json: { ok: true, name: "fix_v1" } });
    expect(agent("--json", "install", "v2.ko")).toMatchObject({ code: 0, json: { ok: true, name: "fix_v2" } });
    expect(agent("--json", "load", "fix_v1")).toMatchObject({ code: 0, json: { ok: true, name: "fix_v1", replaced: [] } });
    expect(agent("--json", "load", "fix_v2")).toMatchObject({ code: 0, json: { ok: true, name: "fix_v2", replaced: ["fix_v1"] } });
    expect(agent("--json", "list")).toMatchObject({
      code: 0,
      json: { tainted: 45056, taintFlags: "OEK", livepatches: [{ name: "fix_v2", state: "enabled" }] },
    });
    expect(agent("--json", "unload", "--all")).toMatchObject({ code: 0, json: { ok: true } });
    expect(agent("list").stdout).toContain("Loaded patch modules:\n\nInstalled patch modules:\nfix_v1 (6.1.0-56-amd64)\nfix_v2 (6.1.0-56-amd64)\n");
  });

  it("exits 1 with one stderr line and a JSON reason on failure", () => {
    agent("sim-host", "init", "--kernel-release", RELEASE);
    const r = agent("--json", "load", "nothing_here");
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`kpatch-agent: NotInstalled: no module nothing_here is installed for kernel ${RELEASE}\n`);
    expect(r.json).toMatchObject({ ok: false, reason: "NotInstalled" });
  });

  it("exits 2 on a usage error", () => {
    const r = agent("--json", "load");
    expect(r.code).toBe(2);
    expect(r.json).toMatchObject({ ok: false, reason: "UsageError" });
  });
});

describe("kpatch-agent through tsx", () => {
  it("runs from source", () => {
    const root = path.join(dir, "tsx-host");
    const tsx = ["--import", "tsx", path.join(REPO, "node-agent/cli.ts"), "--host-root", root];
    expect(run([...tsx, "sim-host", "init", "--kernel-release", RELEASE], REPO)).toMatchObject({ code: 0 });
    expect(run([...tsx, "--json", "status"], REPO)).toMatchObject({
      code: 0,
      json: { ok: true, preflight: { kernelRelease: RELEASE, blockers: [] }, host: { livepatches: [] } },
    });
  });
});
