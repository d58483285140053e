/**
 * The agent's credentials for the API server, mounted into the agent container alone. The pod sets
 * automountServiceAccountToken: false, so the kubelet puts no token into its other containers (the
 * copying containers run module images' code: operator/agents/module-copy.ts); this volume is what
 * the kubelet's automount would have given the agent: a bound, rotated token of the pod's
 * ServiceAccount (with its node's and pod's names as claims), the cluster's CA and the namespace,
 * at the path in-cluster clients read (kube/connection.ts).
 */
import type { V1Volume, V1VolumeMount } from "@kubernetes/client-node";

const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME = "kube-api-access";

/** The kubelet's own choice for automounted tokens: it refreshes them at 80% of their life. */
const TOKEN_SECONDS = 3607;

export const API_ACCESS_VOLUME: V1Volume = {
  name: VOLUME,
  projected: {
    defaultMode: 0o644,
    sources: [
      { serviceAccountToken: { path: "token", expirationSeconds: TOKEN_SECONDS } },
      { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
      { downwardAPI: { items: [{ path: "namespace", fieldRef: { apiVersion: "v1", fieldPath: "metadata.namespace" } }] } },
    ],
  },
};

export const API_ACCESS_MOUNT: V1VolumeMount = { name: VOLUME, mountPath: SERVICE_ACCOUNT_DIR, readOnly: true };
