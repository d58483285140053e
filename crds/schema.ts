/**
 * The KernelLivePatch API, written once. The CRD YAML in crds/ is generated from these schemas
 * (`npm run gen:crd`), the TypeScript types are inferred from them, and the controller and the
 * agent parse API objects with them. Every field carries the description `kubectl explain` shows.
 */
import { z } from "zod";
import { isValidReleasePattern } from "./module-for-release.ts";
import { HTTPS_URL, IMAGE_REFERENCE } from "./reference-grammar.ts";
import { CONFIGMAP_KEY, DNS_SUBDOMAIN } from "./object-names.ts";
import { doc, maxProperties, withRules, type Rule } from "./rules.ts";
import { API_VERSION, KIND, NODE_KIND } from "./names.ts";
import { UrlAccess } from "./url-access.ts";
import { Condition, KernelLivePatchStatus, NodeEntry } from "./status.ts";

export { API_VERSION, FINALIZER, GROUP, KIND, NODE_KIND, NODE_OBJECTS_PATH, NODE_PLURAL, ofThisPatch, PATCHES_PATH, PLURAL, VERSION } from "./names.ts";
export * from "./status.ts";

const SHA256 = /^[a-f0-9]{64}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
/** Kernel release strings as `uname -r` prints them. */
const KERNEL_RELEASE = /^[A-Za-z0-9._+~-]+$/;
/** A kernel module name (dashes allowed here; the kernel turns them into underscores). */
const MODULE_NAME = /^[A-Za-z0-9_-]+$/;
const PERCENT = /^(100|[1-9][0-9]?)%$/;
const CVE = /^CVE-[0-9]{4}-[0-9]{4,}$/;

/**
 * A Kubernetes label key (a qualified name): an optional prefix, a DNS subdomain of at most 253
 * characters, and `/`; then a name of at most 63 characters of [A-Za-z0-9._-] that starts and ends
 * alphanumeric. The prefix's length is LABEL_KEY_LONG_PREFIX's (no regular expression of this kind
 * can count the characters of all its labels).
 */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$/;
/** A key whose prefix is longer than 253 characters (a name without a prefix has at most 63). */
const LABEL_KEY_LONG_PREFIX = /^[^/]{254}/;
/** A Kubernetes label value: empty, or at most 63 characters of [A-Za-z0-9._-] that start and end alphanumeric. */
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;

// ---------------------------------------------------------------------------------------------
// Module sources

export const ConfigMapSource = doc(
  z
    .object({
      namespace: doc(z.string().max(63).regex(DNS_LABEL), "Namespace of the ConfigMap."),
      name: doc(z.string().max(253).regex(DNS_SUBDOMAIN), "Name of the ConfigMap."),
      key: doc(z.string().max(253).regex(CONFIGMAP_KEY), "Key in the ConfigMap's binaryData holding the .ko file."),
    })
    .strict(),
  "A ConfigMap whose binaryData key holds the module file (up to ~1 MiB).",
);

/**
 * A module image is named by its content: the kubelet pulls exactly the bytes that were reviewed,
 * and a tag moved in the registry (or a node that cached an older image under the same tag) cannot
 * change what a node loads. The agent still checks the file against spec.modules[].sha256.
 * Lower-case hex, as the OCI image spec requires of a sha256 digest.
 */
const IMAGE_DIGEST_PINNED = /@sha256:[a-f0-9]{64}$/;

const imageReferenceRules: Rule<string>[] = [
  {
    cel: `self.matches(r'${IMAGE_DIGEST_PINNED.source}')`,
    message: "image.reference must be pinned by digest: end it with @sha256:<64 lower-case hex characters> (a tag alone may point at other bytes tomorrow)",
    holds: (ref) => IMAGE_DIGEST_PINNED.test(ref),
  },
];

/** A Secret in the operator's namespace, the kubelet's credentials for pulling a module image. */
const PullSecretReference = z
  .object({ name: doc(z.string().min(1).max(253).regex(DNS_SUBDOMAIN), "Name of a kubernetes.io/dockerconfigjson Secret in the operator's namespace.") })
  .strict();

export const ImageSource = doc(
  z
    .object({
      reference: withRules(
        z.string().min(1).max(512).regex(IMAGE_REFERENCE, "image.reference must be an image reference: [host[:port]/]path[:tag][@digest], the path in lower case"),
        "Image reference holding the module, pinned by digest: [host[:port]/]path[:tag]@sha256:<64 hex>.",
        imageReferenceRules,
      ),
      path: doc(
        z.string().max(1024).regex(/^\/[^\s]*\.ko$/),
        "Absolute path of the .ko file inside the image.",
      ),
      pullSecrets: doc(
        z.array(PullSecretReference).max(8).optional(),
        "Secrets in the operator's namespace (where the agent pods run) holding registry credentials for this image; added to the agent pods' imagePullSecrets, beside the chart's agent.imagePullSecrets.",
      ),
    })
    .strict(),
  "A container image holding the module file; an init container of the agent pod copies it for the agent.",
);

/**
 * What makes a kernelReleasePattern mean different things to RE2 (the API server's CEL, and the
 * operator's and the agents' matcher) and to JavaScript's RegExp (their matcher before re2js:
 * a backtracking engine), or only parse in one of them: a non-ASCII character;
 * `(?` other than `(?:` (flags, named groups, lookarounds); a POSIX class `[[:`; a backslash before
 * anything but a punctuation character or d D w W s S b B n r t f (RE2's \pN, \z, \A, \Q, \x{..},
 * octal escapes, JavaScript's \k<..> and \1 backreferences); `[]` or `[^]` (RE2 reads `[]a]` as a class
 * of `]` and `a`, JavaScript as an empty class followed by `a]`; `\[]` is refused too, harmlessly).
 * Written in the syntax it allows, so RE2 and JavaScript read this expression alike too.
 * Refusing these keeps every admitted pattern meaning, on a printable-ASCII release, what it meant
 * to JavaScript (crds/module-for-release.test.ts checks that re2js and RegExp agree on them).
 */
export const PORTABLE_PATTERN_VIOLATION = String.raw`[^\x00-\x7f]|\(\?[^:]|\[\[:|\[\^?\]|\\[^.\\+*?()|\[\]{}^$/\-dDwWsSbBnrtf]`;

const moduleRules: Rule<{
  kernelRelease?: string | undefined;
  kernelReleasePattern?: string | undefined;
  configMap?: unknown;
  url?: string | undefined;
  urlAccess?: unknown;
  image?: unknown;
}>[] = [
  {
    cel: "[has(self.configMap), has(self.url), has(self.image)].filter(x, x).size() == 1",
    message: "exactly one source must be set: configMap, url or image",
    holds: (m) => [m.configMap, m.url, m.image].filter((x) => x !== undefined).length === 1,
  },
  {
    cel: "!has(self.urlAccess) || has(self.url)",
    message: "urlAccess applies to a url source only",
    fieldPath: ".urlAccess",
    holds: (m) => m.urlAccess === undefined || m.url !== undefined,
  },
  {
    cel: "has(self.kernelRelease) != has(self.kernelReleasePattern)",
    message: "exactly one of kernelRelease and kernelReleasePattern must be set",
    holds: (m) => (m.kernelRelease !== undefined) !== (m.kernelReleasePattern !== undefined),
  },
  {
    // CEL's matches() fails on an invalid RE2 expression, and that error rejects the object. Both
    // operands fail for an invalid pattern (`x || true` would absorb the error). The operator and the
    // agents match with RE2 too (re2js), so this is the same verdict in both places.
    cel: "!has(self.kernelReleasePattern) || ''.matches(self.kernelReleasePattern) || !''.matches(self.kernelReleasePattern)",
    message: "kernelReleasePattern must be a valid regular expression",
    fieldPath: ".kernelReleasePattern",
    holds: (m) => m.kernelReleasePattern === undefined || isValidReleasePattern(m.kernelReleasePattern),
  },
  {
    // Only the syntax RE2 and JavaScript's RegExp read alike is allowed (see PORTABLE_PATTERN_VIOLATION),
    // so that matching with RE2 rather than RegExp changed no admitted pattern's meaning.
    cel: `!has(self.kernelReleasePattern) || !self.kernelReleasePattern.matches(r'${PORTABLE_PATTERN_VIOLATION}')`,
    message:
      "kernelReleasePattern must use the regular-expression syntax RE2 and JavaScript share: ASCII only, no (?...) group other than (?:...), no [[:class:]], no class starting with ] ([]...] or [^]...]), and no escape other than \\d \\D \\w \\W \\s \\S \\b \\B \\n \\r \\t \\f or an escaped punctuation character",
    fieldPath: ".kernelReleasePattern",
    holds: (m) => m.kernelReleasePattern === undefined || !new RegExp(PORTABLE_PATTERN_VIOLATION).test(m.kernelReleasePattern),
  },
];

/**
 * The URL parses as Kubernetes parses it (CEL's URL library, Go's url.ParseRequestURI) and as Node
 * does (WHATWG URL), with the https scheme and a host. HTTPS_URL keeps the input where the two agree.
 */
const urlRules: Rule<string>[] = [
  {
    cel: "isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname() != ''",
    message: "url must parse as an https URL with a host",
    holds: isHttpsUrl,
  },
];

function isHttpsUrl(value: string): boolean {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return false;
  }
  return u.protocol === "https:" && u.hostname !== "";
}

export const PatchModule = withRules(
  z
    .object({
      kernelRelease: doc(
        z.string().min(1).max(128).regex(KERNEL_RELEASE).optional(),
        "Exact kernel release (uname -r) this module is built for. Set this or kernelReleasePattern.",
      ),
      kernelReleasePattern: doc(
        z.string().min(1).max(256).optional(),
        "Regular expression (RE2 syntax, limited to what JavaScript reads alike) matched against the whole kernel release (implicitly anchored), in time linear in the release's length. The module's own vermagic must still equal the node's release, or the node fails with VermagicMismatch.",
      ),
      moduleName: doc(
        z.string().min(1).max(55).regex(MODULE_NAME).optional(),
        "Module name as the kernel will know it (dashes become underscores). Derived from the module file when omitted; when set, the file must agree.",
      ),
      sha256: doc(
        z.string().regex(SHA256, "sha256 must be 64 lowercase hex characters"),
        "SHA-256 of the .ko file, 64 lowercase hex characters. The agent refuses a file with any other digest (ChecksumMismatch).",
      ),
      configMap: ConfigMapSource.optional(),
      url: withRules(
        z
          .string()
          .max(2048)
          .regex(
            HTTPS_URL,
            "url must be an https URL: https://[userinfo@]host[:port][/path][?query] with a DNS name, IPv4 or [IPv6] host, RFC 3986 characters and %XX escapes, no #fragment",
          ),
        "HTTPS URL of the module file. Verified against sha256 before use.",
        urlRules,
      ).optional(),
      urlAccess: UrlAccess.optional(),
      image: ImageSource.optional(),
    })
    .strict(),
  "The patch module for one kernel release and where to fetch it. Exactly one source.",
  moduleRules,
);

// ---------------------------------------------------------------------------------------------
// Targeting (core/v1 shapes)

const isLabelKey = (k: string): boolean => LABEL_KEY.test(k) && !LABEL_KEY_LONG_PREFIX.test(k);
/** isLabelKey in CEL, of the string expression `k`. */
const labelKeyCel = (k: string): string => `${k}.matches(r'${LABEL_KEY.source}') && !${k}.matches(r'${LABEL_KEY_LONG_PREFIX.source}')`;
const LABEL_KEY_MESSAGE =
  "label keys are [prefix/]name: an optional DNS subdomain of at most 253 characters and '/', then a name of at most 63 characters of [A-Za-z0-9._-] that starts and ends alphanumeric";
const LabelValue = z
  .string()
  .max(63)
  .regex(LABEL_VALUE, "label values are empty or at most 63 characters of [A-Za-z0-9._-] that start and end alphanumeric");

export const LabelSelectorRequirement = z
  .object({
    key: withRules(z.string().min(1).max(317), "The label key the selector applies to.", [
      { cel: labelKeyCel("self"), message: LABEL_KEY_MESSAGE, holds: isLabelKey },
    ]),
    operator: doc(z.enum(["In", "NotIn", "Exists", "DoesNotExist"]), "Relationship of the key to the values."),
    values: doc(z.array(LabelValue).max(64).optional(), "Values for In and NotIn; empty for Exists and DoesNotExist."),
  })
  .strict();

export const LabelSelector = withRules(
  z
    .object({
      matchLabels: withRules(maxProperties(z.record(z.string(), LabelValue), 64), "Labels a Node must carry.", [
        { cel: `self.all(k, ${labelKeyCel("k")})`, message: LABEL_KEY_MESSAGE, holds: (m) => Object.keys(m).every(isLabelKey) },
      ]).optional(),
      matchExpressions: doc(z.array(LabelSelectorRequirement).max(32).optional(), "Set-based requirements, ANDed."),
    })
    .strict(),
  "Selects the Nodes this patch targets. Empty or absent selects every Node.",
  [
    {
      cel: "!has(self.matchExpressions) || self.matchExpressions.all(e, (e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0))",
      message: "matchExpressions: In and NotIn need values; Exists and DoesNotExist take none",
      holds: (s) =>
        (s.matchExpressions ?? []).every(
          (e) => ["In", "NotIn"].includes(e.operator) === (e.values !== undefined && e.values.length > 0),
        ),
    },
  ],
);

export const Toleration = z
  .object({
    key: doc(z.string().max(317).optional(), "Taint key the toleration applies to; empty matches all keys (with Exists)."),
    operator: doc(z.enum(["Exists", "Equal"]).optional(), "Exists or Equal (default Equal)."),
    value: doc(z.string().max(63).optional(), "Taint value for Equal."),
    effect: doc(z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(), "Taint effect to match; empty matches all."),
    tolerationSeconds: doc(z.int().optional(), "For NoExecute: how long the agent stays bound after the taint appears."),
  })
  .strict();

// ---------------------------------------------------------------------------------------------
// Rollout pacing

const MaxUnavailable = withRules(
  z.union([z.int().min(1), z.string().regex(PERCENT, "maxUnavailable percent must be between 1% and 100%")]),
  "How many targeted nodes may be changing at once: a count (e.g. 1) or a percent of the targeted nodes (e.g. 25%, rounded down, at least 1).",
  [
    {
      cel: "type(self) == int ? self >= 1 : self.matches('^(100|[1-9][0-9]?)%$')",
      message: "maxUnavailable must be a count of at least 1 or a percent between 1% and 100%",
      holds: (v) => (typeof v === "number" ? v >= 1 : PERCENT.test(v)),
    },
  ],
).meta({ "x-kubernetes-int-or-string": true });

/** What the API server defaults an absent rollout.progressDeadlineSeconds to (and the operator assumes). */
export const DEFAULT_PROGRESS_DEADLINE_SECONDS = 600;

export const Rollout = doc(
  z
    .object({
      maxUnavailable: MaxUnavailable.default(1),
      paused: doc(z.boolean().default(false), "Admit no new node while true; nodes already changing finish."),
      failureThreshold: doc(
        z.int().min(1).max(100000).default(1),
        "The rollout halts (admits no new node to load; unloads go on) once this many nodes have failed.",
      ),
      soakSeconds: doc(
        z.int().min(0).max(86400).default(0),
        "A loaded node counts as settled, and frees its slot, only after staying loaded this long.",
      ),
      progressDeadlineSeconds: doc(
        // The API server defaults it (the CRD's default); optional here so specs built in code need not say it.
        z.int().min(30).max(86400).optional().meta({ default: DEFAULT_PROGRESS_DEADLINE_SECONDS }),
        "How long an admitted node may take to make progress (to leave Staging, Loading or Unloading, or to report at all once admitted) before it counts as failed towards failureThreshold, with the reason ProgressDeadlineExceeded. Default 600.",
      ),
    })
    .strict(),
  "How fast the patch rolls across the targeted nodes.",
);

// ---------------------------------------------------------------------------------------------
// Spec

export const DesiredState = doc(
  z.enum(["Loaded", "Staged", "Unloaded"]),
  "Loaded: installed in /var/lib/kpatch and live in the kernel. Staged: installed only (the host's kpatch.service loads it at the next boot). Unloaded: unloaded and uninstalled.",
);

type SpecRuleInput = {
  modules: Array<{ kernelRelease?: string | undefined; kernelReleasePattern?: string | undefined }>;
  rollout: { progressDeadlineSeconds?: number | undefined };
  transitionTimeoutSeconds: number;
};

const specRules: Rule<SpecRuleInput>[] = [
  {
    // A stalled load takes up to two transitions (forward, then the reversal) before it reports.
    cel: `(has(self.rollout.progressDeadlineSeconds) ? self.rollout.progressDeadlineSeconds : ${DEFAULT_PROGRESS_DEADLINE_SECONDS}) >= 2 * self.transitionTimeoutSeconds`,
    message: "rollout.progressDeadlineSeconds must be at least twice transitionTimeoutSeconds (a stalled load waits for its transition, then for the reversal): raise it, or lower transitionTimeoutSeconds",
    fieldPath: ".rollout.progressDeadlineSeconds",
    holds: (s) => (s.rollout.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS) >= 2 * s.transitionTimeoutSeconds,
  },
  {
    cel: "self.modules.all(m, !has(m.kernelRelease) || self.modules.filter(n, has(n.kernelRelease) && n.kernelRelease == m.kernelRelease).size() == 1)",
    message: "modules: each kernelRelease may appear only once",
    fieldPath: ".modules",
    holds: (s) => unique(s.modules.flatMap((m) => (m.kernelRelease === undefined ? [] : [m.kernelRelease]))),
  },
  {
    cel: "self.modules.all(m, !has(m.kernelReleasePattern) || self.modules.filter(n, has(n.kernelReleasePattern) && n.kernelReleasePattern == m.kernelReleasePattern).size() == 1)",
    message: "modules: each kernelReleasePattern may appear only once",
    fieldPath: ".modules",
    holds: (s) => unique(s.modules.flatMap((m) => (m.kernelReleasePattern === undefined ? [] : [m.kernelReleasePattern]))),
  },
];

function unique(xs: string[]): boolean {
  return new Set(xs).size === xs.length;
}

export const KernelLivePatchSpec = withRules(
  z
    .object({
      state: DesiredState.default("Loaded"),
      description: doc(z.string().max(1024).optional(), "Free text for humans: what this patch fixes."),
      cves: doc(
        z.array(z.string().regex(CVE, "cves entries look like CVE-2024-1234")).max(64).optional().meta({ "x-kubernetes-list-type": "set" }),
        "CVE identifiers this patch addresses, for humans and reports.",
      ),
      modules: doc(
        z.array(PatchModule).min(1).max(32),
        "One module per kernel release. A node whose release matches none of them is NotApplicable.",
      ),
      nodeSelector: LabelSelector.optional(),
      tolerations: doc(z.array(Toleration).max(32).optional(), "Tolerations the agent needs to run on the targeted nodes."),
      rollout: Rollout.prefault({}),
      transitionTimeoutSeconds: doc(
        z.int().min(15).max(3600).default(75),
        "How long a livepatch transition may take before the agent reverses it and reports TransitionStalled (kpatch waits 15 s + 60 s).",
      ),
      retry: doc(
        z.string().max(63).optional(),
        "Set to a new value (any text, e.g. a timestamp) to try again on every node where this patch is Failed or Stalled. A failure is final for the spec it happened under, so a reboot or an agent restart never retries by itself; changing this field is a new spec, rolled out at the pace of rollout.maxUnavailable.",
      ),
    })
    .strict(),
  "Desired state of a kernel live patch across the targeted nodes.",
  specRules,
);

export const ObjectMeta = z
  .object({
    name: z.string(),
    uid: z.string().optional(),
    generation: z.int().optional(),
    resourceVersion: z.string().optional(),
    creationTimestamp: z.string().optional(),
    deletionTimestamp: z.string().optional(),
    finalizers: z.array(z.string()).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .loose();

/** A KernelLivePatch as read from the API server (spec already defaulted by the server). */
export const KernelLivePatch = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  metadata: ObjectMeta,
  spec: KernelLivePatchSpec,
  status: KernelLivePatchStatus.optional(),
});

export type KernelLivePatch = z.output<typeof KernelLivePatch>;
export type KernelLivePatchSpec = z.output<typeof KernelLivePatchSpec>;
export type PatchModule = z.output<typeof PatchModule>;
export type LabelSelector = z.output<typeof LabelSelector>;
export type Toleration = z.output<typeof Toleration>;
export type DesiredState = z.output<typeof DesiredState>;

// ---------------------------------------------------------------------------------------------
// KernelLivePatchNode: one per Node, the only object its agent reads and writes.
//
// Why a second kind: when every agent wrote its entry into the patch object and watched every
// patch, the API server serialised N writers on one object (each retrying the losers) and sent each
// of N agents every version of an object holding N entries — cost growing with N². Node heartbeats
// moved to per-node Leases for the same reason; Kernel Module Management keeps a NodeModulesConfig
// per node. Here the operator projects onto each node's object what that node must do (the patches
// that concern it, their spec and whether its turn has come), the agent writes its entries into the
// same object's status, and the operator rolls them up into each patch's status (counts, and a
// bounded digest of the nodes in status.nodes). The projection's `admitted` is the record of
// admission: the operator rebuilds its rollout state from it after a restart.


export const PatchOnNode = z
  .object({
    name: doc(z.string().max(253), "The KernelLivePatch."),
    uid: doc(z.string().max(64), "Its uid: an entry written for another patch of the same name is not this one's."),
    generation: doc(z.int().min(0), "The patch's metadata.generation this projection carries."),
    creationTimestamp: doc(z.string().max(64), "When the patch was created: the agent takes patches in creation order."),
    deletionTimestamp: doc(z.string().max(64).optional(), "Set when the patch is being deleted: the agent unloads and uninstalls its module."),
    admitted: doc(z.boolean(), "The rollout has admitted this node for this generation: the agent may stage and load."),
    // Typed and checked as the KernelLivePatch spec on reading (the agent parses it with the same
    // rules), opaque to the API server: the API server already validated it on the
    // KernelLivePatch, and its CEL rules repeated for up to 1000 projected patches would multiply
    // their cost by 1000 (the input side of the pipe is what the CRD is generated from).
    spec: doc(
      z.record(z.string(), z.unknown()).meta({ "x-kubernetes-preserve-unknown-fields": true }),
      "The patch's spec, as the API server validated and defaulted it on the KernelLivePatch.",
    ).pipe(KernelLivePatchSpec),
  })
  .strict();

export const NodePatchEntry = NodeEntry.extend({
  patch: doc(z.string().max(253), "The KernelLivePatch this entry is about."),
  patchUID: doc(z.string().max(64).optional(), "Its uid when the agent wrote the entry."),
}).strict();

export const KernelLivePatchNodeSpec = z
  .object({
    patches: doc(
      z
        .array(PatchOnNode)
        .max(1000)
        .default([])
        .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"] }),
      "The patches that concern this node: those that target it, and those it still has to clean up. Written by the operator.",
    ),
  })
  .strict();

export const KernelLivePatchNodeStatus = z
  .object({
    entries: doc(
      z
        .array(NodePatchEntry)
        .max(1000)
        .optional()
        .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["patch"] }),
      "This node's entry per patch, written by its agent; the operator rolls them up into each patch's status.",
    ),
    summary: doc(
      z.string().max(4096).optional(),
      "The entries in one line, e.g. 'fix-a Loaded, fix-b Loading' (kubectl get cannot join a list's values), written with them.",
    ),
    conditions: doc(
      z
        .array(Condition)
        .max(8)
        .optional()
        .meta({ "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"] }),
      "The agent's own state, written with its entries: NodeWritePolicy (True: the API server refuses this agent other nodes' objects; False, reason NodeWritePolicyMissing: it would not, and the agent acts only if allowed to run without the policy; Unknown: the agent could not tell).",
    ),
  })
  .strict();

export const KernelLivePatchNode = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(NODE_KIND),
  metadata: ObjectMeta,
  spec: KernelLivePatchNodeSpec.prefault({}),
  status: KernelLivePatchNodeStatus.optional(),
});

export type PatchOnNode = z.output<typeof PatchOnNode>;
export type NodePatchEntry = z.output<typeof NodePatchEntry>;

export type KernelLivePatchNode = z.output<typeof KernelLivePatchNode>;
export type KernelLivePatchNodeSpec = z.output<typeof KernelLivePatchNodeSpec>;
