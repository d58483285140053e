import { defineConfig } from "vitest/config";

// The layers (see README "Tests"): unit tests beside their source; integration tests against a
// real kube-apiserver started once per run by the global setup; a real kubelet node; real-kernel
// tests under QEMU; the whole stack on a VM node (kubelet in a QEMU guest).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["{crds,kube,kubectl-klp,runtime,operator,node-agent,scripts}/**/*.test.ts", "test/unit/**/*.test.ts"],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          globalSetup: ["test/support/global-setup.ts"],
          testTimeout: 180_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "node",
          include: ["test/node/**/*.test.ts"],
          globalSetup: ["test/node/global-setup.ts"],
          testTimeout: 300_000,
          hookTimeout: 1_200_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: "kernel",
          include: ["test/kernel/**/*.test.ts"],
          testTimeout: 600_000,
          hookTimeout: 1_200_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          // The whole stack on a real kernel: a QEMU guest that is a Kubernetes node (test/vm-node).
          name: "vm-node",
          include: ["test/vm-node/**/*.test.ts"],
          testTimeout: 900_000,
          hookTimeout: 3_600_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
