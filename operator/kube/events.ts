/** Kubernetes Events on KernelLivePatches (cluster-scoped objects' events live in `default`). */
import type { Logger } from "pino";
import type { KubeHttp } from "../../kube/http-client.ts";
import { API_VERSION, KIND } from "../../crds/schema.ts";

export interface EventRecorder {
  patchEvent(patch: { name: string; uid?: string | undefined }, type: "Normal" | "Warning", reason: string, message: string): void;
}

export function eventRecorder(http: KubeHttp, component: string, log: Logger): EventRecorder {
  return {
    patchEvent(patch, type, reason, message) {
      const now = new Date().toISOString();
      http
        .send("POST", "/api/v1/namespaces/default/events", {
          body: {
            metadata: { generateName: `${patch.name}.`, namespace: "default" },
            involvedObject: { apiVersion: API_VERSION, kind: KIND, name: patch.name, ...(patch.uid ? { uid: patch.uid } : {}) },
            type,
            reason,
            message,
            source: { component },
            firstTimestamp: now,
            lastTimestamp: now,
            count: 1,
          },
        })
        .catch((err: unknown) => log.warn({ err, reason }, "could not record event"));
    },
  };
}
