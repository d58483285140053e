// lib.sh's drop_stale_containerd_pidfile: dockerd reuses the containerd its exec root's pid file
// names when that pid is alive, so a pid file left by a killed daemon whose pid now belongs to some
// other process makes every later dockerd start time out. The pid file goes unless it names a live
// containerd (a process whose comm is "containerd": here a copy of sleep under that name).
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { copyFile, mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const LIB = path.join(import.meta.dirname, "lib.sh");
const children: ChildProcess[] = [];
afterEach(() => children.splice(0).forEach((c) => c.kill()));

function drop(execRoot: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("bash", ["-c", `. "$0" && drop_stale_containerd_pidfile "$1"`, LIB, execRoot], (err, _out, stderr) =>
      err ? reject(err) : resolve(stderr),
    ),
  );
}

async function execRootNaming(child: ChildProcess, withNewline: boolean): Promise<string> {
  const root = await mkdtemp(path.join(os.tmpdir(), "klp-docker-exec-"));
  await mkdir(path.join(root, "containerd"));
  await writeFile(path.join(root, "containerd/containerd.pid"), `${child.pid}${withNewline ? "\n" : ""}`);
  return root;
}

function start(binary: string): ChildProcess {
  const child = spawn(binary, ["60"], { stdio: "ignore" });
  children.push(child);
  return child;
}

describe("drop_stale_containerd_pidfile", () => {
  it.each([false, true])("drops a pid file naming a live process that is not containerd (newline: %s)", async (nl) => {
    const root = await execRootNaming(start("sleep"), nl);
    expect(await drop(root)).toContain("not a running containerd");
    expect(existsSync(path.join(root, "containerd/containerd.pid"))).toBe(false);
  });

  it("keeps a pid file naming a live containerd", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "klp-fake-containerd-"));
    const binary = path.join(dir, "containerd");
    await copyFile("/bin/sleep", binary);
    const child = start(binary);
    await new Promise((r) => setTimeout(r, 100));
    const root = await execRootNaming(child, true);
    expect(await drop(root)).toBe("");
    expect(existsSync(path.join(root, "containerd/containerd.pid"))).toBe(true);
  });

  it("does nothing when there is no pid file", async () => {
    expect(await drop(await mkdtemp(path.join(os.tmpdir(), "klp-docker-exec-")))).toBe("");
  });
});
