/**
 * What the agent does next on its node for one patch: a pure decision from the patch, the agent's
 * own status entry and what the host says. The executor runs at most one host action per pass and
 * then decides again from a fresh read of the host (level-based: a restart, a lost event or a
 * reboot all lead back to the same decision).
 */
import type { NodeEntry, NodePhase } from "../../crds/schema.ts";

export interface ModuleRef {
  readonly name: string;
  readonly sha256: string;
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
}

export interface HostView {
  readonly livepatches: ReadonlyArray<{ name: string; enabled: boolean; transition: boolean }>;
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

const FAILED: readonly NodePhase[] = ["Failed", "Stalled"];

export function decide(patch: PatchView, host: HostView, others: readonly PatchView[]): Decision {
  switch (patch.want.kind) {
    case "absent":
      return decideAbsent(patch, host);
    case "notApplicable": {
      const entry = patch.entry;
      const cleanup = cleanupOf(entry?.moduleName, host);
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
  const before: EntryUpdate = { phase: "Unloading", moduleName: entry.moduleName, sha256: entry.sha256, previousModuleName: entry.previousModuleName };
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

/** The next step to take a module (loaded, leftover or staged) off the host; undefined when clean. */
function cleanupOf(name: string | undefined, host: HostView): Action | undefined {
  if (!name) return undefined;
  const lp = host.livepatches.find((p) => p.name === name);
  if (lp) return { op: "unload", name };
  if (host.modules.some((m) => m.name === name)) return { op: "removeLeftover", name };
  if (host.installed.some((i) => i.name === name)) return { op: "uninstall", name };
  return undefined;
}

function decidePresent(patch: PatchView, kind: "loaded" | "staged", m: ModuleRef, host: HostView, others: readonly PatchView[]): Decision {
  const entry = patch.entry;
  // A failure is final for a generation: retrying a refused module would only hammer the kernel.
  if (entry && FAILED.includes(entry.phase) && entry.observedGeneration === patch.generation && entry.sha256 === m.sha256) {
    // Reported as it stands (the module's name may never have been known: the file was refused).
    return {
      kind: "report",
      entry: { phase: entry.phase, moduleName: entry.moduleName, sha256: entry.sha256, previousModuleName: entry.previousModuleName, reason: entry.reason, message: entry.message, stalledTasks: entry.stalledTasks },
    };
  }
  const lp = host.livepatches.find((p) => p.name === m.name);
  const staged = host.installed.find((i) => i.name === m.name);
  // The module the spec named before (a cumulative v1 when it now names v2): kept in the entry
  // until it is off the host, so a restart or a failure in between does not forget it.
  const previous = previousModule(entry, m.name, host);
  const cleanupPrevious = previous ? cleanupOf(previous, host) : undefined;
  const ref = { moduleName: m.name, sha256: m.sha256, previousModuleName: previous };

  if (lp?.transition) {
    return { kind: "wait", ms: 1000, entry: { phase: lp.enabled ? "Loading" : "Unloading", ...ref } };
  }

  if (kind === "staged") {
    if (lp) return { kind: "act", action: { op: "unload", name: m.name }, before: { phase: "Unloading", ...ref } };
    if (host.modules.some((x) => x.name === m.name)) return { kind: "act", action: { op: "removeLeftover", name: m.name }, before: undefined };
    if (staged?.sha256 === m.sha256) {
      if (cleanupPrevious) return { kind: "act", action: cleanupPrevious, before: undefined };
      return { kind: "report", entry: { phase: "Staged", moduleName: m.name, sha256: m.sha256 } };
    }
    if (!patch.admitted) return { kind: "none" };
    return { kind: "act", action: { op: "install", module: m }, before: { phase: "Staging", ...ref } };
  }

  if (lp?.enabled) {
    // Live: keep the staged copy in step (the host reloads it at boot), then retire the
    // patch's previous module, then report.
    if (staged?.sha256 !== m.sha256) return { kind: "act", action: { op: "install", module: m }, before: undefined };
    if (cleanupPrevious) return { kind: "act", action: cleanupPrevious, before: undefined };
    return { kind: "report", entry: { phase: "Loaded", moduleName: m.name, sha256: m.sha256 } };
  }

  const replacer = replacedBy(patch, m, host, others);
  if (replacer) {
    // Superseded by another patch's cumulative module: take the leftover out of the kernel and
    // off the disk, and do not load it back while the replacing patch stays live.
    const cleanup = cleanupOf(m.name, host);
    const entry = replacedEntry(m, replacer);
    return cleanup ? { kind: "act", action: cleanup, before: entry } : { kind: "report", entry };
  }

  if (!patch.admitted) return { kind: "none" };
  const blocker = host.blockers[0];
  if (blocker) return { kind: "report", entry: { phase: "Failed", ...ref, reason: blocker.reason, message: blocker.message } };
  return { kind: "act", action: { op: "installAndLoad", module: m }, before: { phase: "Loading", ...ref } };
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
