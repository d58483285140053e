// Values the integration global setup (test/support/global-setup.ts) provides to test files:
// `inject("kubeconfig")` etc. from "vitest".
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin kubeconfig (O=system:masters, credentials embedded) of the shared control plane. */
    kubeconfig: string;
    /** Working dir of the shared control plane: `attachControlPlane(dir)` gives a client handle. */
    controlPlaneDir: string;
    /** Directory holding etcd, kube-apiserver, ..., kubectl, kubelet, helm (v1.37.2). */
    binDir: string;
  }
}
