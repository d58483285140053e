import { mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { controlPlaneBinaries, resolveBinDir } from "./binaries.ts";

/** A directory holding empty executables with these names. */
async function binDir(names: string[]): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "klp-bin-"));
  await Promise.all(names.map((n) => writeFile(path.join(dir, n), "", { mode: 0o755 })));
  return dir;
}

describe("controlPlaneBinaries", () => {
  it.each([
    [false, ["etcd", "kube-apiserver", "kubectl"]],
    [true, ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]],
  ])("controllers %s: %j", (controllers, want) => {
    expect(controlPlaneBinaries(controllers)).toEqual(want);
  });
});

describe("resolveBinDir with an explicit directory", () => {
  it("needs no controller-manager or scheduler for a control plane without controllers", async () => {
    const dir = await binDir(["etcd", "kube-apiserver", "kubectl"]);
    await expect(resolveBinDir(dir, controlPlaneBinaries(false))).resolves.toBe(dir);
  });

  it("names what is missing for one with controllers", async () => {
    const dir = await binDir(["etcd", "kube-apiserver", "kubectl"]);
    await expect(resolveBinDir(dir, controlPlaneBinaries(true))).rejects.toThrow(`binDir ${dir} lacks kube-controller-manager, kube-scheduler`);
  });
});
