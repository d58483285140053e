/**
 * What one reconcile of a KernelLivePatch does, decided from what the controller observed, with
 * the clock passed in: whether it is too soon to look (the status-write throttle), the status to
 * write or not (unchanged since this operator's last write), the finalizer to add or remove, the
 * events to record after each write, and when to look again. The controller gathers the input,
 * calls this and carries the plan out; nothing here writes, logs or reads a clock.
 */
import { FINALIZER, type KernelLivePatch, type KernelLivePatchStatus, type NodeEntry, type NodePhase } from "../../crds/schema.ts";
import { nodeDigest, taintSummary } from "../status/node-digest.ts";
import { admit, UNLOAD_IMMEDIATELY_ANNOTATION, type AdmitInput, type AdmitResult } from "../rollout/admit.ts";
import type { NodeReadiness } from "../rollout/settled.ts";
import { mergeConditions } from "../status/conditions.ts";
import { patchGauges, type PatchGauges } from "../status/patch-gauges.ts";
import { phasesOf, progressEvents } from "../status/progress-events.ts";
import { FORCE_DELETE_ANNOTATION, nameSome, rollup, staleEntries, unloadComplete, type UnloadDecision } from "../status/rollup.ts";

/** The status this operator last wrote for a patch (the cache drops status.nodes, so it is kept in memory). */
export interface LastStatusWrite {
  readonly uid: string | undefined;
  /** The status as written, serialized: an equal one is not written again. */
  readonly json: string;
  /** When the write started (ms on the controller's clock) and how long the API server took. */
  readonly at: number;
  readonly tookMs: number;
  /** The nodes' phases in that status: progress events name the nodes that moved since. */
  readonly phases: ReadonlyMap<string, NodePhase>;
}

/** What the controller's caches say about the nodes, as far as this patch is concerned. */
export interface PatchObservation {
  /** The patch's entries as the agents wrote them into their node objects, sorted by node name. */
  readonly entries: readonly NodeEntry[];
  /** Every Node that exists, with its readiness. */
  readonly readiness: ReadonlyMap<string, NodeReadiness>;
  /** The Nodes the patch's selectors target. */
  readonly targeted: ReadonlySet<string>;
  /**
   * The nodes whose node object's projection of this patch (its uid) says admitted for the
   * patch's current generation: the record of admission, read back after a restart.
   */
  readonly projectedAdmitted: ReadonlySet<string>;
}

export interface PatchPlanInput {
  readonly patch: KernelLivePatch;
  readonly lastWrite: LastStatusWrite | undefined;
  /**
   * What the rollout memory holds for this patch generation (see rollout/memory.ts): the clocks,
   * and the nodes this operator admitted (the projections may not show them yet).
   */
  readonly memory: Pick<AdmitInput, "admittedAt" | "gateFailed"> & { readonly admitted?: ReadonlySet<string> | undefined };
  /** A status is written at most this often, and never sooner than twice its last write took. */
  readonly statusIntervalMs: number;
  /** KLP_NOT_READY_GRACE_SECONDS: how long a deleted patch's finalizer waits for a NotReady node. */
  readonly notReadyGraceSeconds: number;
  /**
   * The observation, asked for only past the throttle: during a rollout every agent write brings
   * the patch back, and gathering the entries reads every node object.
   */
  readonly observe: () => PatchObservation;
}

export interface PatchEvent {
  readonly type: "Normal" | "Warning";
  readonly reason: string;
  readonly message: string;
}

/** Too soon since the last status write: look again after this long. */
export interface ThrottledPlan {
  readonly kind: "throttled";
  readonly requeueAfterMs: number;
}

export interface StatusWrite {
  readonly status: KernelLivePatchStatus;
  readonly json: string;
  readonly phases: Map<string, NodePhase>;
  /** Recorded once the write succeeded. */
  readonly events: readonly PatchEvent[];
  /** Nodes this write admits, to log once it succeeded. */
  readonly admits?: readonly string[];
}

export interface FinalizerWrite {
  readonly finalizers: string[];
  readonly change: "add" | "remove";
  /** Recorded once the write succeeded. */
  readonly events: readonly PatchEvent[];
  /** A removal: the nodes not waited for. */
  readonly leftUndone?: UnloadDecision["leftUndone"];
}

/** The writes, in this order (the status first: a finalizer removal follows only once no status is left to write). */
export interface ActPlan {
  readonly kind: "act";
  /** Shown whatever write follows. */
  readonly gauges: PatchGauges;
  /** For the rollout memory (RolloutMemory.remember) and the projections, whatever write follows. */
  readonly admission: Pick<AdmitResult, "rollout" | "needing" | "derived" | "gateFailed" | "newlyAdmitted">;
  /** Absent: nothing to write (unchanged since the last write, or not this time). */
  readonly status?: StatusWrite;
  readonly finalizer?: FinalizerWrite;
  /** Deleting: the nodes whose unload the finalizer still waits for. */
  readonly waitingFor?: readonly string[];
  readonly requeueAfterMs?: number;
}

export type PatchPlan = ThrottledPlan | ActPlan;

/** A deleted patch whose last status was written is looked at again this soon to remove its finalizer. */
export const FINALIZER_AFTER_STATUS_MS = 200;
/** A timer's delay must stay within 2^31 ms; a later look decides again anyway. */
const MAX_WAKE_MS = 3_600_000;
/** Woken a little after the moment it waits for, so that moment has passed. */
const WAKE_MARGIN_MS = 100;

export function planPatch(input: PatchPlanInput, now: Date): PatchPlan {
  const wait = throttleMs(input, now);
  if (wait > 0) return { kind: "throttled", requeueAfterMs: wait };
  return decide(input, input.observe(), now);
}

/**
 * At most one status write per interval, and never more than every other moment: a status holding
 * a thousand entries takes the API server seconds to apply under load.
 */
function throttleMs({ patch, lastWrite, statusIntervalMs }: PatchPlanInput, now: Date): number {
  if (!lastWrite || lastWrite.uid !== patch.metadata.uid) return 0;
  return lastWrite.at + Math.max(statusIntervalMs, 2 * lastWrite.tookMs) - now.getTime();
}

/** The decisions about the nodes: the unload the finalizer waits for, admission, the roll-up into the status. */
interface Assessment {
  readonly unload: UnloadDecision | undefined;
  readonly admitted: AdmitResult;
  readonly status: KernelLivePatchStatus;
  /** Every entry the status stands for (status.nodes lists some of them at scale). */
  readonly shown: readonly NodeEntry[];
  readonly gauges: PatchGauges;
}

function assess(input: PatchPlanInput, seen: PatchObservation, now: Date): Assessment {
  const { patch } = input;
  const { entries, readiness, targeted } = seen;
  // Admitted so far: what the projections show, and what this operator decided since (monotonic).
  const admittedBefore = new Set([...seen.projectedAdmitted, ...(input.memory.admitted ?? [])]);
  const generation = patch.metadata.generation ?? 0;
  const deleting = patch.metadata.deletionTimestamp !== undefined;
  const annotations = patch.metadata.annotations ?? {};
  const unloadImmediately = annotations[UNLOAD_IMMEDIATELY_ANNOTATION] === "true";
  // A deleted patch's unloads are admitted among the nodes its finalizer still waits for.
  const unload = deleting
    ? unloadComplete({ entries, nodes: readiness, now, graceSeconds: input.notReadyGraceSeconds, force: annotations[FORCE_DELETE_ANNOTATION] === "true" })
    : undefined;
  const admitted = admit({
    generation,
    spec: patch.spec,
    targeted: [...targeted],
    entries: new Map(entries.map((e) => [e.nodeName, e])),
    previous: { generation, admitted: [...admittedBefore].sort() },
    now,
    readiness,
    admittedAt: input.memory.admittedAt,
    gateFailed: input.memory.gateFailed,
    ...(unload ? { deletion: { waitingFor: unload.waitingFor, immediately: unloadImmediately } } : {}),
  });
  const rolled = rollup({ generation, spec: patch.spec, targeted, entries, halted: admitted.rollout.halted, deleting, derived: admitted.derived, unloadImmediately });
  const ready = rolled.conditions.find((c) => c.type === "Ready")?.status === "True";
  // Entries of nodes that are gone, or no longer targeted and clean, are not shown.
  const stale = new Set(staleEntries(entries, new Set(readiness.keys()), targeted));
  // A bounded digest of the nodes (status/node-digest.ts): the admitted nodes still to change come before the rest.
  const shown = entries.filter((e) => !stale.has(e.nodeName));
  const digest = nodeDigest(shown, new Set(admitted.needing));
  const taints = taintSummary(entries, targeted);
  const { generation: rolloutGeneration, admitted: admittedNow, halted } = admitted.rollout;
  const status: KernelLivePatchStatus = {
    observedGeneration: generation,
    conditions: mergeConditions(patch.status?.conditions, rolled.conditions, now),
    summary: { ...rolled.summary, ...(taints ? { taints } : {}) },
    rollout: { generation: rolloutGeneration, admittedCount: admittedNow.length, halted },
    nodes: digest.nodes,
    ...(digest.omitted > 0 ? { nodesOmitted: digest.omitted } : {}),
  };
  return { unload, admitted, status, shown, gauges: patchGauges(entries, targeted, ready, admitted.rollout.halted, rolled.summary.cves) };
}

function decide(input: PatchPlanInput, seen: PatchObservation, now: Date): ActPlan {
  const { patch } = input;
  const { unload, admitted, status, shown, gauges } = assess(input, seen, now);
  const base = { kind: "act" as const, gauges, admission: admitted };
  const write = statusWrite(status, shown, input.lastWrite, patch.metadata.uid);
  const finalizers = patch.metadata.finalizers ?? [];

  if (unload && !finalizers.includes(FINALIZER)) return base;
  if (unload?.done) {
    // The last status first, so the patch is seen Unloaded everywhere before it goes. The finalizer
    // write is guarded by the resourceVersion this moves: it follows, on fresh data (a look soon
    // after, also when the write changes nothing: no update event brings the patch back then).
    if (write) return { ...base, status: write, requeueAfterMs: FINALIZER_AFTER_STATUS_MS };
    return { ...base, finalizer: removal(finalizers, unload, input.notReadyGraceSeconds) };
  }
  // The update event brings the patch back with the new resourceVersion.
  if (!unload && !finalizers.includes(FINALIZER)) return { ...base, finalizer: { finalizers: [...finalizers, FINALIZER], change: "add", events: [] } };

  // Woken when a soak, a progress deadline or a NotReady node's grace period ends.
  const wake = Math.min(admitted.requeueAfterMs ?? Infinity, unload?.requeueAfterMs ?? Infinity);
  return {
    ...base,
    ...(write ? { status: { ...write, events: [...write.events, ...transitions(patch.status, status)], admits: admitted.newlyAdmitted } } : {}),
    ...(unload ? { waitingFor: unload.waitingFor } : {}),
    ...(Number.isFinite(wake) ? { requeueAfterMs: Math.min(wake, MAX_WAKE_MS) + WAKE_MARGIN_MS } : {}),
  };
}

/**
 * The status to write, with its progress events (from every entry it stands for, not only those
 * status.nodes lists); undefined when it is what this operator last wrote for this patch.
 */
function statusWrite(status: KernelLivePatchStatus, shown: readonly NodeEntry[], last: LastStatusWrite | undefined, uid: string | undefined): StatusWrite | undefined {
  const json = JSON.stringify(status);
  const same = last !== undefined && last.uid === uid;
  if (same && last.json === json) return undefined;
  const events = progressEvents(same ? last.phases : undefined, shown, status.summary?.targeted ?? 0).map((p) => ({ type: "Normal" as const, ...p }));
  return { status, json, phases: phasesOf(shown), events };
}

/** RolloutComplete and RolloutHalted, when the written status makes them so. */
function transitions(before: KernelLivePatchStatus | undefined, after: KernelLivePatchStatus): PatchEvent[] {
  const was = (t: string) => before?.conditions?.find((c) => c.type === t);
  const is = (t: string) => after.conditions?.find((c) => c.type === t);
  const events: PatchEvent[] = [];
  const ready = is("Ready");
  if (ready?.status === "True" && was("Ready")?.status !== "True") events.push({ type: "Normal", reason: "RolloutComplete", message: ready.message });
  if (after.rollout?.halted && !before?.rollout?.halted)
    events.push({ type: "Warning", reason: "RolloutHalted", message: is("Degraded")?.message ?? "failure threshold reached" });
  return events;
}

/** The finalizer removal, with the event that says how it went: every node unloaded, or which were left with the module possibly still loaded. */
function removal(finalizers: readonly string[], unload: UnloadDecision, graceSeconds: number): FinalizerWrite {
  const change = { finalizers: finalizers.filter((f) => f !== FINALIZER), change: "remove" as const, leftUndone: unload.leftUndone };
  if (unload.leftUndone.length === 0) return { ...change, events: [{ type: "Normal", reason: "Unloaded", message: "Unloaded from every node; finalizer removed" }] };
  const why = { NodeGone: "Node deleted", NodeNotReady: `NotReady for more than ${graceSeconds} s`, Forced: "not waited for" };
  const undone = unload.leftUndone.map((u) => `${u.node} (${why[u.why]})`);
  const forced = unload.leftUndone.some((u) => u.why === "Forced");
  const message =
    `Finalizer removed ${forced ? `without waiting (${FORCE_DELETE_ANNOTATION})` : "without every node's unload"}; ` +
    `not reported unloaded on ${nameSome(undone, 10)}: the module may still be loaded and staged there until the node's agent runs again`;
  return { ...change, events: [{ type: "Warning", reason: forced ? "ForceDeleted" : "UnloadAbandoned", message }] };
}
