/**
 * The one agent DaemonSet for all patches. One agent per node serializes every host operation on
 * that node and sees every patch (cumulative replace modules of different patches would otherwise
 * fight over the kernel). Its affinity is the union of the patches' node selectors, its tolerations
 * the union of theirs. Pure: the same patches always give the same object, so the controller only
 * writes when something really changed (an update restarts agents; restarts never unload patches).
 */
import type { V1Container, V1DaemonSet, V1NodeSelectorTerm, V1SecurityContext, V1Toleration, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import type { KernelLivePatch, LabelSelector, Toleration } from "../../crds/schema.ts";
import type { OperatorConfig } from "../config.ts";
import { API_ACCESS_MOUNT, API_ACCESS_VOLUME } from "./api-access-volume.ts";
import { AGENT_MODULES_MOUNT, IMAGE_MODULES_DIR, agentPullSecrets, imageModules, moduleCopyContainers, moduleCopyVolumes } from "./module-copy.ts";

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
  | "KLP_AGENT_PRIVILEGED"
  | "KLP_AGENT_ALLOW_WITHOUT_NODE_WRITE_POLICY"
  | "KLP_AGENT_MAX_MODULE_BYTES"
  | "KLP_AGENT_CPU_REQUEST"
  | "KLP_AGENT_MEMORY_REQUEST"
  | "KLP_AGENT_MEMORY_LIMIT"
  | "KLP_AGENT_IMAGE_PULL_SECRETS"
  | "KLP_AGENT_MODULE_COPY_UID"
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
 * What the agent container may do, and what of the host it sees. Capabilities (all others dropped):
 * - SYS_MODULE: finit_module(2) (insmod) and delete_module(2) (rmmod). containerd's RuntimeDefault
 *   seccomp profile allows those system calls exactly when this capability is in the bounding set.
 * Nothing else: the agent runs as uid 0 so that it owns what it writes on the host
 * (/var/lib/kpatch) and may write /sys/kernel/livepatch/<m>/enabled (root's 0644), which needs no
 * capability beyond being the owner. Not granted, with what that costs: SYS_ADMIN and SYS_PTRACE,
 * which /proc/<pid>/stack of a task that stalls a transition needs (a stall report lists the tasks
 * without their kernel stacks; the agent says so at start), and DAC_OVERRIDE, without which the
 * patch_state of another user's task (mode 0400, its owner's) is unreadable, so such a task is not
 * listed. Without SYS_PTRACE the kernel also refuses the agent /proc/<pid>/root, cwd, environ and
 * mem of the host's processes (ptrace access needs the target's capabilities to be a subset of the
 * agent's), so the host's /proc it reads does not reach the host's filesystem.
 * `privileged` restores the former pod for runtimes or kernels that need it
 * (charts/kpatch-operator/README.md).
 */
export const AGENT_CAPABILITIES = ["SYS_MODULE"] as const;

interface HostMount {
  /** Volume name. */
  name: string;
  /** Host path (under the host root). */
  path: string;
  readOnly: boolean;
  type: "Directory" | "DirectoryOrCreate";
}

/**
 * The host paths the unprivileged agent mounts (under AGENT_HOST_MOUNT, at the same host paths), and
 * why. Of /sys only what it reads or writes; /proc read-only, for its sysctls and for the tasks that
 * stall a transition (/proc/<pid>/task/<tid>/patch_state and comm: no narrower mount shows them),
 * with /proc/1/root and the like closed by the missing ptrace capabilities (AGENT_CAPABILITIES).
 * containerd mounts /sys read-only in an unprivileged container; these binds keep their own mode.
 */
export const AGENT_HOST_MOUNTS: readonly (HostMount & { why: string })[] = [
  { name: "host-kpatch", path: "/var/lib/kpatch", readOnly: false, type: "DirectoryOrCreate", why: "modules staged for boot and being loaded, the agent's record" },
  { name: "host-livepatch", path: "/sys/kernel/livepatch", readOnly: false, type: "Directory", why: "the loaded patches' enabled (written to disable) and transition" },
  { name: "host-module", path: "/sys/module", readOnly: true, type: "Directory", why: "build-id notes and refcounts of loaded modules, module.sig_enforce" },
  { name: "host-security", path: "/sys/kernel/security", readOnly: true, type: "Directory", why: "lockdown mode (securityfs)" },
  {
    name: "host-proc",
    path: "/proc",
    readOnly: true,
    type: "Directory",
    why: "sys/kernel/{osrelease,random/boot_id,tainted,modules_disabled,ftrace_enabled}; <pid>/task/<tid>/{patch_state,comm} of tasks that stall a transition",
  },
];

/**
 * A simulated host (tests, demos) is a directory tree, not the kernel: its fake /proc and /sys are
 * written by the agent's simulated kernel, so they are mounted whole and writable, with its state
 * directory. It runs with the same securityContext as a real one.
 */
const SIM_HOST_MOUNTS: readonly HostMount[] = [
  { name: "host-kpatch", path: "/var/lib/kpatch", readOnly: false, type: "DirectoryOrCreate" },
  { name: "host-sys", path: "/sys", readOnly: false, type: "Directory" },
  { name: "host-proc", path: "/proc", readOnly: false, type: "Directory" },
  { name: "host-sim", path: "/.kpatch-sim", readOnly: false, type: "Directory" },
];

/** The former privileged pod: the host's whole /sys (writable) and /proc (read-only). */
const PRIVILEGED_HOST_MOUNTS: readonly HostMount[] = [
  { name: "host-kpatch", path: "/var/lib/kpatch", readOnly: false, type: "DirectoryOrCreate" },
  { name: "host-sys", path: "/sys", readOnly: false, type: "Directory" },
  { name: "host-proc", path: "/proc", readOnly: true, type: "Directory" },
];

const AGENT_TMP = "/tmp";

export function agentSecurityContext(privileged: boolean): V1SecurityContext {
  if (privileged) return { privileged: true };
  return {
    privileged: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    runAsUser: 0,
    runAsNonRoot: false,
    capabilities: { drop: ["ALL"], add: [...AGENT_CAPABILITIES] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}

function hostAccess(cfg: AgentConfig, hostRoot: string): { mounts: V1VolumeMount[]; volumes: V1Volume[] } {
  const sim = cfg.KLP_AGENT_LOADER === "sim";
  const list = sim ? SIM_HOST_MOUNTS : cfg.KLP_AGENT_PRIVILEGED ? PRIVILEGED_HOST_MOUNTS : AGENT_HOST_MOUNTS;
  return {
    mounts: list.map((m) => ({ name: m.name, mountPath: `${AGENT_HOST_MOUNT}${m.path}`, ...(m.readOnly ? { readOnly: true } : {}) })),
    volumes: list.map((m) => ({ name: m.name, hostPath: { path: `${hostRoot}${m.path}`, type: m.type } })),
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
  const host = hostAccess(cfg, hostRoot);
  const images = imageModules(ordered);
  const pullSecrets = agentPullSecrets(cfg.KLP_AGENT_IMAGE_PULL_SECRETS, ordered);
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
          // The agent container mounts its token itself (API_ACCESS_VOLUME); the copying init
          // containers, which run module images, get none.
          automountServiceAccountToken: false,
          ...(pullSecrets.length > 0 ? { imagePullSecrets: pullSecrets } : {}),
          ...(cfg.KLP_AGENT_PRIORITY_CLASS ? { priorityClassName: cfg.KLP_AGENT_PRIORITY_CLASS } : {}),
          ...(Object.keys(cfg.KLP_AGENT_NODE_SELECTOR).length > 0 ? { nodeSelector: { ...cfg.KLP_AGENT_NODE_SELECTOR } } : {}),
          ...(terms ? { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: terms } } } } : {}),
          ...(tolerations.length > 0 ? { tolerations } : {}),
          // Long enough to finish a transition wait before SIGKILL; the agent never unloads on exit.
          terminationGracePeriodSeconds: 90,
          // No host PID namespace: the agent sees only its own processes (see AGENT_CAPABILITIES).
          hostPID: false,
          securityContext: { seccompProfile: { type: "RuntimeDefault" } },
          ...(images.length > 0
            ? { initContainers: moduleCopyContainers(images, { agentImage: cfg.KLP_AGENT_IMAGE, pullPolicy: cfg.KLP_AGENT_IMAGE_PULL_POLICY, uid: cfg.KLP_AGENT_MODULE_COPY_UID }) }
            : {}),
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
                ...(cfg.KLP_AGENT_ALLOW_WITHOUT_NODE_WRITE_POLICY ? [{ name: "KPATCH_ALLOW_WITHOUT_NODE_WRITE_POLICY", value: "true" }] : []),
              ],
              ...agentProbes(cfg.KLP_AGENT_METRICS_PORT),
              securityContext: agentSecurityContext(cfg.KLP_AGENT_PRIVILEGED),
              resources: {
                requests: { cpu: cfg.KLP_AGENT_CPU_REQUEST, memory: cfg.KLP_AGENT_MEMORY_REQUEST.text },
                limits: { memory: cfg.KLP_AGENT_MEMORY_LIMIT.text },
              },
              volumeMounts: [
                ...host.mounts,
                API_ACCESS_MOUNT,
                AGENT_MODULES_MOUNT,
                // The root filesystem is read-only; node and kmod may still want a scratch dir.
                { name: "tmp", mountPath: AGENT_TMP },
              ],
            },
          ],
          volumes: [...host.volumes, API_ACCESS_VOLUME, ...moduleCopyVolumes(images), { name: "tmp", emptyDir: { sizeLimit: "16Mi" } }],
        },
      },
    },
  };
}
