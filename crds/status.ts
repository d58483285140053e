// The KernelLivePatch status: what the operator rolls up from the nodes' entries (counts,
// conditions, a taint summary and a bounded digest of the nodes), and the entry type the agents write.
// Re-exported by schema.ts, the one place the API's types are taken from.
import { z } from "zod";
import { CveCount } from "./cve-count.ts";
import { doc } from "./rules.ts";

export const Condition = z
  .object({
    type: doc(z.string().max(316), "Ready, Progressing or Degraded."),
    status: doc(z.enum(["True", "False", "Unknown"]), "True, False or Unknown."),
    reason: doc(z.string().max(1024), "CamelCase reason for the last transition."),
    message: doc(z.string().max(32768), "Human-readable details."),
    observedGeneration: doc(z.int().min(0).optional(), "The spec generation this condition was computed for."),
    lastTransitionTime: doc(z.iso.datetime({ offset: true }), "When status last changed."),
  })
  .strict();

export const NodePhase = doc(
  z.enum([
    "Pending",
    "Staging",
    "Staged",
    "Loading",
    "Loaded",
    "Replaced",
    "Unloading",
    "Unloaded",
    "NotApplicable",
    "Failed",
    "Stalled",
  ]),
  "Where this node is: Pending (waiting for its turn), Staging, Staged, Loading, Loaded, Replaced (superseded by a cumulative patch), Unloading, Unloaded, NotApplicable (no module for its kernel), Failed, Stalled (transition did not complete and was reversed).",
);

export const StalledTask = z
  .object({
    pid: z.int(),
    comm: z.string().max(64),
  })
  .strict();

export const NodeEntry = z
  .object({
    nodeName: doc(z.string().max(253), "The Node this entry describes."),
    phase: NodePhase,
    kernelRelease: doc(z.string().max(128).optional(), "The node's running kernel release."),
    bootID: doc(z.string().max(64).optional(), "The node's boot id; a change means the kernel was re-read after a reboot."),
    moduleName: doc(z.string().max(64).optional(), "The module name in the kernel."),
    sha256: doc(z.string().max(64).optional(), "Digest of the module this entry refers to."),
    enabled: doc(z.boolean().optional(), "/sys/kernel/livepatch/<module>/enabled."),
    transition: doc(z.boolean().optional(), "/sys/kernel/livepatch/<module>/transition."),
    tainted: doc(z.int().min(0).optional(), "Raw /proc/sys/kernel/tainted. Sticky until reboot."),
    taintFlags: doc(z.string().max(64).optional(), "Decoded taint letters, e.g. OEK."),
    replacedBy: doc(z.string().max(253).optional(), "For Replaced: the KernelLivePatch whose cumulative module replaced this one."),
    previousModuleName: doc(
      z.string().max(64).optional(),
      "The module this patch had on the node before its spec named another one; the agent takes it out of the kernel and off the disk once the new module is live, then clears this field.",
    ),
    stalledTasks: doc(z.array(StalledTask).max(32).optional(), "For Stalled: tasks that kept the transition from completing."),
    reason: doc(z.string().max(128).optional(), "Machine-readable reason for the phase, e.g. VermagicMismatch."),
    message: doc(z.string().max(4096).optional(), "What happened and what to do."),
    observedGeneration: doc(z.int().min(0).optional(), "The spec generation the agent acted on."),
    lastTransitionTime: doc(z.iso.datetime({ offset: true }).optional(), "When the phase last changed."),
  })
  .strict();

/** Rows of status.summary.taints: the most common flag sets, then one row adding up the rest. */
export const MAX_TAINT_ROWS = 16;
/** The flags of the row that adds up the flag sets beyond the first MAX_TAINT_ROWS - 1. */
export const OTHER_TAINTS = "other";

export const TaintCount = z
  .object({
    flags: doc(z.string().max(64), `Decoded taint letters as the agents report them (e.g. OEK), or "${OTHER_TAINTS}".`),
    nodes: doc(z.int().min(0), "How many targeted nodes report exactly these flags."),
  })
  .strict();

export const Summary = z
  .object({
    ready: doc(z.string().max(32), "Loaded (or Staged/Unloaded, per the desired state) out of targeted applicable nodes, e.g. 3/4."),
    targeted: z.int().min(0),
    staged: z.int().min(0),
    loaded: z.int().min(0),
    replaced: z.int().min(0),
    unloaded: z.int().min(0),
    notApplicable: z.int().min(0),
    failed: z.int().min(0),
    pending: z.int().min(0),
    cves: doc(
      z.array(CveCount).max(64).optional().meta({ "x-kubernetes-list-type": "atomic" }),
      "Per CVE in spec.cves: how many targeted nodes have the fix live (Loaded or Replaced), are still exposed, or run a kernel spec.modules has no module for. Absent when spec.cves is empty.",
    ),
    cveExposure: doc(
      z.string().max(512).optional(),
      "The CVEs and how many targeted nodes are still exposed, in one line for kubectl get, e.g. 'CVE-2024-1086 (2 exposed)'.",
    ),
    taints: doc(
      z.array(TaintCount).max(MAX_TAINT_ROWS).optional().meta({ "x-kubernetes-list-type": "atomic" }),
      `How many targeted nodes report each set of kernel taint flags (a node's taintFlags, e.g. OEK), most common first; nodes without a taint are not counted. At most ${MAX_TAINT_ROWS} rows: beyond ${MAX_TAINT_ROWS - 1} distinct sets, the rest are added up in one row with flags "${OTHER_TAINTS}". Absent when no targeted node reports a taint.`,
    ),
  })
  .strict();

export const RolloutStatus = doc(
  z
    .object({
      generation: doc(z.int().min(0), "The spec generation the admission decision belongs to."),
      admittedCount: doc(
        // Optional: a status written by an operator before this field (with the admitted list instead) has none.
        z.int().min(0).optional(),
        "How many nodes the controller has admitted to change for this generation. Which ones is in each node's KernelLivePatchNode (spec.patches[].admitted): an agent changes its node's kernel (load, unload, uninstall) only when admitted there.",
      ),
      halted: doc(z.boolean(), "True when failures reached failureThreshold: no new node is admitted to load. Unloads go on: never halted for state Unloaded or deletion."),
    })
    .strict(),
  "Pacing state written by the controller; the agents obey the admission projected onto their KernelLivePatchNode.",
);

/** status.nodes lists at most this many entries: the whole fleet's up to here, a digest beyond. */
export const MAX_STATUS_NODES = 50;
/** A status.nodes entry's message is cut to this many characters (the full one is on the node object). */
export const DIGEST_MESSAGE_CHARS = 256;
/** A status.nodes entry lists this many of its stalledTasks at most. */
export const DIGEST_STALLED_TASKS = 4;

export const KernelLivePatchStatus = z
  .object({
    observedGeneration: z.int().min(0).optional(),
    conditions: z
      .array(Condition)
      .max(16)
      .optional()
      .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
    summary: Summary.optional(),
    rollout: RolloutStatus.optional(),
    nodes: doc(
      z
        .array(NodeEntry)
        .max(MAX_STATUS_NODES)
        .optional()
        // Atomic: the operator alone writes the list, whole; as a map it would carry a field-manager
        // record per entry.
        .meta({ "x-kubernetes-list-type": "atomic" }),
      `The nodes' entries as their agents wrote them into their KernelLivePatchNodes, copied here by the operator: every node's when at most ${MAX_STATUS_NODES} have one, else the ${MAX_STATUS_NODES} that need attention first (Failed, Stalled, changing, admitted and Pending, then the rest; by name). Each message is cut to ${DIGEST_MESSAGE_CHARS} characters and stalledTasks to the first ${DIGEST_STALLED_TASKS}; the full entry is in the node's KernelLivePatchNode (kubectl get klpn, kubectl klp status).`,
    ),
    nodesOmitted: doc(
      z.int().min(0).optional(),
      "How many nodes' entries status.nodes does not list (absent or 0: it lists them all).",
    ),
  })
  .strict();

export type KernelLivePatchStatus = z.output<typeof KernelLivePatchStatus>;
export type NodeEntry = z.output<typeof NodeEntry>;
export type NodePhase = z.output<typeof NodePhase>;
export type Condition = z.output<typeof Condition>;
export type Summary = z.output<typeof Summary>;
export type RolloutStatus = z.output<typeof RolloutStatus>;
export type TaintCount = z.output<typeof TaintCount>;
