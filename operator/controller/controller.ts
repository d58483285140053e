/**
 * The controller: informers on KernelLivePatches, Nodes, KernelLivePatchNodes and the agent
 * DaemonSet feed one work queue; each key is reconciled level-based from the caches (never from the
 * event), so replays, resyncs and restarts converge to the same writes. Nothing is reconciled
 * before every cache has listed once: an empty cache would read as "every node is gone".
 *
 * Three kinds of key: `patch/<name>` (admission, roll-up of the node objects' entries into the
 * patch's status, finalizer), `node/<name>` (the projection onto that node's KernelLivePatchNode)
 * and the agent DaemonSet.
 */
import { createHash } from "node:crypto";
import { loadReleasePatternEngine } from "../../crds/module-for-release.ts";
import type { KubernetesObject, V1DaemonSet } from "@kubernetes/client-node";
import type { Connection } from "../../kube/connection.ts";
import type { Logger } from "pino";
import { fleetCvePosture, type CvePosture } from "../../crds/cve-posture.ts";
import { CLEAN_PHASES } from "../../crds/phases.ts";
import { GROUP, KernelLivePatch, NODE_OBJECTS_PATH, ofThisPatch, PATCHES_PATH, type NodeEntry } from "../../crds/schema.ts";
import { AGENT_LABELS, desiredAgentDaemonSet } from "../agents/daemonset.ts";
import { urlAccessRole, type UrlAccessRole } from "../agents/url-access-role.ts";
import type { OperatorConfig } from "../config.ts";
import { eventRecorder, type EventRecorder } from "../kube/events.ts";
import { APPLY, ignoreNotFound, type KubeHttp } from "../../kube/http-client.ts";
import { operatorHttp } from "../kube/api-client.ts";
import { ListWatch } from "../../kube/list-watch.ts";
import { cachedEntryOf, cachedNodeObject, NodeObjectClient, PROJECTION_HASH, projectionHash, type NodeObjectView } from "../kube/node-objects.ts";
import { NodeReadinessCache } from "../kube/node-readiness.ts";
import { cachedNode, type NodeView } from "../kube/nodes.ts";
import { cachedPatch, OPERATOR_FIELD_MANAGER, PatchClient } from "../kube/patches.ts";
import { removePatchGauges, setPatchGauges, type OperatorMetrics } from "../metrics.ts";
import { nodeChangeMatters } from "../nodes/node-change.ts";
import { projectNode, targets } from "../nodes/projection.ts";
import { RolloutMemories, type RolloutMemory } from "../rollout/memory.ts";
import { readinessWanted } from "../rollout/readiness-wanted.ts";
import type { DerivedFailure, NodeReadiness } from "../rollout/settled.ts";
import { FORCE_DELETE_ANNOTATION } from "../status/rollup.ts";
import { planPatch, type ActPlan, type LastStatusWrite, type PatchEvent, type PatchObservation } from "./plan-patch.ts";
import { WorkQueue } from "./work-queue.ts";

const DAEMONSET_KEY = "daemonset";
const SPEC_HASH = `${GROUP}/agent-spec-hash`;
const QUEUE = "kernellivepatch";
/** Node keys are many and cheap (a thousand nodes when a patch is applied): enough workers to write their objects in parallel. */
const WORKERS = 16;
/** A watch on which nothing arrived this long is reopened (a connection may be frozen: no FIN, no RST). */
const WATCH_SILENCE_MS = 30_000;
/** The readiness of a Node no decision reads now: no evidence (see rollout/readiness-wanted.ts). */
const NO_EVIDENCE: NodeReadiness = { ready: true };

/** Timings with production defaults; tests shorten them. */
export interface ControllerTimings {
  /** Every API call but watches gives up after this long (default 60 s). */
  readonly requestTimeoutMs?: number;
  /** Each cache relists this often even when its watch looks healthy (default 10 min). */
  readonly relistMs?: number;
  /** A cache whose list-watch made no progress this long is restarted (default 5 min). */
  readonly staleMs?: number;
  /** Server-side timeout of each watch request (default 300 s). */
  readonly watchTimeoutSeconds?: number;
  /**
   * A patch's status is written at most this often (default 500 ms): at scale every agent's write
   * would otherwise be followed by a rewrite of a status holding a thousand entries.
   */
  readonly statusIntervalMs?: number;
}

export interface ControllerDeps {
  /** Where the API server is and who the operator is there (see kube/api-client.ts). */
  readonly connection: Connection;
  readonly cfg: OperatorConfig;
  readonly log: Logger;
  readonly metrics: OperatorMetrics;
  /** Default: Events recorded through the controller's own client. */
  readonly events?: EventRecorder;
  /** The clock every decision and the status-write throttle go by (default: the real one). */
  readonly now?: () => Date;
  readonly timings?: ControllerTimings;
  /** Called whenever the work queue empties (main.ts collects garbage once it stays empty a while). */
  readonly onIdle?: () => void;
}

export class Controller {
  private readonly queue: WorkQueue;
  private readonly patches: ListWatch<KubernetesObject>;
  /** Nodes as metadata only (names, uids, labels); readiness is read on demand into `nodeReadiness`. */
  private readonly nodes: ListWatch<NodeView>;
  private readonly nodeReadiness: NodeReadinessCache;
  /** Per patch, the Nodes whose readiness its last reconcile read: a change of one brings the patch back. */
  private readonly readinessWantedBy = new Map<string, ReadonlySet<string>>();
  private readonly daemonSets: ListWatch<V1DaemonSet>;
  private readonly nodeObjects: ListWatch<KubernetesObject>;
  private readonly patchClient: PatchClient;
  private readonly nodeObjectClient: NodeObjectClient;
  private readonly http: KubeHttp;
  private readonly events: EventRecorder;
  private readonly urlAccessRole: UrlAccessRole;
  /** Parsed patches by name, kept while their resourceVersion holds (node keys read every patch). */
  private readonly parsed = new Map<string, { resourceVersion: string | undefined; patch: KernelLivePatch | undefined }>();
  /** What a node's projection depends on, per patch: a change re-projects every node. */
  private readonly projectionInputs = new Map<string, string>();
  /** The status last written per patch, so an unchanged one is not written again. */
  private readonly written = new Map<string, LastStatusWrite>();
  /** What the rollout decisions remember per patch between reconciles (see rollout/memory.ts). */
  private readonly memory = new RolloutMemories();
  private readonly now: () => Date;
  private resync: NodeJS.Timeout | undefined;
  private daemonSetTimer: NodeJS.Timeout | undefined;
  private synced = false;
  private stopped = false;

  constructor(private readonly deps: ControllerDeps) {
    const { cfg, metrics, log } = deps;
    const t = deps.timings ?? {};
    this.now = deps.now ?? (() => new Date());
    const q = { name: QUEUE, controller: QUEUE };
    this.queue = new WorkQueue({
      observer: {
        depth: (d) => {
          metrics.workqueueDepth.set(q, d);
          if (d === 0) deps.onIdle?.();
        },
        added: () => metrics.workqueueAdds.inc(q),
        retried: () => metrics.workqueueRetries.inc(q),
        queued: (s) => metrics.workqueueQueueDuration.observe(q, s),
        worked: (s) => metrics.workqueueWorkDuration.observe(q, s),
      },
    });
    this.http = operatorHttp(deps.connection, t.requestTimeoutMs ?? 60_000);
    const http = this.http;
    this.patchClient = new PatchClient(http);
    this.nodeObjectClient = new NodeObjectClient(http);
    this.events = deps.events ?? eventRecorder(http, "kpatch-operator", log);
    this.urlAccessRole = urlAccessRole(http, cfg, OPERATOR_FIELD_MANAGER, log);
    const informer = <T extends KubernetesObject>(name: string, path: string, more: { labelSelector?: string; transform?: (o: T) => T; metadataOnly?: boolean } = {}) =>
      new ListWatch<T>(http, {
        path,
        ...(more.labelSelector ? { query: { labelSelector: more.labelSelector } } : {}),
        ...(more.transform ? { transform: more.transform } : {}),
        ...(more.metadataOnly ? { metadataOnly: true } : {}),
        relistMs: t.relistMs ?? 600_000,
        staleMs: t.staleMs ?? 300_000,
        ...(t.watchTimeoutSeconds !== undefined ? { watchTimeoutSeconds: t.watchTimeoutSeconds } : {}),
        // A watch with no event for 30 s is reopened from its last resourceVersion (no relist).
        silenceMs: WATCH_SILENCE_MS,
        onRestart: (cause) => {
          if (cause === "silent") return log.debug({ informer: name }, "watch silent; reopening it");
          if (cause === "stale") log.warn({ informer: name }, "list-watch made no progress; restarting it");
          metrics.informerRelists.inc({ resource: name, cause });
        },
        onError: (err, during) => {
          if (during === "handler") log.error({ err, informer: name }, "informer handler failed");
          else if (during === "list") log.warn({ err, informer: name }, "list failed; retrying");
          else if ((err as Error).name !== "SilentWatch" && (err as { code?: number }).code !== 410) log.warn({ err, informer: name }, "watch failed; relisting");
        },
      });
    this.patches = informer("kernellivepatches", PATCHES_PATH, { transform: cachedPatch });
    this.nodeObjects = informer("kernellivepatchnodes", NODE_OBJECTS_PATH, { transform: cachedNodeObject });
    this.nodes = informer("nodes", "/api/v1/nodes", { transform: cachedNode, metadataOnly: true });
    this.nodeReadiness = new NodeReadinessCache(http, { onRead: () => metrics.nodeReads.inc() });
    const selector = Object.entries(AGENT_LABELS).map(([k, v]) => `${k}=${v}`).join(",");
    this.daemonSets = informer(daemonSetsPath(cfg.KLP_NAMESPACE).name, daemonSetsPath(cfg.KLP_NAMESPACE).path, { labelSelector: selector });
    metrics.maxConcurrentReconciles.set({ controller: QUEUE }, WORKERS);
    metrics.samplers.queue = { labels: q, sample: () => this.queue.sample() };
    metrics.samplers.cves = () => this.cvePosture();
  }

  get ready(): boolean {
    return this.synced;
  }

  /** False when a reconcile has run for more than 5 minutes: the workers are wedged. */
  get live(): boolean {
    return this.queue.sample().longestRunningSeconds < 300;
  }

  async start(): Promise<void> {
    const { log } = this.deps;
    // Patches are parsed (and their kernelReleasePattern checked) with the RE2 engine.
    await loadReleasePatternEngine();
    const onPatch = (obj: KubernetesObject, deleted = false) => {
      const name = obj.metadata?.name ?? "";
      this.queue.add(`patch/${name}`);
      this.queue.add(DAEMONSET_KEY);
      // Status-only changes (the operator's own roll-ups, most of the traffic) leave the projections alone.
      const inputs = deleted ? undefined : projectionInputs(obj);
      if (this.projectionInputs.get(name) === inputs) return;
      if (inputs === undefined) this.projectionInputs.delete(name);
      else this.projectionInputs.set(name, inputs);
      this.enqueueNodes();
    };
    const onNode = (verb: "add" | "update" | "delete", n: NodeView, old: NodeView | undefined) => {
      const name = n.metadata?.name ?? "";
      if (verb === "delete") this.nodeReadiness.deleted(name);
      else this.nodeReadiness.changed(name, n.metadata?.resourceVersion, this.now().getTime());
      const outcome = this.nodeEventOutcome(verb, n, old);
      this.deps.metrics.nodeEvents.inc({ verb, outcome });
      if (outcome === "enqueued") {
        this.enqueuePatches();
        this.queue.add(`node/${name}`);
      } else if (outcome === "readiness") {
        for (const [patch, nodes] of this.readinessWantedBy) if (nodes.has(name)) this.queue.add(`patch/${patch}`);
      }
    };
    const onNodeObject = (o: KubernetesObject) => {
      for (const patch of (o as NodeObjectView).byPatch?.keys() ?? []) this.queue.add(`patch/${patch}`);
      this.queue.add(`node/${o.metadata?.name}`);
      // The DaemonSet depends on entries only where a patch no longer targets the node (a node
      // still to clean): at most once a second, not once per agent write during a rollout.
      this.daemonSetSoon();
    };
    for (const verb of ["add", "update", "delete"] as const) {
      this.patches.on(verb, (o) => onPatch(o, verb === "delete"));
      this.nodes.on(verb, (n, old) => onNode(verb, n, old));
      this.nodeObjects.on(verb, onNodeObject);
      this.daemonSets.on(verb, () => this.queue.add(DAEMONSET_KEY));
    }
    await Promise.all([this.patches.start(), this.nodes.start(), this.nodeObjects.start(), this.daemonSets.start()]);
    if (this.stopped) return;
    this.synced = true;
    this.resync = setInterval(() => this.enqueueAll(), this.deps.cfg.KLP_RESYNC_SECONDS * 1000);
    this.enqueueAll();
    log.info("controller started");
    void this.queue.run((key) => this.reconcile(key), WORKERS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.resync) clearInterval(this.resync);
    if (this.daemonSetTimer) clearTimeout(this.daemonSetTimer);
    this.queue.stop();
    this.patches.stop();
    this.nodes.stop();
    this.nodeObjects.stop();
    this.daemonSets.stop();
    this.http.close();
  }

  private daemonSetSoon(): void {
    if (this.daemonSetTimer) return;
    this.daemonSetTimer = setTimeout(() => {
      this.daemonSetTimer = undefined;
      this.queue.add(DAEMONSET_KEY);
    }, 1000);
  }

  /**
   * What a Node event changes: `enqueued` (added, deleted, replaced, or its labels move some patch's
   * targeting: every patch and its node object are looked at again), `readiness` (a Node whose
   * readiness a patch reads: that patch), or nothing (`ignored`: a resourceVersion, an annotation or
   * a label no selector reads; with the metadata-only watch, most of a kubelet's updates).
   */
  private nodeEventOutcome(verb: "add" | "update" | "delete", n: NodeView, old: NodeView | undefined): "enqueued" | "readiness" | "ignored" {
    const name = n.metadata?.name ?? "";
    if (verb !== "update" || nodeChangeMatters(old?.metadata, n.metadata, this.parsedPatches(), this.deps.cfg.KLP_AGENT_NODE_SELECTOR)) return "enqueued";
    for (const nodes of this.readinessWantedBy.values()) if (nodes.has(name)) return "readiness";
    return "ignored";
  }

  private enqueueAll(): void {
    this.enqueuePatches();
    this.enqueueNodes();
  }

  private enqueuePatches(): void {
    for (const p of this.patches.list()) this.queue.add(`patch/${p.metadata?.name}`);
    this.queue.add(DAEMONSET_KEY);
  }

  /** Every Node, and every node object (one whose Node is gone is deleted by its reconcile). */
  private enqueueNodes(): void {
    for (const n of this.nodes.list()) this.queue.add(`node/${n.metadata?.name}`);
    for (const o of this.nodeObjects.list()) this.queue.add(`node/${o.metadata?.name}`);
  }

  private async reconcile(key: string): Promise<{ requeueAfterMs?: number | undefined } | void> {
    const { metrics } = this.deps;
    const controller = key === DAEMONSET_KEY ? "agent-daemonset" : key.startsWith("node/") ? "kernellivepatchnode" : "kernellivepatch";
    const end = metrics.reconcileTime.startTimer({ controller });
    metrics.activeWorkers.inc({ controller });
    try {
      const r =
        key === DAEMONSET_KEY
          ? await this.reconcileDaemonSet()
          : key.startsWith("node/")
            ? await this.reconcileNode(key.slice("node/".length))
            : await this.reconcilePatch(key.slice("patch/".length));
      metrics.reconcileTotal.inc({ controller, result: r?.requeueAfterMs !== undefined ? "requeue_after" : "success" });
      return r;
    } catch (err) {
      metrics.reconcileTotal.inc({ controller, result: "error" });
      metrics.reconcileErrors.inc({ controller });
      this.deps.log.warn({ err, key }, "reconcile failed; will retry");
      throw err;
    } finally {
      metrics.activeWorkers.dec({ controller });
      end();
    }
  }

  private parsedPatches(): KernelLivePatch[] {
    return this.patches.list().flatMap((raw) => {
      const p = this.parse(raw);
      return p ? [p] : [];
    });
  }

  private parse(raw: KubernetesObject): KernelLivePatch | undefined {
    const name = raw.metadata?.name ?? "";
    const known = this.parsed.get(name);
    if (known && known.resourceVersion === raw.metadata?.resourceVersion) return known.patch;
    const r = KernelLivePatch.safeParse(raw);
    if (!r.success) this.deps.log.error({ patch: name, issues: r.error.issues }, "cannot parse KernelLivePatch");
    this.parsed.set(name, { resourceVersion: raw.metadata?.resourceVersion, patch: r.success ? r.data : undefined });
    return r.success ? r.data : undefined;
  }

  private targetedNodes(patch: KernelLivePatch): Set<string> {
    const global = this.deps.cfg.KLP_AGENT_NODE_SELECTOR;
    return new Set(
      this.nodes
        .list()
        .filter((n) => targets(patch, n.metadata?.labels ?? {}, global))
        .map((n) => n.metadata!.name!),
    );
  }

  /**
   * Nodes where a patch is not clean yet although no selector of it targets them any more: the
   * agent DaemonSet must keep a pod there until it is. One pass over the node objects, testing
   * selectors only for entries that are not clean (per patch and node, at 1000 × 10 this was the
   * operator's costliest reconcile).
   */
  private stillToClean(patches: readonly KernelLivePatch[]): string[] {
    const global = this.deps.cfg.KLP_AGENT_NODE_SELECTOR;
    const byName = new Map(patches.map((p) => [p.metadata.name, p]));
    const out: string[] = [];
    for (const o of this.nodeObjects.list() as NodeObjectView[]) {
      const name = o.metadata?.name ?? "";
      const node = this.nodes.get(name);
      if (!node) continue;
      for (const [patchName, hit] of o.byPatch ?? []) {
        const p = byName.get(patchName);
        if (!p || !ofThisPatch(hit.uid, p.metadata.uid) || CLEAN_PHASES.includes(hit.entry.phase)) continue;
        if (!targets(p, node.metadata?.labels ?? {}, global)) out.push(name);
      }
    }
    return out;
  }

  /** The fleet's CVE posture from the caches, for the kpatch_cve_nodes metric (read when scraped). */
  private cvePosture(): CvePosture[] {
    const listing = this.parsedPatches().filter((p) => (p.spec.cves ?? []).length > 0);
    return fleetCvePosture(
      listing.map((p) => ({ patch: p.metadata.name, cves: p.spec.cves ?? [], targeted: this.targetedNodes(p), phases: new Map(this.nodeObjectsOf(p).entries.map((e) => [e.nodeName, e.phase])) })),
    );
  }

  /**
   * The patch's entries as the nodes' agents wrote them into their node objects, and the nodes
   * whose object's projection of the patch says admitted for its current generation (one pass).
   */
  private nodeObjectsOf(patch: KernelLivePatch): { entries: NodeEntry[]; projectedAdmitted: Set<string> } {
    const { name, uid } = patch.metadata;
    const generation = patch.metadata.generation ?? 0;
    const entries: NodeEntry[] = [];
    const projectedAdmitted = new Set<string>();
    for (const o of this.nodeObjects.list() as NodeObjectView[]) {
      const hit = o.byPatch?.get(name);
      if (hit && ofThisPatch(hit.uid, uid)) entries.push(hit.entry);
      const projected = o.projected?.get(name);
      if (projected?.admitted && projected.uid === uid && projected.generation === generation) projectedAdmitted.add(o.metadata?.name ?? "");
    }
    entries.sort((a, b) => (a.nodeName < b.nodeName ? -1 : a.nodeName > b.nodeName ? 1 : 0));
    return { entries, projectedAdmitted };
  }

  /**
   * Whether the rollout admits the node for the patch's current generation: this operator's last
   * decision; before it made one (just started, or elected), what the node object's projection
   * says for this uid and generation (the previous operator's decision, which this one's will
   * keep: admission is monotonic); undefined when neither says (not decided yet).
   */
  private admissionOf(patch: KernelLivePatch, node: string, current: NodeObjectView | undefined): boolean | undefined {
    const { name, uid } = patch.metadata;
    const generation = patch.metadata.generation ?? 0;
    const decided = this.memory.peek(name, uid, generation)?.admitted;
    if (decided) return decided.has(node);
    const projected = current?.projected?.get(name);
    return projected && projected.uid === uid && projected.generation === generation ? projected.admitted : undefined;
  }

  /** Writes what concerns this node onto its KernelLivePatchNode (or deletes it: nothing does, or the Node is gone). */
  private async reconcileNode(name: string): Promise<void> {
    const node = this.nodes.get(name);
    const current = this.nodeObjects.get(name) as NodeObjectView | undefined;
    const desired = node
      ? projectNode({
          nodeName: name,
          labels: node.metadata?.labels ?? {},
          globalSelector: this.deps.cfg.KLP_AGENT_NODE_SELECTOR,
          patches: this.parsedPatches(),
          entryOf: (p) => cachedEntryOf(current, p),
          admitted: (p) => this.admissionOf(p, name, current),
        })
      : [];
    if (desired.length === 0) {
      if (current) {
        await this.nodeObjectClient.delete(name);
        this.deps.log.debug({ node: name }, node ? "no patch concerns the node; its object deleted" : "the Node is gone; its object deleted");
      }
      return;
    }
    const hash = projectionHash(desired);
    if (current?.metadata?.annotations?.[PROJECTION_HASH] === hash) return;
    await this.nodeObjectClient.applySpec({ name, uid: node!.metadata!.uid! }, desired, hash);
  }

  /**
   * Every Node that exists, with its readiness where a current reading has it (read for the nodes
   * some decision reads it of: see observe), no evidence elsewhere.
   */
  private readiness(): Map<string, NodeReadiness> {
    return new Map(this.nodes.list().map((n) => [n.metadata!.name!, this.nodeReadiness.current(n.metadata!.name!) ?? NO_EVIDENCE]));
  }

  /**
   * What the caches say about the nodes for this patch, and which Nodes' readiness its decisions
   * read now with no current reading (`missing`: the caller reads them and decides again).
   */
  private observe(patch: KernelLivePatch, memory: RolloutMemory, now: Date): PatchObservation & { missing: string[] } {
    const { entries, projectedAdmitted } = this.nodeObjectsOf(patch);
    const targeted = this.targetedNodes(patch);
    const { name, generation = 0, deletionTimestamp, annotations } = patch.metadata;
    const waits = deletionTimestamp !== undefined && annotations?.[FORCE_DELETE_ANNOTATION] !== "true";
    const wanted = readinessWanted({
      generation,
      soakSeconds: patch.spec.rollout.soakSeconds,
      entries,
      targeted,
      now,
      readySeenAt: (node) => this.nodeReadiness.readySeenAt(node, now.getTime()),
      ...(waits ? { deletion: { admitted: new Set([...projectedAdmitted, ...(memory.admitted ?? [])]), admittedAt: memory.admittedAt } } : {}),
    });
    if (wanted.length) this.readinessWantedBy.set(name, new Set(wanted));
    else this.readinessWantedBy.delete(name);
    const missing = wanted.filter((node) => this.nodeReadiness.current(node) === undefined && this.nodes.get(node));
    return { entries, projectedAdmitted, readiness: this.readiness(), targeted, missing };
  }

  private async reconcilePatch(name: string): Promise<{ requeueAfterMs?: number | undefined } | void> {
    const raw = this.patches.get(name);
    if (!raw) {
      removePatchGauges(this.deps.metrics, name);
      this.written.delete(name);
      this.parsed.delete(name);
      this.memory.forget(name);
      this.readinessWantedBy.delete(name);
      return;
    }
    const patch = this.parse(raw); // logs what it cannot parse
    if (!patch) return;
    const now = this.now();
    const memory = this.memory.of(name, patch.metadata.uid, patch.metadata.generation ?? 0);
    let missing: string[] = [];
    const decide = () =>
      planPatch(
        {
          patch,
          lastWrite: this.written.get(name),
          memory: memory.input,
          statusIntervalMs: this.deps.timings?.statusIntervalMs ?? 500,
          notReadyGraceSeconds: this.deps.cfg.KLP_NOT_READY_GRACE_SECONDS,
          observe: () => {
            const seen = this.observe(patch, memory, now);
            missing = seen.missing;
            return seen;
          },
        },
        now,
      );
    let plan = decide();
    // Readiness some decision reads and no current reading has: read those Nodes, decide again.
    if (missing.length) {
      await this.nodeReadiness.read(missing, now.getTime());
      plan = decide();
    }
    if (plan.kind === "throttled") return { requeueAfterMs: plan.requeueAfterMs };
    // A node's progress deadline counts from when this operator first saw it admitted (the
    // projection keeps no times; after a restart the clock of a node that has not reported yet
    // starts again).
    const before = memory.admitted;
    this.announceFailures(patch, memory.remember(plan.admission, now));
    this.projectAdmission(before, memory.admitted ?? new Set());
    setPatchGauges(this.deps.metrics, name, plan.gauges);
    await this.carryOut(patch, plan);
    return plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : undefined;
  }

  /**
   * The projections follow the decision just remembered: the first one for a patch generation
   * concerns every node (a new patch is projected only once it is decided), a later one the
   * nodes whose admission changed.
   */
  private projectAdmission(before: ReadonlySet<string> | undefined, after: ReadonlySet<string>): void {
    if (before === undefined) return this.enqueueNodes();
    for (const n of after) if (!before.has(n)) this.queue.add(`node/${n}`);
    for (const n of before) if (!after.has(n)) this.queue.add(`node/${n}`);
  }

  /** The plan's writes in order, each followed by its events. */
  private async carryOut(patch: KernelLivePatch, plan: ActPlan): Promise<void> {
    const { name, uid } = patch.metadata;
    const log = this.deps.log.child({ patch: name });
    if (plan.waitingFor) log.debug({ waitingFor: plan.waitingFor }, "waiting for agents to unload");
    if (plan.status) {
      const at = this.now().getTime();
      await this.patchClient.applyStatus(name, plan.status.status);
      this.written.set(name, { uid, json: plan.status.json, at, tookMs: this.now().getTime() - at, phases: plan.status.phases });
      this.record(patch, plan.status.events);
      if (plan.status.admits?.length) log.info({ nodes: plan.status.admits }, "admitted nodes");
    }
    const f = plan.finalizer;
    if (!f) return;
    await this.patchClient.setFinalizers(patch, f.finalizers);
    this.record(patch, f.events);
    if (f.change === "add") return;
    if (f.leftUndone?.length) log.warn({ leftUndone: f.leftUndone }, "finalizer removed with nodes left undone");
    else log.info("unloaded everywhere; finalizer removed");
  }

  private record(patch: KernelLivePatch, events: readonly PatchEvent[]): void {
    for (const e of events) this.events.patchEvent({ name: patch.metadata.name, uid: patch.metadata.uid }, e.type, e.reason, e.message);
  }

  /** A Warning event on the patch for each failure decided here (once per patch generation, node and reason). */
  private announceFailures(patch: KernelLivePatch, fresh: ReadonlyArray<[string, DerivedFailure]>): void {
    for (const [node, f] of fresh) {
      this.events.patchEvent({ name: patch.metadata.name, uid: patch.metadata.uid }, "Warning", f.reason, f.message);
      this.deps.log.warn({ patch: patch.metadata.name, node, reason: f.reason }, f.message);
    }
  }

  private async reconcileDaemonSet(): Promise<void> {
    const { cfg, log } = this.deps;
    const patches = this.parsedPatches();
    await this.urlAccessRole.apply(patches);
    const stillToClean = this.stillToClean(patches);
    const desired = desiredAgentDaemonSet(patches, cfg, stillToClean);
    const current = this.daemonSets.get(cfg.KLP_AGENT_DAEMONSET, cfg.KLP_NAMESPACE);
    if (!desired) {
      if (current) {
        await ignoreNotFound(this.http.json("DELETE", `${daemonSetsPath(cfg.KLP_NAMESPACE).path}/${cfg.KLP_AGENT_DAEMONSET}`));
        log.info("no KernelLivePatch left; agent DaemonSet deleted");
      }
      return;
    }
    const hash = createHash("sha256").update(JSON.stringify(desired)).digest("hex").slice(0, 16);
    if (current?.metadata?.annotations?.[SPEC_HASH] === hash) return;
    desired.metadata!.annotations = { [SPEC_HASH]: hash };
    await this.http.json("PATCH", `${daemonSetsPath(cfg.KLP_NAMESPACE).path}/${cfg.KLP_AGENT_DAEMONSET}`, {
      query: { fieldManager: OPERATOR_FIELD_MANAGER, force: true },
      contentType: APPLY,
      body: desired,
    });
    log.info({ hash, created: !current }, "agent DaemonSet applied");
  }
}

/** What the projections read of a patch: not its status (admission comes from the controller's decisions, see projectAdmission). */
function projectionInputs(obj: KubernetesObject): string {
  const p = obj as KubernetesObject & { spec?: unknown };
  const m = p.metadata ?? {};
  return JSON.stringify([m.uid, m.generation, m.deletionTimestamp, m.creationTimestamp, p.spec]);
}

function daemonSetsPath(namespace: string): { name: string; path: string } {
  return { name: "daemonsets", path: `/apis/apps/v1/namespaces/${namespace}/daemonsets` };
}
