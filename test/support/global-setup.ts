// vitest globalSetup of the `integration` project: one real control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler; no kubelet) for the whole run, and helm for the chart tests.
// Test files: `inject("kubeconfig")`, `inject("controlPlaneDir")` + `attachControlPlane(dir)`,
// `inject("binDir")`; process.env.KUBECONFIG is also set before workers start.
// Env: KLP_SKIP_INTEGRATION (refuse to run), KLP_KEEP_CONTROL_PLANE (keep its dir and logs),
// KUBEBUILDER_ASSETS / KLP_CACHE / KLP_NO_BUILD (see scripts/toolchain/ensure-binaries.sh).
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { controlPlaneBinaries, ensureBinaries, startControlPlane, type ControlPlane } from "../../scripts/dev/control-plane/index.ts";

// The control plane with its controllers, and helm for the chart tests (no kubelet: that is the node layers').
const INTEGRATION_BINARIES = [...controlPlaneBinaries(true), "helm"] as const;

const say = (line: string) => process.stderr.write(`[integration setup] ${line}\n`);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.KLP_SKIP_INTEGRATION) {
    throw new Error(
      "KLP_SKIP_INTEGRATION is set: the integration project needs a real control plane and will not pass without one. " +
        "Run `npx vitest run --project unit` instead, or unset KLP_SKIP_INTEGRATION.",
    );
  }

  let t = performance.now();
  let binDir: string;
  try {
    binDir = await ensureBinaries(INTEGRATION_BINARIES, (line) => say(line));
  } catch (e) {
    throw new Error(
      `integration tests need the Kubernetes v1.37.2 binaries and they could not be obtained ` +
        `(scripts/toolchain/ensure-binaries.sh; set KUBEBUILDER_ASSETS to a directory holding them to skip the build):\n${(e as Error).message}`,
    );
  }
  say(`binaries in ${binDir} (check/build took ${Math.round(performance.now() - t)} ms)`);

  const keep = !!process.env.KLP_KEEP_CONTROL_PLANE;
  const dir = await mkdtemp(path.join(os.tmpdir(), "klp-integration-"));
  t = performance.now();
  let cp: ControlPlane;
  try {
    cp = await startControlPlane({ dir, binDir, keep, controllers: true, log: say });
  } catch (e) {
    throw new Error(`could not start the integration control plane (dir ${dir}):\n${(e as Error).message}`);
  }
  say(`control plane ${cp.server} ready in ${Math.round(performance.now() - t)} ms ${JSON.stringify(cp.timings)}; dir ${dir}${keep ? " (kept)" : ""}`);

  process.env.KUBECONFIG = cp.kubeconfigPath;
  project.provide("kubeconfig", cp.kubeconfigPath);
  project.provide("controlPlaneDir", cp.dir);
  project.provide("binDir", cp.binDir);

  return async () => {
    const mem = await cp.memory().catch(() => ({}));
    say(`stopping control plane (RSS KiB at the end: ${JSON.stringify(mem)})`);
    await cp.stop();
  };
}
