// Values the real-node global setup (test/node/global-setup.ts) provides beside the shared ones of
// test/support/provided.d.ts (kubeconfig, controlPlaneDir, binDir).
import "vitest";

declare module "vitest" {
  export interface ProvidedContext {
    /** Why this machine cannot run a real node ("" when it can; then everything below is set). */
    realNodeUnavailable: string;
    /** JSON of the NodeNetwork the control plane was started for (test/support/real-node.ts). */
    realNodeNetwork: string;
    /** JSON of the NodeTools scripts/node/ensure-tools.sh reported. */
    realNodeTools: string;
  }
}
