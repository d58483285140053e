/**
 * What the agent does next on its node for one patch: a pure decision from the patch, the agent's
 * own status entry and what the host says. The executor runs at most one host action per pass and
 * then decides again from a fresh read of the host (level-based: a restart, a lost event or a
 * reboot all lead back to the same decision).
 */
import { FAILED_PHASES } from "../../crds/phases.ts";
import type { NodeEntry, NodePhase } from "../../crds/schema.ts";

export interface ModuleRef {
  readonly name: string;
  readonly sha256: string;
  /** The verified file's GNU build-id, once the agent has read the file (or its staged copy). */
  readonly buildId?: string | undefined;
}

/** What the resource wants on this node, already resolved for the node's kernel release. */
export type Want =
  | { readonly kind: "absent" } // Unloaded, deleted, or no longer targeting this node
  | { readonly kind: "notApplicable" }
  | { readonly kind: "loaded" | "staged"; readonly module: ModuleRef };

export interface PatchView {
  readonly name: string;
  readonly generation: number;
  readonly want: Want;
  /** The controller admitted this node for the current generation. */
  readonly admitted: boolean;
  /** This node's entry in the patch's status, as last written. */
  readonly entry: NodeEntry | undefined;
  /** spec.rollout.soakSeconds: a module is staged for boot only once it has been live this long. */
  readonly soakSeconds: number;
}

export interface HostView {
  readonly bootId: string;
  /** The time of the read (epoch ms). */
  readonly now: number;
  readonly livepatches: ReadonlyArray<{ name: string; enabled: boolean; transition: boolean; buildId?: string | undefined }>;
  readonly modules: ReadonlyArray<{ name: string; leftover: boolean }>;
  /** Modules staged for the running kernel release. */
  readonly installed: ReadonlyArray<{ name: string; sha256: string }>;
  /** Preflight blockers: a load cannot succeed while any is present. */
  readonly blockers: ReadonlyArray<{ reason: string; message: string }>;
}

export type Action =
  | { readonly op: "install"; readonly module: ModuleRef }
  | { readonly op: "installAndLoad"; readonly module: ModuleRef }
  | { readonly op: "unload"; readonly name: string }
  | { readonly op: "removeLeftover"; readonly name: string }
  | { readonly op: "uninstall"; readonly name: string };

/** Fields of the entry the decision sets; the executor adds host facts and timestamps. */
export interface EntryUpdate {
  readonly phase: NodePhase;
  readonly moduleName?: string | undefined;
  readonly sha256?: string | undefined;
  readonly replacedBy?: string | undefined;
  /** A module of this patch still to retire from the host (see NodeEntry.previousModuleName). */
  readonly previousModuleName?: string | undefined;
  readonly reason?: string | undefined;
  readonly message?: string | undefined;
  readonly stalledTasks?: NodeEntry["stalledTasks"];
}

export type Decision =
  /** Nothing to write and nothing to do. */
  | { readonly kind: "none" }
  /** No host change; the entry should say this. */
  | { readonly kind: "report"; readonly entry: EntryUpdate }
  /** A host change; `before` is written first so a crash in the middle is visible and resumable. */
  | { readonly kind: "act"; readonly action: Action; readonly before: EntryUpdate | undefined }
  /** The kernel is in the middle of a transition: look again shortly. */
  | { readonly kind: "wait"; readonly ms: number; readonly entry: EntryUpdate };

export function decide(patch: PatchView, host: HostView, others: readonly PatchView[]): Decision {
  switch (patch.want.kind) {
    case "absent":
      return decideAbsent(patch, host);
    case "notApplicable": {
      const entry = patch.entry;
      const cleanup = cleanupOf(entry?.moduleName, host);
      // Taking a module off the kernel is a change like a load: it waits for the node's turn.
      if (!patch.admitted && (cleanup || cleanupOf(entry?.previousModuleName, host))) return { kind: "none" };
      if (cleanup) return { kind: "act", action: cleanup, before: { phase: "Unloading", moduleName: entry?.moduleName, previousModuleName: entry?.previousModuleName } };
      const previous = cleanupOf(entry?.previousModuleName, host);
      if (previous) return { kind: "act", action: previous, before: undefined };
      return { kind: "report", entry: { phase: "NotApplicable", reason: "NoModuleForKernel", message: "spec.modules has no module for this node's kernel release" } };
    }
    case "loaded":
    case "staged":
      return decidePresent(patch, patch.want.kind, patch.want.module, host, others);
  }
}

function decideAbsent(patch: PatchView, host: HostView): Decision {
  const entry = patch.entry;
  if (!entry) return { kind: "none" };
  const cleanup = cleanupOf(entry.moduleName, host);
  // Unloads are paced like loads (maxUnavailable): nothing moves before the operator admits the node.
  if (!patch.admitted && (cleanup || cleanupOf(entry.previousModuleName, host))) return { kind: "none" };
  // A retry after a stall keeps the entry Stalled (stable for whoever watches it) until it works.
  const before: EntryUpdate | undefined =
    entry.phase === "Stalled" ? undefined : { phase: "Unloading", moduleName: entry.moduleName, sha256: entry.sha256, previousModuleName: entry.previousModuleName };
  if (cleanup) return { kind: "act", action: cleanup, before };
  // The module an interrupted spec change left behind goes too (after the current one).
  const previous = cleanupOf(entry.previousModuleName, host);
  if (previous) return { kind: "act", action: previous, before: entry.phase === "Unloading" ? undefined : before };
  return { kind: "report", entry: { phase: "Unloaded", moduleName: entry.moduleName, sha256: entry.sha256 } };
}

/**
 * The module of this patch that the node had before the spec named `current`, as long as the
 * host still holds something of it: recorded by an earlier write (the change was interrupted or
 * its new module is still loading), or the entry's own module when the spec just changed.
 */
export function previousModule(entry: NodeEntry | undefined, current: string, host?: HostView): string | undefined {
  for (const name of [entry?.previousModuleName, entry?.moduleName]) {
    if (name === undefined || name === current) continue;
    if (!host || cleanupOf(name, host)) return name;
  }
  return undefined;
}

/** A Failed or Stalled entry for this generation and digest: final, nothing is retried. */
export function isFinalFailure(entry: NodeEntry | undefined, generation: number, sha256: string): boolean {
  return entry !== undefined && FAILED_PHASES.includes(entry.phase) && entry.observedGeneration === generation && entry.sha256 === sha256;
}

/** The next step to take a module (loaded, leftover or staged) off the host; undefined when clean. */
export function cleanupOf(name: string | undefined, host: HostView): Action | undefined {
  if (!name) return undefined;
  const lp = host.livepatches.find((p) => p.name === name);
  if (lp) return { op: "unload", name };
  if (host.modules.some((m) => m.name === name)) return { op: "removeLeftover", name };
  if (host.installed.some((i) => i.name === name)) return { op: "uninstall", name };
  return undefined;
}

/** What the rules for a module that should be on the host look at, read once. */
interface Present {
  readonly patch: PatchView;
  readonly kind: "loaded" | "staged";
  readonly m: ModuleRef;
  readonly host: HostView;
  readonly others: readonly PatchView[];
  /** The livepatch of the module's name, if one is live. */
  readonly lp: HostView["livepatches"][number] | undefined;
  /** The copy of the module's name staged for the running release, if any. */
  readonly staged: HostView["installed"][number] | undefined;
  /** The module the spec named before (a cumulative v1 when it now names v2), while on the host. */
  readonly previous: string | undefined;
  readonly cleanupPrevious: Action | undefined;
  /** The module fields every entry about it carries. */
  readonly ref: Omit<EntryUpdate, "phase">;
}

type PresentRule = (c: Present) => Decision | undefined;

/**
 * The rules for a module that should be loaded or staged, in order: the first that decides wins.
 * The order is the point: a final failure and a reboot's verdict come before anything the host
 * shows, a foreign or earlier build before any claim that the module is ours, a transition before
 * any new operation, and admission before every change.
 */
const PRESENT_RULES: ReadonlyArray<readonly [string, PresentRule]> = [
  ["a final failure is reported as it stands", finalFailure],
  ["a reboot during the load or the soak fails the patch on the node", rebootedDuring],
  ["another build under this name is never reported as this patch's", anotherBuild],
  ["a transition in progress: look again shortly", inTransition],
  ["Staged: on the disk for boot, not in the kernel", stagedOnly],
  ["live and verified: soak, stage for boot, retire the previous module", liveAndVerified],
  ["replaced by another patch's cumulative module: stays out", replacedByAnother],
  ["before admission nothing moves", notAdmitted],
  ["a preflight blocker fails the load before it starts", blocked],
  ["load", load],
];

function decidePresent(patch: PatchView, kind: "loaded" | "staged", m: ModuleRef, host: HostView, others: readonly PatchView[]): Decision {
  const previous = previousModule(patch.entry, m.name, host);
  const c: Present = {
    patch,
    kind,
    m,
    host,
    others,
    lp: host.livepatches.find((p) => p.name === m.name),
    staged: host.installed.find((i) => i.name === m.name),
    previous,
    cleanupPrevious: previous ? cleanupOf(previous, host) : undefined,
    ref: { moduleName: m.name, sha256: m.sha256, previousModuleName: previous },
  };
  for (const [, rule] of PRESENT_RULES) {
    const d = rule(c);
    if (d) return d;
  }
  throw new Error("unreachable: the last present rule always decides");
}

/** A failure is final for a generation: retrying a refused module would only hammer the kernel. */
function finalFailure({ patch, m }: Present): Decision | undefined {
  const entry = patch.entry;
  if (!entry || !isFinalFailure(entry, patch.generation, m.sha256)) return undefined;
  // Reported as it stands (the module's name may never have been known: the file was refused).
  return {
    kind: "report",
    entry: { phase: entry.phase, moduleName: entry.moduleName, sha256: entry.sha256, previousModuleName: entry.previousModuleName, reason: entry.reason, message: entry.message, stalledTasks: entry.stalledTasks },
  };
}

function rebootedDuring({ patch, m, host, lp }: Present): Decision | undefined {
  const rebooted = rebootFailure(patch, m, host, lp !== undefined);
  return rebooted ? { kind: "report", entry: rebooted } : undefined;
}

/** Another build under this name (even mid-transition) is never reported as this patch's. */
function anotherBuild({ patch, m, lp, ref }: Present): Decision | undefined {
  if (!lp || m.buildId === undefined || lp.buildId === m.buildId) return undefined;
  const d = notThisBuild(patch, m, lp.buildId, ref);
  return d.kind === "act" && lp.transition ? { kind: "wait", ms: 1000, entry: d.before ?? { phase: "Unloading", ...ref } } : d;
}

function inTransition({ lp, ref }: Present): Decision | undefined {
  return lp?.transition ? { kind: "wait", ms: 1000, entry: { phase: lp.enabled ? "Loading" : "Unloading", ...ref } } : undefined;
}

function stagedOnly({ patch, kind, m, host, lp, staged, cleanupPrevious, ref }: Present): Decision | undefined {
  if (kind !== "staged") return undefined;
  if (lp) return patch.admitted ? { kind: "act", action: { op: "unload", name: m.name }, before: { phase: "Unloading", ...ref } } : { kind: "none" };
  if (host.modules.some((x) => x.name === m.name)) return { kind: "act", action: { op: "removeLeftover", name: m.name }, before: undefined };
  if (staged?.sha256 === m.sha256) {
    if (cleanupPrevious) return { kind: "act", action: cleanupPrevious, before: undefined };
    return { kind: "report", entry: { phase: "Staged", moduleName: m.name, sha256: m.sha256 } };
  }
  if (!patch.admitted) return { kind: "none" };
  return { kind: "act", action: { op: "install", module: m }, before: { phase: "Staging", ...ref } };
}

/**
 * Live and verified: once the soak is over, stage it for boot (until then a crash must not bring
 * it back at boot), then retire the patch's previous module, then report.
 */
function liveAndVerified({ patch, m, host, lp, staged, previous, cleanupPrevious, ref }: Present): Decision | undefined {
  if (!lp?.enabled) return undefined;
  if (lp.buildId === undefined || lp.buildId !== m.buildId) return notThisBuild(patch, m, lp.buildId, ref);
  const loaded: EntryUpdate = { phase: "Loaded", moduleName: m.name, sha256: m.sha256 };
  if (staged?.sha256 !== m.sha256) {
    const entry = patch.entry;
    const since = entry?.phase === "Loaded" && entry.sha256 === m.sha256 && entry.lastTransitionTime ? Date.parse(entry.lastTransitionTime) : host.now;
    const soakLeft = since + patch.soakSeconds * 1000 - host.now;
    if (soakLeft > 0) return { kind: "wait", ms: soakLeft, entry: { ...loaded, previousModuleName: previous } };
    return { kind: "act", action: { op: "install", module: m }, before: undefined };
  }
  if (cleanupPrevious) return { kind: "act", action: cleanupPrevious, before: undefined };
  return { kind: "report", entry: loaded };
}

/**
 * Superseded by another patch's cumulative module: take the leftover out of the kernel and off
 * the disk, and do not load it back while the replacing patch stays live.
 */
function replacedByAnother({ patch, m, host, others }: Present): Decision | undefined {
  const replacer = replacedBy(patch, m, host, others);
  if (!replacer) return undefined;
  const cleanup = cleanupOf(m.name, host);
  const entry = replacedEntry(m, replacer);
  return cleanup ? { kind: "act", action: cleanup, before: entry } : { kind: "report", entry };
}

function notAdmitted({ patch }: Present): Decision | undefined {
  return patch.admitted ? undefined : { kind: "none" };
}

function blocked({ host, ref }: Present): Decision | undefined {
  const blocker = host.blockers[0];
  return blocker ? { kind: "report", entry: { phase: "Failed", ...ref, reason: blocker.reason, message: blocker.message } } : undefined;
}

function load({ m, ref }: Present): Decision {
  return { kind: "act", action: { op: "installAndLoad", module: m }, before: { phase: "Loading", ...ref } };
}

/**
 * A livepatch of this name is live, but not the verified build: never reported as this patch's.
 * When this patch's entry says the node runs an earlier build of it (the spec moved to a rebuild
 * under the same module name), that build is unloaded so the new one can load; anything else
 * (loaded by hand, by another tool) is refused with a reason and left alone.
 */
function notThisBuild(patch: PatchView, m: ModuleRef, liveBuildId: string | undefined, ref: Omit<EntryUpdate, "phase">): Decision {
  const entry = patch.entry;
  const ourEarlierBuild = entry?.moduleName === m.name && entry.sha256 !== undefined && entry.sha256 !== m.sha256 && !FAILED_PHASES.includes(entry.phase);
  if (ourEarlierBuild) {
    if (!patch.admitted) return { kind: "none" };
    return { kind: "act", action: { op: "unload", name: m.name }, before: { phase: "Unloading", moduleName: m.name, sha256: entry.sha256, previousModuleName: entry.previousModuleName } };
  }
  if (m.buildId === undefined) return { kind: "none" }; // the file is not read yet: nothing to compare
  const message =
    liveBuildId === undefined
      ? `a livepatch named ${m.name} is live but the kernel shows no build-id for it, so it cannot be verified as this patch's module; the agent leaves it alone`
      : `a livepatch named ${m.name} is live with build-id ${liveBuildId}, not this patch's module (build-id ${m.buildId}); the agent does not unload what it did not load: remove it, then retry`;
  return { kind: "report", entry: { ...ref, phase: "Failed", reason: "ForeignLivepatch", message } };
}

/**
 * The node rebooted while this patch's module was loading, or live but still in its soak (not
 * yet staged for boot), and the module is not live now: a failure of the patch on this node.
 * It is not loaded again (a module that crashed the kernel must not crash it twice); the
 * operator counts the failure and halts the rollout.
 */
function rebootFailure(patch: PatchView, m: ModuleRef, host: HostView, live: boolean): EntryUpdate | undefined {
  const entry = patch.entry;
  if (live || !entry?.bootID || entry.bootID === host.bootId) return undefined;
  if (entry.moduleName !== m.name || entry.sha256 !== m.sha256 || entry.observedGeneration !== patch.generation) return undefined;
  const common = { moduleName: m.name, sha256: m.sha256, previousModuleName: entry.previousModuleName };
  if (entry.phase === "Loading" || entry.phase === "Staging") {
    return { ...common, phase: "Failed", reason: "RebootDuringLoad", message: `the node rebooted (boot id ${entry.bootID} → ${host.bootId}) while ${m.name} was loading; it is not loaded again` };
  }
  const persisted = host.installed.some((i) => i.name === m.name && i.sha256 === m.sha256);
  if (entry.phase === "Loaded" && !persisted) {
    return { ...common, phase: "Failed", reason: "RebootDuringSoak", message: `the node rebooted (boot id ${entry.bootID} → ${host.bootId}) while ${m.name} was live and in its soak; it is not loaded again` };
  }
  return undefined;
}

/** The entry of a patch whose module another patch's cumulative module replaced. */
export function replacedEntry(m: ModuleRef, replacer: string): EntryUpdate {
  return {
    phase: "Replaced",
    moduleName: m.name,
    sha256: m.sha256,
    replacedBy: replacer,
    reason: "ReplacedByCumulativePatch",
    message: `replaced by the cumulative module of ${replacer}; it stays out of the kernel while ${replacer} is loaded`,
  };
}

/**
 * The patch whose live module replaced this one, if any: recorded in the entry, or inferred when
 * this module sits in the kernel as a leftover (disabled, not unloaded) while another patch of
 * ours is live — the trace an atomic replace leaves on kernels without the `replace` attribute.
 */
function replacedBy(patch: PatchView, m: ModuleRef, host: HostView, others: readonly PatchView[]): string | undefined {
  const live = (p: PatchView) =>
    p.name !== patch.name && p.want.kind === "loaded" && host.livepatches.some((lp) => lp.name === (p.want as { module: ModuleRef }).module.name && lp.enabled);
  const recorded = patch.entry?.phase === "Replaced" ? others.find((o) => o.name === patch.entry?.replacedBy) : undefined;
  if (recorded && live(recorded)) return recorded.name;
  const leftover = host.modules.some((x) => x.name === m.name && x.leftover);
  if (leftover && patch.entry?.moduleName === m.name) {
    const candidates = others.filter(live);
    if (candidates.length === 1) return candidates[0]!.name;
  }
  return undefined;
}
