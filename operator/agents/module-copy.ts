/**
 * How a module file gets from a module image into the agent pod: one init container per image,
 * run from the module image itself (the kubelet pulls it with the pod's imagePullSecrets), copying
 * the .ko into the pod's module volume, which the agent mounts read-only and reads by digest.
 *
 * The module image needs no `cp` or shell of its own (it may hold nothing but the .ko): a first init
 * container, from the agent image, puts the agent image's statically linked busybox into a small
 * volume, and each copying container runs that binary, mounted read-only. The copying containers
 * run the module image's code with nothing to lose: a fixed non-root UID, every capability dropped,
 * no privilege escalation, a read-only root, RuntimeDefault seccomp, and no ServiceAccount token
 * (the pod does not automount one; only the agent container mounts its projected token,
 * operator/agents/api-access-volume.ts).
 */
import type { V1Container, V1LocalObjectReference, V1SecurityContext, V1Volume, V1VolumeMount } from "@kubernetes/client-node";
import type { KernelLivePatch } from "../../crds/schema.ts";

/** Where the copies land in the pod; the agent reads `<dir>/<sha256>.ko` (KPATCH_IMAGE_MODULES_DIR). */
export const IMAGE_MODULES_DIR = "/var/run/kpatch-agent/modules";
/** Where the copying containers find the copy tool. */
const COPY_TOOLS_DIR = "/var/run/kpatch-agent/copy-tools";
/** The statically linked busybox of the agent image (images/agent.Dockerfile installs busybox-static). */
const AGENT_IMAGE_BUSYBOX = "/bin/busybox";
/** The copy tool as the copying containers run it. */
const COPY_TOOL = `${COPY_TOOLS_DIR}/busybox`;

const MODULES_VOLUME = "image-modules";
const TOOLS_VOLUME = "module-copy-tools";

/** One module file to copy out of an image, named by the digest the agent checks it against. */
interface ImageModule {
  reference: string;
  path: string;
  sha256: string;
}

/** Module files from image sources, one per file digest, in a stable order. */
export function imageModules(patches: readonly KernelLivePatch[]): ImageModule[] {
  const all = new Map<string, ImageModule>();
  for (const p of patches) for (const m of p.spec.modules) if (m.image) all.set(m.sha256, { reference: m.image.reference, path: m.image.path, sha256: m.sha256 });
  return [...all.values()].sort((a, b) => a.sha256.localeCompare(b.sha256));
}

/**
 * The agent pod's imagePullSecrets: the chart's (agent.imagePullSecrets) and those the patches'
 * image sources name, once each, sorted (the same patches always give the same pod template).
 */
export function agentPullSecrets(chart: readonly V1LocalObjectReference[], patches: readonly KernelLivePatch[]): V1LocalObjectReference[] {
  const names = new Set(chart.map((s) => s.name).filter((n): n is string => !!n));
  for (const p of patches) for (const m of p.spec.modules) for (const s of m.image?.pullSecrets ?? []) names.add(s.name);
  return [...names].sort().map((name) => ({ name }));
}

/** What a copying container may do: write one file into an emptyDir as `uid`, and nothing else. */
function moduleCopySecurityContext(uid: number): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    privileged: false,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  };
}

interface CopyConfig {
  agentImage: string;
  pullPolicy: string;
  uid: number;
}

/**
 * The init containers: the copy tool first, then one copying container per module file. Empty
 * when no patch has an image source (and then the pod has no tools volume either).
 */
export function moduleCopyContainers(modules: readonly ImageModule[], cfg: CopyConfig): V1Container[] {
  if (modules.length === 0) return [];
  const securityContext = moduleCopySecurityContext(cfg.uid);
  const tools: V1Container = {
    name: "module-copy-tools",
    image: cfg.agentImage,
    imagePullPolicy: cfg.pullPolicy,
    command: [AGENT_IMAGE_BUSYBOX, "cp", AGENT_IMAGE_BUSYBOX, COPY_TOOL],
    volumeMounts: [{ name: TOOLS_VOLUME, mountPath: COPY_TOOLS_DIR }],
    securityContext,
  };
  const copies = modules.map(
    (m, i): V1Container => ({
      name: `module-${i}`,
      image: m.reference,
      // Pinned by digest: the bytes under it never change, so the kubelet pulls it where absent
      // and never again. The agent image's policy (Never in an air-gapped install that preloads the
      // agent) must not stop a module image from being pulled.
      imagePullPolicy: "IfNotPresent",
      command: [COPY_TOOL, "cp", m.path, `${IMAGE_MODULES_DIR}/${m.sha256}.ko`],
      volumeMounts: [
        { name: TOOLS_VOLUME, mountPath: COPY_TOOLS_DIR, readOnly: true },
        { name: MODULES_VOLUME, mountPath: IMAGE_MODULES_DIR },
      ],
      securityContext,
    }),
  );
  return [tools, ...copies];
}

/** The pod's volumes for the copies: the module volume always (the agent mounts it), the tools one when used. */
export function moduleCopyVolumes(modules: readonly ImageModule[]): V1Volume[] {
  return [{ name: MODULES_VOLUME, emptyDir: {} }, ...(modules.length > 0 ? [{ name: TOOLS_VOLUME, emptyDir: { sizeLimit: "8Mi" } }] : [])];
}

/** The agent container reads the copies, never writes them. */
export const AGENT_MODULES_MOUNT: V1VolumeMount = { name: MODULES_VOLUME, mountPath: IMAGE_MODULES_DIR, readOnly: true };
