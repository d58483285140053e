// The local control plane: real etcd + kube-apiserver (+ optionally kube-controller-manager and
// kube-scheduler) on this machine, from the binaries scripts/toolchain/ensure-binaries.sh provides.
// No kubelet: pods get scheduled to Node objects that callers create, and stay Pending.
// Used by `npm start` (scripts/demo.ts), the test layers' global setups and the benchmarks.
//
// Two entry points:
//   startControlPlane(opts) -> ControlPlane         owns the processes (restartApiServer, stop)
//   attachControlPlane(dir) -> ControlPlaneClient   for another process (a vitest worker) that uses a
//                                                   control plane started elsewhere (global setup)
// And the binaries: ensureBinaries(names, log) -> the directory holding exactly those.
export type { ControlPlane, ControlPlaneClient } from "./types.ts";
export { startControlPlane } from "./start.ts";
export { attachControlPlane } from "./client.ts";
export { controlPlaneBinaries, ensureBinaries } from "./binaries.ts";
export { freePorts } from "./network.ts";
