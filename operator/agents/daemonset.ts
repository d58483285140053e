/**
 * The one agent DaemonSet for all patches. One agent per node serializes every host operation on
 * that node and sees every patch (cumulative replace modules of different patches would otherwise
 * fight over the kernel). Its affinity is the union of the patches' node selectors, its tolerations
 * the union of theirs. Pure: the same patches always give the same object, so the controller only
 * writes when something really changed (an update restarts agents; restarts never unload patches).
 */
import type { V1Container, V1DaemonSet, V1NodeSelectorTerm, V1Toleration } from "@kubernetes/client-node";
import type { KernelLivePatch, LabelSelector, Toleration } from "../../crds/schema.ts";
import type { OperatorConfig } from "../config.ts";

export const AGENT_LABELS = { "app.kubernetes.io/name": "kpatch-agent", "app.kubernetes.io/part-of": "kpatch-operator" } as const;
export const AGENT_HOST_MOUNT = "/host";

type AgentConfig = Pick<
  OperatorConfig,
  | "KLP_NAMESPACE"
  | "KLP_AGENT_IMAGE"
  | "KLP_AGENT_IMAGE_PULL_POLICY"
  | "KLP_AGENT_SERVICE_ACCOUNT"
  | "KLP_AGENT_DAEMONSET"
  | "KLP_AGENT_HOST_ROOT"
  | "KLP_AGENT_TOLERATIONS"
  | "KLP_AGENT_NODE_SELECTOR"
  | "KLP_AGENT_PRIORITY_CLASS"
  | "KLP_AGENT_LOG_LEVEL"
  | "KLP_AGENT_METRICS_PORT"
  | "KLP_AGENT_LOADER"
  | "KLP_AGENT_MAX_MODULE_BYTES"
  | "KLP_AGENT_CPU_REQUEST"
  | "KLP_AGENT_MEMORY_REQUEST"
  | "KLP_AGENT_MEMORY_LIMIT"
>;

/** One ORed term per distinct selector; undefined when some patch targets every node. */
export function unionAffinity(selectors: ReadonlyArray<LabelSelector | undefined>): V1NodeSelectorTerm[] | undefined {
  const terms = new Map<string, V1NodeSelectorTerm>();
  for (const s of selectors) {
    const expressions = [
      ...Object.entries(s?.matchLabels ?? {}).map(([key, v]) => ({ key, operator: "In", values: [v] })),
      ...(s?.matchExpressions ?? []).map((e) => ({ key: e.key, operator: e.operator, ...(e.values ? { values: [...e.values].sort() } : {}) })),
    ].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
    if (expressions.length === 0) return undefined;
    terms.set(JSON.stringify(expressions), { matchExpressions: expressions });
  }
  return [...terms.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, t]) => t);
}

export function unionTolerations(lists: ReadonlyArray<readonly Toleration[] | undefined>): V1Toleration[] {
  const all = new Map<string, V1Toleration>();
  for (const t of lists.flatMap((l) => l ?? [])) {
    const clean = Object.fromEntries(Object.entries(t).filter(([, v]) => v !== undefined)) as V1Toleration;
    all.set(JSON.stringify(clean, Object.keys(clean).sort()), clean);
  }
  return [...all.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, t]) => t);
}

/** Module files from image sources, copied by init containers into the pod's module volume. */
export function imageSources(patches: readonly KernelLivePatch[]): Array<{ reference: string; path: string; sha256: string }> {
  const all = new Map<string, { reference: string; path: string; sha256: string }>();
  for (const p of patches) for (const m of p.spec.modules) if (m.image) all.set(m.sha256, { ...m.image, sha256: m.sha256 });
  return [...all.values()].sort((a, b) => a.sha256.localeCompare(b.sha256));
}

export const IMAGE_MODULES_DIR = "/var/run/kpatch-agent/modules";

/**
 * With a metrics port the agent serves /healthz and /readyz there. Readiness (first pass done)
 * paces the DaemonSet's rolling update; liveness fails only when the loop is wedged for longer
 * than a load can take, and a restart is safe: the agent never unloads on exit.
 */
function agentProbes(port: number): Pick<V1Container, "ports" | "livenessProbe" | "readinessProbe"> {
  if (port <= 0) return {};
  return {
    ports: [{ name: "metrics", containerPort: port, protocol: "TCP" }],
    readinessProbe: { httpGet: { path: "/readyz", port: "metrics" }, periodSeconds: 10, failureThreshold: 3 },
    livenessProbe: { httpGet: { path: "/healthz", port: "metrics" }, initialDelaySeconds: 10, periodSeconds: 20, timeoutSeconds: 5, failureThreshold: 3 },
  };
}

/**
 * `stillToClean`: nodes no selector targets any more but where a patch is not yet unloaded; the
 * agent must keep running there until it has cleaned up.
 */
export function desiredAgentDaemonSet(
  patches: readonly KernelLivePatch[],
  cfg: AgentConfig,
  stillToClean: readonly string[] = [],
): V1DaemonSet | undefined {
  if (patches.length === 0) return undefined;
  const ordered = [...patches].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const selectorTerms = unionAffinity(ordered.map((p) => p.spec.nodeSelector));
  const terms =
    selectorTerms && stillToClean.length > 0
      ? [...selectorTerms, { matchFields: [{ key: "metadata.name", operator: "In", values: [...new Set(stillToClean)].sort() }] }]
      : selectorTerms;
  const tolerations = unionTolerations([cfg.KLP_AGENT_TOLERATIONS, ...ordered.map((p) => p.spec.tolerations)]);
  const hostRoot = cfg.KLP_AGENT_HOST_ROOT.replace(/\/+$/, "");
  const hostPath = (p: string) => `${hostRoot}${p}`;
  const images = imageSources(ordered);
  // A simulated host keeps its fake kernel's state beside the tree and writes /proc itself.
  const sim = cfg.KLP_AGENT_LOADER === "sim";
  return {
    apiVersion: "apps/v1",
    kind: "DaemonSet",
    metadata: { name: cfg.KLP_AGENT_DAEMONSET, namespace: cfg.KLP_NAMESPACE, labels: { ...AGENT_LABELS } },
    spec: {
      selector: { matchLabels: { ...AGENT_LABELS } },
      // An agent restart never unloads a patch, so rolling agents is safe; one node at a time keeps
      // the fleet's view continuous.
      updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: { labels: { ...AGENT_LABELS } },
        spec: {
          serviceAccountName: cfg.KLP_AGENT_SERVICE_ACCOUNT,
          ...(cfg.KLP_AGENT_PRIORITY_CLASS ? { priorityClassName: cfg.KLP_AGENT_PRIORITY_CLASS } : {}),
          ...(Object.keys(cfg.KLP_AGENT_NODE_SELECTOR).length > 0 ? { nodeSelector: { ...cfg.KLP_AGENT_NODE_SELECTOR } } : {}),
          ...(terms ? { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } } : {}),
          ...(tolerations.length > 0 ? { tolerations } : {}),
          // Long enough to finish a transition wait before SIGKILL; the agent never unloads on exit.
          terminationGracePeriodSeconds: 90,
          initContainers: images.map((img, i) => ({
            name: `module-${i}`,
            image: img.reference,
            imagePullPolicy: cfg.KLP_AGENT_IMAGE_PULL_POLICY,
            command: ["cp", img.path, `${IMAGE_MODULES_DIR}/${img.sha256}.ko`],
            volumeMounts: [{ name: "image-modules", mountPath: IMAGE_MODULES_DIR }],
          })),
          containers: [
            {
              name: "agent",
              image: cfg.KLP_AGENT_IMAGE,
              imagePullPolicy: cfg.KLP_AGENT_IMAGE_PULL_POLICY,
              env: [
                { name: "NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
                { name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
                { name: "KPATCH_HOST_ROOT", value: AGENT_HOST_MOUNT },
                { name: "KPATCH_IMAGE_MODULES_DIR", value: IMAGE_MODULES_DIR },
                { name: "LOG_LEVEL", value: cfg.KLP_AGENT_LOG_LEVEL },
                { name: "KPATCH_MAX_MODULE_BYTES", value: String(cfg.KLP_AGENT_MAX_MODULE_BYTES) },
                ...(cfg.KLP_AGENT_LOADER !== "auto" ? [{ name: "KPATCH_LOADER", value: cfg.KLP_AGENT_LOADER }] : []),
                ...(cfg.KLP_AGENT_METRICS_PORT > 0 ? [{ name: "METRICS_PORT", value: String(cfg.KLP_AGENT_METRICS_PORT) }] : []),
              ],
              ...agentProbes(cfg.KLP_AGENT_METRICS_PORT),
              // insmod and writes to /sys/kernel/livepatch need CAP_SYS_MODULE and a writable sysfs.
              securityContext: { privileged: true },
              resources: {
                requests: { cpu: cfg.KLP_AGENT_CPU_REQUEST, memory: cfg.KLP_AGENT_MEMORY_REQUEST.text },
                limits: { memory: cfg.KLP_AGENT_MEMORY_LIMIT.text },
              },
              volumeMounts: [
                { name: "host-kpatch", mountPath: `${AGENT_HOST_MOUNT}/var/lib/kpatch` },
                { name: "host-sys", mountPath: `${AGENT_HOST_MOUNT}/sys` },
                { name: "host-proc", mountPath: `${AGENT_HOST_MOUNT}/proc`, readOnly: !sim },
                { name: "image-modules", mountPath: IMAGE_MODULES_DIR, readOnly: true },
                ...(sim ? [{ name: "host-sim", mountPath: `${AGENT_HOST_MOUNT}/.kpatch-sim` }] : []),
              ],
            },
          ],
          volumes: [
            { name: "host-kpatch", hostPath: { path: hostPath("/var/lib/kpatch"), type: "DirectoryOrCreate" } },
            { name: "host-sys", hostPath: { path: hostPath("/sys"), type: "Directory" } },
            { name: "host-proc", hostPath: { path: hostPath("/proc"), type: "Directory" } },
            { name: "image-modules", emptyDir: {} },
            ...(sim ? [{ name: "host-sim", hostPath: { path: hostPath("/.kpatch-sim"), type: "Directory" } }] : []),
          ],
        },
      },
    },
  };
}
