// vitest globalSetup of the `node` project: checks that this machine can run a kubelet (else says
// why and provides `realNodeUnavailable`, and the suite skips), installs and builds what a node
// needs (scripts/node/ensure-tools.sh), plans the node's veth addresses and starts a control plane
// whose API server the node's Service path can reach (bound to 0.0.0.0, advertising the veth's host
// address: see test/support/real-node.ts). The node itself is started by the test file, which owns it.
// Env: KLP_SKIP_REAL_NODE (skip as if the machine could not run a kubelet), KLP_KEEP_CONTROL_PLANE,
// KLP_KEEP_REAL_NODE (keep the dirs and logs), KLP_CACHE, KLP_NO_BUILD, KLP_NO_IMAGE_BUILD.
import { mkdtemp } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { startControlPlane, type ControlPlane } from "../../scripts/dev/control-plane/index.ts";
import { ensureNodeTools, planNodeNetwork, realNodeApiServerArgs, realNodeSupport } from "../support/real-node.ts";

const say = (line: string) => process.stderr.write(`[node setup] ${line}\n`);

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const support = process.env.KLP_SKIP_REAL_NODE
    ? ({ ok: false, reason: `KLP_SKIP_REAL_NODE is set (${process.env.KLP_SKIP_REAL_NODE})` } as const)
    : await realNodeSupport();
  if (!support.ok) {
    say(`this machine cannot run a kubelet, the real-node suite skips: ${support.reason}`);
    project.provide("realNodeUnavailable", support.reason);
    return async () => {};
  }
  project.provide("realNodeUnavailable", "");

  let t = performance.now();
  const tools = await ensureNodeTools(say);
  say(`node tools ready in ${Math.round(performance.now() - t)} ms: ${JSON.stringify(tools)}`);
  const network = await planNodeNetwork();

  const keep = !!process.env.KLP_KEEP_CONTROL_PLANE;
  const dir = await mkdtemp(path.join(os.tmpdir(), "klp-node-cp-"));
  t = performance.now();
  let cp: ControlPlane;
  try {
    cp = await startControlPlane({ dir, binDir: tools.binDir, keep, controllers: true, extraApiServerArgs: realNodeApiServerArgs(network), log: say });
  } catch (e) {
    throw new Error(`could not start the control plane of the real-node suite (dir ${dir}):\n${(e as Error).message}`);
  }
  say(`control plane ${cp.server} ready in ${Math.round(performance.now() - t)} ms; advertising ${network.hostIp}`);

  // No process.env.KUBECONFIG here (unlike the integration setup): run beside that project in one
  // vitest process, it would point the other project's workers at this control plane.
  project.provide("kubeconfig", cp.kubeconfigPath);
  project.provide("controlPlaneDir", cp.dir);
  project.provide("binDir", cp.binDir);
  project.provide("realNodeNetwork", JSON.stringify(network));
  project.provide("realNodeTools", JSON.stringify(tools));

  return async () => {
    say(`stopping control plane (RSS KiB at the end: ${JSON.stringify(await cp.memory().catch(() => ({})))})`);
    await cp.stop();
  };
}
