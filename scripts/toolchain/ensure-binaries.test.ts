// ensure-binaries.sh's choices, with fake binaries (empty executables) and KLP_NO_BUILD so that
// nothing is ever built: which directory it prints, and what it says it would build.
import { execFile } from "node:child_process";
import { mkdtemp, readlink, writeFile, mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";

const SCRIPT = path.join(import.meta.dirname, "ensure-binaries.sh");

async function fakeBins(dir: string, names: string[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  await Promise.all(names.map((n) => writeFile(path.join(dir, n), "", { mode: 0o755 })));
  return dir;
}

function ensure(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const clean = { ...process.env };
    delete clean.KUBEBUILDER_ASSETS;
    execFile("bash", [SCRIPT, ...args], { env: { ...clean, KLP_NO_BUILD: "1", ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code) : 0, stdout: stdout.trim(), stderr }),
    );
  });
}

async function setup(assets: string[], cached: string[]) {
  const root = await mkdtemp(path.join(os.tmpdir(), "klp-ensure-"));
  const cache = path.join(root, "cache");
  const out = await fakeBins(path.join(cache, "k8s-v1.37.2"), cached);
  const assetsDir = await fakeBins(path.join(root, "assets"), assets);
  return { env: { KLP_CACHE: cache, KUBEBUILDER_ASSETS: assetsDir }, out, assetsDir };
}

describe("ensure-binaries.sh", () => {
  it("prints KUBEBUILDER_ASSETS when it holds every binary asked for (envtest assets: no kubelet, no helm)", async () => {
    const { env, assetsDir } = await setup(["etcd", "kube-apiserver", "kubectl"], []);
    expect(await ensure(["etcd", "kube-apiserver", "kubectl"], env)).toMatchObject({ code: 0, stdout: assetsDir });
  });

  it("takes each binary from KUBEBUILDER_ASSETS when there, the others from the cache", async () => {
    const { env, out, assetsDir } = await setup(["etcd", "kube-apiserver", "kubectl"], ["helm"]);
    const r = await ensure(["etcd", "kube-apiserver", "kubectl", "helm"], env);
    expect(r.code, r.stderr).toBe(0);
    expect(await readlink(path.join(r.stdout, "etcd"))).toBe(path.join(assetsDir, "etcd"));
    expect(await readlink(path.join(r.stdout, "helm"))).toBe(path.join(out, "helm"));
  });

  it("prints the cache when the binaries asked for are there", async () => {
    const { out } = await setup([], ["etcd", "kube-apiserver", "kubectl"]);
    expect(await ensure(["etcd", "kube-apiserver", "kubectl"], { KLP_CACHE: path.dirname(out) })).toMatchObject({ code: 0, stdout: out });
  });

  it("would build only what was asked for and is missing", async () => {
    const { env } = await setup(["etcd"], ["kubectl"]);
    const r = await ensure(["etcd", "kube-apiserver", "kubectl"], env);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(": kube-apiserver (KLP_NO_BUILD is set");
  });

  it("refuses to guess: no binary named, or an unknown one, is a usage error", async () => {
    const { env } = await setup([], []);
    expect((await ensure([], env)).code).toBe(2);
    expect((await ensure(["kube-apiserver", "kube-dns"], env)).code).toBe(2);
  });
});
